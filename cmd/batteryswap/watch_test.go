package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"batteryswap/store/storetest"
)

// TestWatchReconnectsAndResumes: `batteryswap watch` prints one JSON line per
// event, survives a server restart (a clean end of stream) by reconnecting to
// the new server with Last-Event-ID, and misses and repeats nothing.
func TestWatchReconnectsAndResumes(t *testing.T) {
	cfg := testConfig(t, storetest.URL(t, "sqlite"), "")
	first := startInstance(t, cfg)
	w := setup(t, first, first.app.store)
	addr := first.ln.Addr().String()

	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"watch", first.url + "/stream/stations", "--quiet"}, envOf(nil), pw, io.Discard) // a flag after the URL counts
		pw.Close()
	}()
	lines := make(chan map[string]any, 64)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("watch printed a line that is not JSON: %q", sc.Text())
				continue
			}
			lines <- m
		}
		close(lines)
	}()
	read := func() map[string]any {
		t.Helper()
		select {
		case m := <-lines:
			return m
		case <-time.After(15 * time.Second):
			t.Fatal("watch printed nothing within 15s")
			return nil
		}
	}
	if m := read(); m["type"] != "connection_established" {
		t.Fatalf("first line %v", m)
	}
	read() // snapshot
	telemetry := func(in *instance, c int) {
		call(t, "PATCH", in.url+fmt.Sprintf("/api/v1/batteries/%d", w.battery), w.admin, map[string]int{"charge_percent": c}, nil)
	}
	telemetry(first, 40)
	if m := read(); m["id"] != "5" || m["action"] != "updated" {
		t.Fatalf("event %v", m)
	}

	// Restart the server on the same address; one change happens while no
	// server runs the stream (the store is the same file).
	first.stop(t)
	second := startOn(t, cfg, addr)
	telemetry(second, 90)
	telemetry(second, 30)
	for _, want := range []string{"6", "7"} {
		if m := read(); m["id"] != want {
			t.Fatalf("after restart got %v, want id %s", m, want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch ended with %v on Ctrl-C", err)
	}
	for m := range lines {
		t.Fatalf("extra line after the end: %v", m)
	}
}

// startOn starts an instance on a given address (retrying briefly while the
// previous listener's port is released).
func startOn(t *testing.T, cfg Config, addr string) *instance {
	t.Helper()
	a, err := newApp(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	for i := 0; ; i++ {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		if i > 100 || !strings.Contains(err.Error(), "in use") {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // the old listener's port is being released
	}
	go a.serve(ln)
	in := &instance{app: a, url: "http://" + addr, ln: ln}
	t.Cleanup(func() { in.stop(t) })
	return in
}
