package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestNginxRunsThisConfig runs deploy/nginx.conf in a real nginx, when one is
// installed, in front of a stub of the app, and checks what the static checks
// can only infer: stream events pass while the response stays open (the stub
// sends no X-Accel-Buffering), a WebSocket handshake and its frames pass both
// ways, the Host keeps its port
// (the app's same-origin WebSocket check needs it), the app's limit-sized
// body passes and a larger one gets the JSON 413, the app's own errors pass
// unchanged, and a dead upstream gives JSON, not HTML.
//
// Only the parts that need Docker are changed: the upstream servers point at
// the stub (without the "resolve" flag, which older nginx lacks), nginx
// listens on a free local port, and its runtime files go to a temporary
// directory.
func TestNginxRunsThisConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nginx")
	}
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			if os.Getenv("REQUIRE_SERVICES") == "1" {
				t.Fatal("nginx is not installed and REQUIRE_SERVICES=1 (apt-get install nginx-light)")
			}
			t.Skip("nginx is not installed (apt-get install nginx-light)")
		}
		bin = "/usr/sbin/nginx"
	}
	f := loadFiles(t)
	m, problems := parseModel(f)
	if len(problems) > 0 {
		t.Fatal(problems)
	}

	stub := newAppStub()
	srv := httptest.NewServer(stub)
	t.Cleanup(srv.Close)
	port := freePort(t)
	dir := t.TempDir()
	conf, err := localNginxConf(f.nginx, srv.Listener.Addr().String(), port, dir)
	if err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-t", "-p", dir+"/", "-c", confPath).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s\n%s", err, out, conf)
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "-p", dir+"/", "-c", confPath)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("nginx output:\n%s", logs.String())
		}
	})
	addr := net.JoinHostPort("127.0.0.1", port)
	waitListening(t, addr)
	host := "localhost:" + port // a Host with a port, as a browser on http://localhost:PORT sends it
	base := "http://" + addr

	t.Run("stream passes unbuffered", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/stream/stations", nil)
		req.Host = host
		req.Header.Set("Accept", "text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		// The stub holds the response open after its events for 20 s; they
		// must arrive long before. (nginx 1.22 passes them here even with
		// proxy_buffering on; nginx/streams checks that it is off.)
		br := bufio.NewReader(resp.Body)
		var got []string
		for len(got) < 6 {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("after %q: %v: the stream is held back", got, err)
			}
			got = append(got, line)
		}
		if want := []string{"retry: 1000\n", "\n", "id: 1\n", "event: snapshot\n", "data: {}\n", "\n"}; strings.Join(got, "") != strings.Join(want, "") {
			t.Fatalf("stream %q, want %q", got, want)
		}
		seen := stub.seen("/stream/stations")
		if seen.Get("Host") != host || seen.Get("X-Forwarded-For") != "127.0.0.1" || seen.Get("X-Forwarded-Proto") != "http" {
			t.Errorf("the app got Host %q, X-Forwarded-For %q, X-Forwarded-Proto %q; want %q, 127.0.0.1, http",
				seen.Get("Host"), seen.Get("X-Forwarded-For"), seen.Get("X-Forwarded-Proto"), host)
		}
	})

	t.Run("websocket upgrade passes both ways", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET /ws/stations/ HTTP/1.1\r\nHost: %s\r\nOrigin: http://%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", host, host)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			t.Fatalf("handshake: %s %s", resp.Status, body)
		}
		for _, msg := range []string{"frame one", "frame two"} {
			if _, err := c.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
				t.Fatalf("echo %q, %v; want %q", buf, err, msg)
			}
		}
	})

	t.Run("body limit", func(t *testing.T) {
		post := func(n int64) (*http.Response, []byte) {
			req, _ := http.NewRequest("POST", base+"/api/v1/bookings", bytes.NewReader(bytes.Repeat([]byte("x"), int(n))))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("POST %d bytes: %v", n, err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp, body
		}
		resp, body := post(m.bodyLimit)
		if resp.StatusCode != http.StatusCreated || string(body) != fmt.Sprintf(`{"read":%d}`, m.bodyLimit) {
			t.Errorf("a body of the app's limit (%d bytes): %s %s; want it to reach the app", m.bodyLimit, resp.Status, body)
		}
		resp, body = post(m.bodyLimit + 1)
		assertJSONError(t, resp, body, http.StatusRequestEntityTooLarge, "payload_too_large")
	})

	t.Run("app errors pass unchanged", func(t *testing.T) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "stub: broker down") {
			t.Errorf("/readyz: %s %s; want the app's own 503", resp.Status, body)
		}
	})

	t.Run("dead upstream answers JSON", func(t *testing.T) {
		srv.Close()
		resp, err := http.Get(base + "/api/v1/stations")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		assertJSONError(t, resp, body, http.StatusServiceUnavailable, "")
	})
}

