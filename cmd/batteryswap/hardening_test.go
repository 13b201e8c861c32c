package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// served is `batteryswap serve` running in this process as main runs it:
// configured from the environment, stopped by its context (SIGTERM).
type served struct {
	addr, metricsAddr string
	logs              *syncBuffer
	stop              context.CancelFunc
	done              chan error
}

// serveEnv starts `serve` on a fresh SQLite file with env added to a test
// environment, and waits for its "listening on" line.
func serveEnv(t *testing.T, env map[string]string) *served {
	t.Helper()
	full := map[string]string{
		"DATABASE_URL": "sqlite://" + filepath.Join(t.TempDir(), "serve.db"), "ADDR": "127.0.0.1:0",
		"JWT_SECRET": "serve-test-secret-of-32-bytes!!!", "AUTH_RATE_LIMIT": "-1",
	}
	for k, v := range env {
		full[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{logs: &syncBuffer{}, stop: cancel, done: make(chan error, 1)}
	go func() { s.done <- run(ctx, []string{"serve"}, envOf(full), io.Discard, s.logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})
	listening := regexp.MustCompile(`msg="listening on \S+" addr=(\S+)`)
	eventually(t, "serve logs that it is listening", func() bool {
		select {
		case err := <-s.done:
			s.done <- err // for the cleanup
			t.Fatalf("serve stopped: %v\n%s", err, s.logs)
		default:
		}
		m := listening.FindStringSubmatch(s.logs.String())
		if m != nil {
			s.addr = m[1]
		}
		return m != nil
	})
	if m := regexp.MustCompile(`metrics_addr=(\S+)`).FindStringSubmatch(s.logs.String()); m != nil {
		s.metricsAddr = m[1]
	}
	return s
}

// sigterm stops serve as SIGTERM does and returns what serve returned, or
// fails the test if it takes longer than within.
func (s *served) sigterm(t *testing.T, within time.Duration) error {
	t.Helper()
	s.stop()
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		return err
	case <-time.After(within):
		t.Fatalf("serve did not stop within %s of SIGTERM", within)
		return nil
	}
}

// trickler is a client that declares a body and sends it a byte at a time.
type trickler struct {
	conn net.Conn
	r    *bufio.Reader
	quit chan struct{}
}

// startTrickle sends a login request declaring a 1000-byte body, with
// Expect: 100-continue, and waits for the server's "100 Continue": it
// comes when the handler starts to read the body, so the request is then
// in flight. Then a byte goes out every 50 ms until the connection fails.
func startTrickle(t *testing.T, addr string) *trickler {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second)) // a hung server fails the test instead of hanging it
	fmt.Fprintf(conn, "POST /api/v1/auth/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"+
		"Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n")
	tr := &trickler{conn: conn, r: bufio.NewReader(conn), quit: make(chan struct{})}
	line, err := tr.r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
		t.Fatalf("want 100 Continue, got %q, %v", line, err)
	}
	if _, err := tr.r.ReadString('\n'); err != nil { // the blank line after it
		t.Fatal(err)
	}
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tr.quit:
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { close(tr.quit) })
	return tr
}

// answer reads the server's answer to the trickled request.
func (tr *trickler) answer(t *testing.T) (*http.Response, map[string]any) {
	t.Helper()
	res, err := http.ReadResponse(tr.r, nil)
	if err != nil {
		t.Fatalf("no answer to the trickled request: %v", err)
	}
	defer res.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatalf("answer %d is not JSON: %v", res.StatusCode, err)
	}
	return res, body
}

func errorCode(body map[string]any) any {
	e, _ := body["error"].(map[string]any)
	return e["code"]
}

