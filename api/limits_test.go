package api_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"batteryswap/api"
)

// rawRequest writes head (a request line and header, without the blank
// line that ends it) and then body in pieces, one every gap, on a plain
// connection, and returns the answer with its JSON body. The connection is
// bounded by a deadline, so a server that never answers fails the test.
func rawRequest(t *testing.T, url, head string, body []string, gap time.Duration) (*http.Response, map[string]any, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, head+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	go func() {
		for _, piece := range body {
			time.Sleep(gap) // the slow client under test: it sends a piece every gap
			if _, err := io.WriteString(conn, piece); err != nil {
				return
			}
		}
	}()
	r := bufio.NewReader(conn)
	res, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer res.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		t.Fatalf("answer %d is not JSON: %v", res.StatusCode, err)
	}
	return res, m, r
}

// A body that does not arrive within RequestTimeout is 408
// request_timeout, whether it trickles or stalls and whether its length is
// declared or chunked; the connection is closed after it.
func TestSlowBodyIsRequestTimeout(t *testing.T) {
	e := newAPIEnv(t, "sqlite", func(c *api.Config) { c.RequestTimeout = 300 * time.Millisecond })
	trickle := strings.Split(strings.Repeat("x", 100), "")
	for _, tt := range []struct {
		name string
		head string
		body []string
		gap  time.Duration
	}{
		{"declared length, trickled", "POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 200",
			append([]string{`{"email":`}, trickle...), 50 * time.Millisecond},
		{"declared length, stalled", "POST /api/v1/auth/register HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 200",
			[]string{`{"email":`}, 0},
		{"chunked, stalled", "POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked",
			[]string{"9\r\n{\"email\":\r\n"}, 0},
		{"no body needed, trickled", "POST /api/v1/auth/logout HTTP/1.1\r\nHost: t\r\nContent-Length: 200",
			trickle, 50 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, body, r := rawRequest(t, e.url, tt.head, tt.body, tt.gap)
			if tt.name == "no body needed, trickled" {
				// logout needs a user: it answers at once, and the body it
				// left unread is discarded within the deadline.
				if res.StatusCode != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401", res.StatusCode)
				}
			} else if res.StatusCode != http.StatusRequestTimeout || fmt.Sprint(body["error"].(map[string]any)["code"]) != "request_timeout" {
				t.Fatalf("answer %d %v, want 408 request_timeout", res.StatusCode, body)
			}
			if _, err := r.ReadByte(); err == nil {
				t.Fatal("the connection stays open: the rest of the body would be read as a request")
			}
		})
	}
}

// The timeout covers the body's arrival only, not the request: a handler
// that works longer than RequestTimeout after its body arrived (bcrypt at
// its default cost, then a database write with the request's context)
// finishes normally, and streams, which outlive it, are not cut.
func TestRequestTimeoutSparesSlowHandlersAndStreams(t *testing.T) {
	e := newAPIEnv(t, "sqlite", func(c *api.Config) {
		c.RequestTimeout = 20 * time.Millisecond
		c.BcryptCost = 0 // bcrypt's default cost: slower than the timeout
	})
	e.do(t, http.MethodPost, "/api/v1/auth/register", "", map[string]any{"email": e.email(), "password": testPassword, "name": "Slow"}).
		want(t, http.StatusCreated)
	start := time.Now()
	r := e.do(t, http.MethodGet, "/stream/stations?transport=poll&timeout=1&since=0", "", nil).want(t, http.StatusOK)
	if waited := time.Since(start); waited < 900*time.Millisecond {
		t.Fatalf("a one-second long-poll answered after %s: %s", waited, r.Raw)
	}
	if n := len(r.Body["events"].([]any)); n != 0 {
		t.Fatalf("events %d, want an empty wait", n)
	}
}

// A header over the server's MaxHeaderBytes is answered by net/http before
// any handler; api.Listener turns that answer into the JSON error shape,
// and leaves every other answer, streams included, as it was.
func TestOversizedHeaderAnswersJSON(t *testing.T) {
	e := newAPIEnv(t, "sqlite", nil)
	const limit = 8 << 10
	ts := httptest.NewUnstartedServer(e.handler)
	ts.Config.MaxHeaderBytes = limit
	ts.Listener = api.Listener(ts.Listener, limit)
	ts.Start()
	t.Cleanup(ts.Close)

	for _, size := range []int{limit + 8<<10, 1 << 20} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/api/v1/stations", nil)
		req.Header.Set("X-Padding", strings.Repeat("x", size))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var body struct {
			Error struct{ Code, Message string }
		}
		if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge || res.Header.Get("Content-Type") != "application/json" ||
			json.Unmarshal(raw, &body) != nil || body.Error.Code != "headers_too_large" || !strings.Contains(body.Error.Message, "8 KiB") {
			t.Fatalf("header of %d bytes: %d %q %s", size, res.StatusCode, res.Header.Get("Content-Type"), raw)
		}
	}

	res, err := http.Get(ts.URL + "/api/v1/stations")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("a normal request: %d", res.StatusCode)
	}
	// An SSE stream (handed to its own writer on the raw socket) still flows.
	res, err = http.Get(ts.URL + "/stream/stations")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	lines := bufio.NewReader(res.Body)
	for {
		line, err := lines.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended before its first event: %v", err)
		}
		if strings.HasPrefix(line, "event: connection_established") {
			break
		}
	}
}
