package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The WebSocket source reads each text message as one event: its id, type
// and commit timestamp, the same fields the SSE reader takes, and ends
// with the connection.
func TestWebSocketSource(t *testing.T) {
	messages := []string{
		`{"id":"5","last_event_id":"5","type":"connection_established","timestamp":"2025-01-01T00:00:00Z"}`,
		`{"id":"5","type":"snapshot","stations":[` + strings.Repeat(`{"id":1,"name":"x"},`, 2000) + `{}]}`,
		`{"available_batteries":1,"id":"6","station_id":3,"timestamp":"2025-01-01T12:00:05.123456Z","type":"inventory_update"}`,
		`{"type":"pong","timestamp":7}`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stream/stations" {
			http.NotFound(w, r)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for _, m := range messages {
			if err := c.Write(r.Context(), websocket.MessageText, []byte(m)); err != nil {
				return
			}
		}
		c.Close(websocket.StatusGoingAway, "done")
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	src, closer, err := openWebSocket(&net.Dialer{}, addr, addr, "/stream/stations", 4096, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	want := []struct {
		id    int64
		hasID bool
		typ   string
		ts    time.Time
	}{
		{5, true, "connection_established", time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)},
		{5, true, "snapshot", time.Time{}}, // larger than the library's default read limit
		{6, true, "inventory_update", time.Date(2025, 1, 1, 12, 0, 5, 123456000, time.UTC)},
		{0, false, "pong", time.Time{}},
	}
	for i, w := range want {
		if i == 2 {
			src.live()
		}
		ev, err := src.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if ev.ID != w.id || ev.HasID != w.hasID || ev.Type != w.typ || !ev.Timestamp.Equal(w.ts) {
			t.Fatalf("event %d = id %d (%v) %q at %v, want id %d (%v) %q at %v", i, ev.ID, ev.HasID, ev.Type, ev.Timestamp, w.id, w.hasID, w.typ, w.ts)
		}
	}
	if _, err := src.Next(); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after the server closed: %v, want the close", err)
	}

	// A refused upgrade names the HTTP status.
	if _, _, err := openWebSocket(&net.Dialer{}, addr, addr, "/nowhere", 4096, 5*time.Second); err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Fatalf("refused upgrade: %v", err)
	}
}