// A body that does not arrive within REQUEST_TIMEOUT gets 408
// request_timeout and its connection closed, and a SIGTERM while such a
// client trickles finishes at once (well before SHUTDOWN_TIMEOUT) and
// cleanly: the trickler gets its 408 and serve exits 0.
func TestSlowBodyTimesOutAndDoesNotHoldUpShutdown(t *testing.T) {
	s := serveEnv(t, map[string]string{"REQUEST_TIMEOUT": "1s", "SHUTDOWN_TIMEOUT": "30s"})

	tr := startTrickle(t, s.addr)
	res, body := tr.answer(t)
	if res.StatusCode != http.StatusRequestTimeout || errorCode(body) != "request_timeout" {
		t.Fatalf("trickled body: %d %v, want 408 request_timeout", res.StatusCode, body)
	}
	if !res.Close {
		t.Errorf("the connection of a timed-out body stays open (its rest would be read as a request)")
	}
	if _, err := tr.r.ReadByte(); err == nil {
		t.Errorf("the server kept the connection open after the 408")
	}

	// A request whose body arrives in time is served as usual.
	if st := call(t, "POST", "http://"+s.addr+"/api/v1/auth/login", "", map[string]string{"email": "a@example.com", "password": "whatever-pass"}, nil); st != http.StatusUnauthorized {
		t.Fatalf("login with a prompt body: %d, want 401", st)
	}

	tr = startTrickle(t, s.addr)
	began := time.Now()
	defer func() { t.Logf("SIGTERM to exit: %s", time.Since(began)) }()
	if err := s.sigterm(t, 15*time.Second); err != nil {
		t.Fatalf("serve after SIGTERM with a trickling client: %v, want a clean exit", err)
	}
	res, body = tr.answer(t)
	if res.StatusCode != http.StatusRequestTimeout || errorCode(body) != "request_timeout" {
		t.Fatalf("trickled body during shutdown: %d %v, want 408 request_timeout", res.StatusCode, body)
	}
}

// With METRICS_ADDR, /metrics is served there and only there.
func TestMetricsOnTheirOwnListener(t *testing.T) {
	s := serveEnv(t, map[string]string{"METRICS_ADDR": "127.0.0.1:0"})
	if s.metricsAddr == "" || s.metricsAddr == s.addr {
		t.Fatalf("metrics address %q (main %q); logs:\n%s", s.metricsAddr, s.addr, s.logs)
	}
	var body map[string]any
	if st := call(t, "GET", "http://"+s.addr+"/metrics", "", nil, &body); st != http.StatusNotFound || errorCode(body) != "not_found" {
		t.Fatalf("/metrics on ADDR: %d %v, want 404 not_found", st, body)
	}
	res, err := http.Get("http://" + s.metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(text), "batteryswap_http_request_duration_seconds") {
		t.Fatalf("/metrics on METRICS_ADDR: %d\n%.300s", res.StatusCode, text)
	}
	if st := call(t, "GET", "http://"+s.metricsAddr+"/api/v1/stations", "", nil, nil); st != http.StatusNotFound {
		t.Fatalf("the API on METRICS_ADDR: %d, want 404", st)
	}
	if err := s.sigterm(t, 15*time.Second); err != nil {
		t.Fatalf("serve with METRICS_ADDR after SIGTERM: %v", err)
	}
	if _, err := net.DialTimeout("tcp", s.metricsAddr, time.Second); err == nil {
		t.Fatal("the metrics listener is still open after SIGTERM")
	}
}

// A request header over the limit is 431 in the JSON error shape, not
// net/http's line of text.
func TestOversizedHeaderIsJSON(t *testing.T) {
	s := serveEnv(t, nil)
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/api/v1/stations", nil)
	req.Header.Set("X-Padding", strings.Repeat("x", maxHeaderBytes+8<<10))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || res.StatusCode != http.StatusRequestHeaderFieldsTooLarge ||
		errorCode(body) != "headers_too_large" || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("oversized header: %d %q %v (%v)", res.StatusCode, res.Header.Get("Content-Type"), body, err)
	}
	if st := call(t, "GET", "http://"+s.addr+"/api/v1/stations", "", nil, nil); st != http.StatusOK {
		t.Fatalf("a normal request after: %d", st)
	}
}
