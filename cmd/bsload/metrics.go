package main

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"
)

// parseMetrics reads Prometheus text exposition: series (name with its
// labels, as written) to value. Comments and malformed lines are skipped.
func parseMetrics(text []byte) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		// The value follows the last space outside the labels; an optional
		// timestamp may follow it.
		end := strings.LastIndexByte(line, '}')
		rest := line[end+1:]
		f := strings.Fields(rest)
		if end < 0 {
			f = strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				out[f[0]] = v
			}
			continue
		}
		if len(f) < 1 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			out[line[:end+1]] = v
		}
	}
	return out
}

// scrapeMetrics reads the server's /metrics; an error leaves it empty.
func scrapeMetrics(ctx context.Context, a *api) map[string]float64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/metrics", nil)
	if err != nil {
		return nil
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		return nil
	}
	return parseMetrics(buf.Bytes())
}