func assertJSONError(t *testing.T, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if resp.StatusCode != status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") ||
		json.Unmarshal(body, &e) != nil || e.Error.Code == "" || (code != "" && e.Error.Code != code) {
		t.Errorf("got %s (%s) %s; want %d with a JSON error %s", resp.Status, resp.Header.Get("Content-Type"), body, status, code)
	}
}

// localNginxConf rewrites the configuration to run here: upstream servers
// become upstream, nginx listens on 127.0.0.1:port, and keeps its pid, logs
// and temporary files in dir.
func localNginxConf(src, upstream, port, dir string) (string, error) {
	root, err := parseNginx(src)
	if err != nil {
		return "", err
	}
	d := func(name string, args ...string) *ngxDirective {
		return &ngxDirective{Name: name, Args: args, Raw: args}
	}
	drop := func(b *ngxDirective, names ...string) {
		var keep []*ngxDirective
		for _, c := range b.Block {
			if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+c.Name+" ") {
				keep = append(keep, c)
			}
		}
		b.Block = keep
	}
	drop(root, "pid", "daemon", "master_process", "user", "error_log")
	root.Block = append([]*ngxDirective{d("daemon", "off"), d("master_process", "off"),
		d("pid", filepath.Join(dir, "nginx.pid")), d("error_log", "stderr", "warn")}, root.Block...)
	https := root.all("http")
	if len(https) != 1 {
		return "", fmt.Errorf("want one http block")
	}
	h := https[0]
	drop(h, "resolver", "access_log")
	h.Block = append([]*ngxDirective{d("access_log", "off")}, h.Block...)
	for _, tmp := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		h.Block = append(h.Block, d(tmp+"_temp_path", filepath.Join(dir, tmp)))
	}
	for _, up := range h.all("upstream") {
		for _, s := range up.all("server") {
			s.Args, s.Raw = []string{upstream}, []string{upstream}
		}
	}
	for _, s := range h.all("server") {
		for _, l := range s.all("listen") {
			l.Args, l.Raw = []string{"127.0.0.1:" + port}, []string{"127.0.0.1:" + port}
		}
	}
	return formatNginx(root), nil
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// appStub stands in for batteryswap behind nginx and records the request
// headers it gets.
type appStub struct {
	mu      sync.Mutex
	headers map[string]http.Header
}

func newAppStub() *appStub { return &appStub{headers: map[string]http.Header{}} }

func (s *appStub) seen(path string) http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.headers[path]
}

func (s *appStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := r.Header.Clone()
	h.Set("Host", r.Host)
	s.mu.Lock()
	s.headers[r.URL.Path] = h
	s.mu.Unlock()
	switch {
	case strings.HasPrefix(r.URL.Path, "/stream"):
		// No X-Accel-Buffering here: only nginx.conf may keep this unbuffered.
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "retry: 1000\n\n")
		w.(http.Flusher).Flush()
		// A later event, in a read of its own, not only what comes with the
		// headers.
		time.Sleep(300 * time.Millisecond)
		_, _ = io.WriteString(w, "id: 1\nevent: snapshot\ndata: {}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(20 * time.Second):
		}
	case strings.HasPrefix(r.URL.Path, "/ws/"):
		// The app's rule (api/server.go originAllowed): a browser Origin must
		// name the Host the request came to.
		origin := r.Header.Get("Origin")
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") ||
			!strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
			http.Error(w, `{"error":{"code":"invalid_request","message":"stub: no upgrade headers"}}`, http.StatusBadRequest)
			return
		}
		if !strings.EqualFold(strings.TrimPrefix(origin, "http://"), r.Host) {
			http.Error(w, fmt.Sprintf(`{"error":{"code":"forbidden","message":"stub: origin %s is not host %s"}}`, origin, r.Host), http.StatusForbidden)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4096)
		for {
			n, err := brw.Read(buf)
			if n > 0 {
				if _, werr := conn.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	case r.URL.Path == "/api/v1/bookings":
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"read":%d}`, n)
	case r.URL.Path == "/readyz":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":{"code":"service_unavailable","message":"stub: broker down"}}`)
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{}`)
	}
}
