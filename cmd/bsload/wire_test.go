package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// The lean booking connection sends what the API needs, reads plain,
// chunked and error answers, keeps one connection alive, dials again after
// the server closes it, and gives up at once when the run is interrupted.
func TestWire(t *testing.T) {
	var conns atomic.Int32
	release, arrived := make(chan struct{}), make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/bookings", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad headers", http.StatusBadRequest)
			return
		}
		switch string(body) {
		case `{"station_id":7}`:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"id":42,"status":"ready"}`)
		case `{"station_id":8}`: // chunked
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"id":`)
			w.(http.Flusher).Flush()
			io.WriteString(w, `43}`)
		case `{"station_id":9}`:
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"error":{"code":"no_battery_available","message":"none"}}`)
		case `{"station_id":10}`:
			close(arrived)
			<-release
		default:
			http.Error(w, "bad body "+string(body), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("POST /api/v1/bookings/42/cancel", func(w http.ResponseWriter, r *http.Request) {
		if body, _ := io.ReadAll(r.Body); string(body) != "{}" {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		io.WriteString(w, `{"id":42,"status":"cancelled"}`)
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	defer close(release)

	// A timeout longer than any test run: an interrupted request must end
	// because of its context, while the server still holds it.
	a := &api{base: srv.URL, http: &http.Client{Timeout: time.Hour}, token: "tok"}
	w, err := a.wire()
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	ctx := context.Background()

	if id, err := w.book(ctx, 7); err != nil || id != 42 {
		t.Fatalf("book = %d, %v; want 42", id, err)
	}
	if err := w.cancel(ctx, 42); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if id, err := w.book(ctx, 8); err != nil || id != 43 {
		t.Fatalf("chunked book = %d, %v; want 43", id, err)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for three requests, want 1", n)
	}
	_, err = w.book(ctx, 9)
	var ae *apiError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Code != "no_battery_available" {
		t.Fatalf("refused book: %v, want a 409 no_battery_available", err)
	}
	if id, err := w.book(ctx, 7); err != nil || id != 42 {
		t.Fatalf("book after Connection: close = %d, %v; want 42", id, err)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2 (one more after the server closed the first)", n)
	}

	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := w.book(cctx, 10)
		done <- err
	}()
	<-arrived
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted book: %v, want context.Canceled", err)
	}

	if _, err := (&api{base: "https://example.test", http: a.http}).wire(); err == nil {
		t.Fatal("an https base was accepted")
	}
}

// interruptOnRead cancels the run as soon as the answer starts to arrive.
type interruptOnRead struct {
	net.Conn
	cancel context.CancelFunc
}

func (c *interruptOnRead) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.cancel()
	}
	return n, err
}

// An interrupt that lands while (or just after) an answer is read drops the
// connection before the request returns: the clean-up request that follows
// on an uncancelled context gets a fresh one, not a late deadline.
func TestWireInterruptDropsTheConnection(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/bookings", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":42}`)
	})
	mux.HandleFunc("POST /api/v1/bookings/42/cancel", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"id":42,"status":"cancelled"}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	a := &api{base: srv.URL, http: &http.Client{Timeout: time.Hour}, token: "tok"}
	w, err := a.wire()
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	raw, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	conn := &interruptOnRead{Conn: raw, cancel: cancel}
	w.conn, w.r = conn, bufio.NewReader(conn)
	if _, err := w.book(ctx, 7); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted book: %v", err)
	}
	if w.conn != nil {
		t.Fatal("the interrupted request's connection is kept for the next one")
	}
	if err := w.cancel(context.WithoutCancel(ctx), 42); err != nil {
		t.Fatalf("clean-up cancel after the interrupt: %v", err)
	}
}
