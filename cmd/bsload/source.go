package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/coder/websocket"
)

// eventSource is one subscriber's stream of events, on either transport.
type eventSource interface {
	// Next returns the next event, with the time it was read.
	Next() (*sseEvent, error)
	// live is called once connection_established was read: the connect
	// deadline no longer applies.
	live()
}

// openSSE dials, sends the request and reads the response head; the
// connect deadline wait holds until live.
func openSSE(d *net.Dialer, addr, host, path string, readBuf int, wait time.Duration) (eventSource, io.Closer, error) {
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	_ = conn.SetDeadline(time.Now().Add(wait))
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nAccept: text/event-stream\r\nUser-Agent: bsload\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("write request: %w", err)
	}
	br := bufio.NewReaderSize(conn, 1024)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		conn.Close()
		return nil, nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
	}
	return &sseSource{sseReader: newSSEReader(bufio.NewReaderSize(resp.Body, readBuf)), conn: conn}, conn, nil
}

type sseSource struct {
	*sseReader
	conn net.Conn
}

func (s *sseSource) live() { _ = s.conn.SetDeadline(time.Time{}) }

// openWebSocket opens the same URL with a WebSocket handshake; each text
// message is one event's JSON.
func openWebSocket(d *net.Dialer, addr, host, path string, readBuf int, wait time.Duration) (eventSource, io.Closer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	client := &http.Client{Transport: &http.Transport{
		DialContext:     func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) },
		ReadBufferSize:  readBuf,
		WriteBufferSize: 1024,
	}}
	conn, resp, err := websocket.Dial(ctx, "ws://"+host+path, &websocket.DialOptions{HTTPClient: client, CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		cancel()
		if resp != nil {
			return nil, nil, fmt.Errorf("HTTP %d: %w", resp.StatusCode, err)
		}
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	conn.SetReadLimit(-1) // snapshots are large
	return &wsSource{conn: conn, ctx: ctx, cancel: cancel}, closerFunc(func() error { return conn.CloseNow() }), nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

type wsSource struct {
	conn   *websocket.Conn
	ctx    context.Context // the connect deadline, until live
	cancel context.CancelFunc
	ev     sseEvent
}

func (w *wsSource) live() {
	w.cancel()
	w.ctx = context.Background()
}

var (
	idKey   = []byte(`"id":"`)
	typeKey = []byte(`"type":"`)
)

// Next reads one message and finds its id, type and timestamp without
// decoding the JSON (the payloads are flat objects).
func (w *wsSource) Next() (*sseEvent, error) {
	_, data, err := w.conn.Read(w.ctx)
	if err != nil {
		return nil, err
	}
	w.ev = sseEvent{ReceivedAt: time.Now()}
	if id, ok := stringField(data, idKey); ok {
		if n, err := strconv.ParseInt(string(id), 10, 64); err == nil {
			w.ev.ID, w.ev.HasID = n, true
		}
	}
	if typ, ok := stringField(data, typeKey); ok {
		w.ev.Type = string(typ)
	}
	if ts, ok := payloadTimestamp(data); ok {
		w.ev.Timestamp = ts
	}
	return &w.ev, nil
}

// stringField returns the first string value of key in data.
func stringField(data, key []byte) ([]byte, bool) {
	i := bytes.Index(data, key)
	if i < 0 {
		return nil, false
	}
	rest := data[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return nil, false
	}
	return rest[:j], true
}
