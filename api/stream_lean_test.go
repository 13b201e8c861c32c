package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"batteryswap/api"
	"batteryswap/models"
	"batteryswap/store"
	"batteryswap/store/storetest"
	"batteryswap/stream"
)

// leanEnv is a server whose HTTP/1.1 SSE and NDJSON streams go through the
// lean (hijacked) writer, with the pieces a test of that writer needs.
type leanEnv struct {
	srv    *api.Server
	ts     *httptest.Server
	hub    *stream.Hub
	broker *stream.MemoryBroker
	reg    *prometheus.Registry
	seq    int64 // last event id published
}

// newLeanEnv starts a server on SQLite with the given hub options and
// heartbeat, speaking plain HTTP/1.1, or with tls HTTP/1.1 and, with h2,
// HTTP/2 over TLS. Everything closes when the test ends.
func newLeanEnv(t *testing.T, hubOpts stream.HubOptions, heartbeat time.Duration, maxStreams int, tls, h2 bool, opts ...func(*api.Config)) *leanEnv {
	t.Helper()
	st := storetest.Open(t, "sqlite", store.Options{})
	broker := stream.NewMemoryBroker()
	t.Cleanup(func() { _ = broker.Close() })
	reg := prometheus.NewRegistry()
	hubOpts.Metrics = stream.NewMetrics(reg)
	hub := stream.NewHub(broker, st, hubOpts)
	t.Cleanup(hub.Close)
	cfg := api.Config{
		JWTSecret: []byte("test"), BcryptCost: 4, AuthRateLimit: -1, BookingRateLimit: -1,
		HeartbeatInterval: heartbeat, MaxStreamsPerClient: maxStreams,
		Registry: reg, StreamMetrics: hubOpts.Metrics,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv := api.New(cfg, st, hub, broker)
	ts := httptest.NewUnstartedServer(srv.Handler())
	if tls {
		ts.EnableHTTP2 = h2
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(ts.Close)
	last, _, err := hub.Bounds(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return &leanEnv{srv: srv, ts: ts, hub: hub, broker: broker, reg: reg, seq: last}
}

// publish sends the next event of station 1 (topics station:1 and
// stations) with a message of size bytes, and returns it.
func (e *leanEnv) publish(t *testing.T, size int) *models.Event {
	t.Helper()
	e.seq++
	ev := &models.Event{
		Seq: e.seq, Type: models.EventInventoryUpdate, Topic: models.StationTopic(1), CreatedAt: time.Now(),
		Payload: models.NewPayload(models.EventInventoryUpdate, time.Now(), map[string]any{"message": strings.Repeat("x", size)}),
	}
	if err := e.broker.Publish(context.Background(), []models.Event{*ev}); err != nil {
		t.Fatal(err)
	}
	return ev
}

// metric is the value of a counter or gauge in the registry, summed over
// the series whose labels include labels (name, value pairs).
func (e *leanEnv) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
				}
				if !found {
					continue series
				}
			}
			switch {
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// eventually polls cond every few milliseconds until it holds, and fails
// the test with what after a generous limit.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling another goroutine's progress, with a deadline
	}
}

// rawStream is a client on a plain TCP connection, to see the bytes.
type rawStream struct {
	conn net.Conn
	r    *bufio.Reader
}

// dialStream sends GET path on a new connection and returns without
// reading anything.
func dialStream(t *testing.T, addr, path string) *rawStream {
	t.Helper()
	return dialGet(t, addr, path, "Accept: */*\r\n")
}

// dialWebSocket sends a WebSocket handshake for path on a new connection
// and returns without reading anything.
func dialWebSocket(t *testing.T, addr, path string) *rawStream {
	t.Helper()
	return dialGet(t, addr, path, "Upgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
}

// dialGet sends GET path with headers (each ending in CRLF) on a new
// connection.
func dialGet(t *testing.T, addr, path, headers string) *rawStream {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: test\r\n%s\r\n", path, headers); err != nil {
		t.Fatal(err)
	}
	return &rawStream{conn: conn, r: bufio.NewReaderSize(conn, 256<<10)}
}

// expect reads exactly len(want) bytes and compares.
func (s *rawStream) expect(t *testing.T, what string, want []byte) {
	t.Helper()
	_ = s.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(s.r, got); err != nil {
		t.Fatalf("%s: %v (read %q)", what, err, got)
	}
	if string(got) != string(want) {
		t.Fatalf("%s:\ngot  %q\nwant %q", what, got, want)
	}
}

// line reads one line, with its line break.
func (s *rawStream) line(t *testing.T) string {
	t.Helper()
	_ = s.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := s.r.ReadString('\n')
	if err != nil {
		t.Fatalf("read line: %v (read %q)", err, l)
	}
	return l
}

// statusOf sends a GET and returns the answer's status, dropping its body.
func statusOf(t *testing.T, client *http.Client, url string) int {
	t.Helper()
	res, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// ndjsonEvent reads the next line, which must be NDJSON event ev.
func (s *rawStream) ndjsonEvent(t *testing.T, ev *models.Event, what string) {
	t.Helper()
	if l := s.line(t); !strings.HasPrefix(l, `{"id":"`+ev.ID()+`"`) {
		t.Fatalf("%s: got %.40q, want event %s", what, l, ev.ID())
	}
}

// head reads the response head: its status line and its header lines,
// each of which must end with CRLF.
func (s *rawStream) head(t *testing.T) (status string, header map[string]string) {
	t.Helper()
	header = map[string]string{}
	for i := 0; ; i++ {
		l := s.line(t)
		if !strings.HasSuffix(l, "\r\n") {
			t.Fatalf("head line %q does not end with CRLF", l)
		}
		l = strings.TrimSuffix(l, "\r\n")
		switch k, v, ok := strings.Cut(l, ": "); {
		case i == 0:
			status = l
		case l == "":
			return status, header
		case !ok:
			t.Fatalf("header line %q", l)
		default:
			if _, dup := header[k]; dup {
				t.Fatalf("header %s twice", k)
			}
			header[k] = v
		}
	}
}

// eof waits until the server has closed the connection, skipping what it
// sent before.
func (s *rawStream) eof(t *testing.T, within time.Duration) {
	t.Helper()
	_ = s.conn.SetReadDeadline(time.Now().Add(within))
	if _, err := io.Copy(io.Discard, s.r); err != nil {
		t.Fatalf("the server did not close the stream: %v", err)
	}
}

// The hijacked writer's bytes on the wire: the response head it writes
// itself (status, stream headers, the request id, Connection: close and no
// body framing), the preamble and the opening events, an event's frame
// exactly as stream.Message encodes it, and heartbeats on an idle stream.
// The stream's slot, subscription, gauge and request metric are held while
// it is open and released when its client leaves, by the next heartbeat.
func TestLeanStreamWire(t *testing.T) {
	for _, tc := range []struct {
		name        string
		path        string
		contentType string
		preamble    string
		opening     func(l string) bool // first line of each opening event
		frame       func(m *stream.Message) []byte
		heartbeat   string
	}{
		{
			name: "sse", path: "/stream/stations", contentType: "text/event-stream",
			preamble: "retry: 2000\n\n",
			opening:  func(l string) bool { return strings.HasPrefix(l, "id: ") },
			frame:    (*stream.Message).SSE, heartbeat: ": keep-alive\n\n",
		},
		{
			name: "ndjson", path: "/stream/stations?format=ndjson", contentType: "application/x-ndjson",
			opening: func(l string) bool { return strings.HasPrefix(l, `{"id":"`) },
			frame:   (*stream.Message).NDJSON, heartbeat: "\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newLeanEnv(t, stream.HubOptions{}, 100*time.Millisecond, 1, false, false)
			c := dialStream(t, e.ts.Listener.Addr().String(), tc.path)

			status, h := c.head(t)
			if status != "HTTP/1.1 200 OK" {
				t.Fatalf("status line %q", status)
			}
			for k, want := range map[string]string{
				"Content-Type": tc.contentType, "Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "close",
			} {
				if h[k] != want {
					t.Errorf("%s: %q, want %q", k, h[k], want)
				}
			}
			for _, k := range []string{"X-Request-Id", "Date"} {
				if h[k] == "" {
					t.Errorf("no %s header: %q", k, h)
				}
			}
			for _, k := range []string{"Transfer-Encoding", "Content-Length"} {
				if v, ok := h[k]; ok {
					t.Errorf("%s: %q on a close-delimited stream", k, v)
				}
			}

			c.expect(t, "preamble", []byte(tc.preamble))
			for _, typ := range []string{models.EventConnectionEstablished, models.EventSnapshot} {
				l := c.line(t)
				if !tc.opening(l) {
					t.Fatalf("opening %s: line %q", typ, l)
				}
				if tc.name == "sse" {
					for l != "\n" {
						if strings.HasPrefix(l, "event: ") && l != "event: "+typ+"\n" {
							t.Fatalf("opening event %q, want %s", l, typ)
						}
						l = c.line(t)
					}
				} else if !strings.Contains(l, `"type":"`+typ+`"`) {
					t.Fatalf("opening line %q, want type %s", l, typ)
				}
			}

			// Live events, one frame each, byte for byte.
			for range 3 {
				ev := e.publish(t, 10)
				c.expect(t, "event "+ev.ID(), tc.frame(stream.NewMessage(ev)))
			}
			// Idle: heartbeats.
			c.expect(t, "heartbeat", []byte(tc.heartbeat))
			c.expect(t, "second heartbeat", []byte(tc.heartbeat))
			// Every event counted once, whoever wrote it (the stream's
			// goroutine, or the dispatcher directly).
			if n := e.metric(t, "batteryswap_events_delivered_total", "transport", tc.name); n != 2+3 {
				t.Fatalf("delivered{%s} = %v, want 5 (2 opening events and 3 live)", tc.name, n)
			}

			// While the stream is open its slot (1 per client here), its
			// subscription and the gauge are taken, and the request's
			// duration is not observed yet: it covers the stream's life.
			if e.hub.Subscribers() != 1 || e.metric(t, "batteryswap_stream_open", "transport", tc.name) != 1 {
				t.Fatalf("open stream: %d subscribers, gauge %v", e.hub.Subscribers(), e.metric(t, "batteryswap_stream_open"))
			}
			if n := e.metric(t, "batteryswap_http_request_duration_seconds", "route", "/stream/stations"); n != 0 {
				t.Fatalf("request duration observed %v times while the stream is open", n)
			}
			if code := statusOf(t, http.DefaultClient, e.ts.URL+"/stream/stations?transport=poll&timeout=0"); code != http.StatusTooManyRequests {
				t.Fatalf("second stream of the client: %d, want 429", code)
			}

			// The client leaves; the next heartbeat notices.
			c.conn.Close()
			eventually(t, "the stream releases what it holds after its client left", func() bool {
				return e.hub.Subscribers() == 0 && e.metric(t, "batteryswap_stream_open") == 0 &&
					e.metric(t, "batteryswap_http_request_duration_seconds", "route", "/stream/stations", "status", "200") == 1
			})
			if code := statusOf(t, http.DefaultClient, e.ts.URL+"/stream/stations?transport=poll&timeout=0"); code != http.StatusOK {
				t.Fatalf("stream after the first one ended: %d, want 200 (slot released)", code)
			}
		})
	}
}

// dialReader opens an NDJSON stream of every station and reads its head
// and opening events, so that the next line is the next event.
func dialReader(t *testing.T, addr string) *rawStream {
	t.Helper()
	c := dialStream(t, addr, "/stream/stations?format=ndjson")
	c.head(t)
	c.line(t) // connection_established
	c.line(t) // snapshot
	return c
}

// socketTransports are the stream transports that write a socket of
// their own, each with a raw dial of a stations stream.
var socketTransports = []struct {
	transport string
	dial      func(t *testing.T, addr string) *rawStream
}{
	{"sse", func(t *testing.T, addr string) *rawStream { return dialStream(t, addr, "/stream/stations") }},
	{"websocket", func(t *testing.T, addr string) *rawStream { return dialWebSocket(t, addr, "/ws/stations/") }},
}

// A client that stops reading fills its socket, then its queue, and is
// dropped and counted, at once rather than after the write timeout, while
// its writer is blocked on the full socket, on any transport that writes
// a socket; a reading client on the same topic gets every event in order.
func TestLeanStreamDropsSlowConsumer(t *testing.T) {
	for _, tc := range socketTransports {
		t.Run(tc.transport, func(t *testing.T) {
			e := newLeanEnv(t, stream.HubOptions{QueueSize: 8}, time.Minute, 100, false, false)
			addr := e.ts.Listener.Addr().String()
			fast := dialReader(t, addr)
			slow := tc.dial(t, addr)
			eventually(t, "the slow client subscribed", func() bool { return e.hub.Subscribers() == 2 })

			const size = 64 << 10
			published := 0
			for e.metric(t, "batteryswap_slow_consumer_disconnects_total") == 0 {
				if published == 2000 {
					t.Fatalf("%d events of %d KiB published and the slow client still not dropped", published, size>>10)
				}
				ev := e.publish(t, size)
				published++
				// In step with the fast reader, so that its own queue stays short.
				fast.ndjsonEvent(t, ev, "fast reader")
			}
			// The slow stream's writer was blocked on the full socket: the
			// drop must end it now, not when its 10 s write deadline passes.
			start := time.Now()
			eventually(t, "the dropped stream ends", func() bool {
				return e.hub.Subscribers() == 1 && e.metric(t, "batteryswap_stream_open", "transport", tc.transport) == 0
			})
			if waited := time.Since(start); waited > 5*time.Second {
				t.Fatalf("the dropped stream ended after %v: it waited for its write deadline", waited)
			}
			for range 3 {
				fast.ndjsonEvent(t, e.publish(t, 10), "fast reader after the drop")
			}
			if n := e.metric(t, "batteryswap_slow_consumer_disconnects_total"); n != 1 {
				t.Fatalf("%v slow-consumer disconnects, want 1", n)
			}
			slow.eof(t, 10*time.Second)
		})
	}
}

// A client that stops reading holds no write slot (api.Config.
// StreamWriters), on any hijacked transport: with one slot, the stream of a
// client whose socket is full waits for room without it, and a reading
// client beside it gets every event meanwhile. Were the slot held while
// waiting, the reading client's first event after the socket filled would
// wait until the stuck write failed on its deadline, which ends the stuck
// stream.
func TestStuckClientHoldsNoWriteSlot(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("write slots are Linux's (stream_writev_linux.go)")
	}
	for _, tc := range socketTransports {
		t.Run(tc.transport, func(t *testing.T) {
			e := newLeanEnv(t, stream.HubOptions{QueueSize: 100000}, time.Minute, 100, false, false,
				func(c *api.Config) { c.StreamWriters = 1 })
			addr := e.ts.Listener.Addr().String()
			reading := dialReader(t, addr)
			stuck := tc.dial(t, addr)
			if err := stuck.conn.(*net.TCPConn).SetReadBuffer(16 << 10); err != nil {
				t.Fatal(err)
			}
			eventually(t, "two subscribers", func() bool { return e.hub.Subscribers() == 2 })
			// Twice what the stuck client's socket buffers hold (fillCount):
			// its writer waits for room from early on, and its queue is
			// large enough not to be dropped.
			for i := range fillCount(t, 64<<10) {
				reading.ndjsonEvent(t, e.publish(t, 64<<10), "reading client")
				if e.hub.Subscribers() != 2 {
					t.Fatalf("the stuck stream ended after %d events: its write failed while the reading client waited", i+1)
				}
			}
			if n := e.metric(t, "batteryswap_stream_open", "transport", tc.transport); n != 1 {
				t.Fatalf("%v open %s streams, want the stuck one still open", n, tc.transport)
			}
		})
	}
}

// Drain ends every hijacked stream, even one whose writer is blocked on a
// client that stopped reading, and returns once their goroutines are gone:
// nothing leaks, and new streams are refused.
func TestLeanStreamDrainEndsStreamsAndLeaksNothing(t *testing.T) {
	// Registered first, so it runs after every other cleanup: the store,
	// broker and server close first.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	e := newLeanEnv(t, stream.HubOptions{QueueSize: 100000}, time.Minute, 100, false, false)
	addr := e.ts.Listener.Addr().String()
	sse := dialStream(t, addr, "/stream/stations")
	ndjson := dialStream(t, addr, "/stream?topics=stations&format=ndjson")
	stuck := dialStream(t, addr, "/stream/stations")
	for _, c := range []*rawStream{sse, ndjson} {
		c.head(t)
	}
	eventually(t, "three subscribers", func() bool { return e.hub.Subscribers() == 3 })
	// Fill the stuck client's socket until its writer blocks: the readers
	// keep up, the stuck one's queue is large enough not to be dropped.
	for _, c := range []*rawStream{sse, ndjson} {
		go func() { _, _ = io.Copy(io.Discard, c.r) }()
	}
	for range fillCount(t, 64<<10) {
		e.publish(t, 64<<10)
	}

	start := time.Now()
	e.srv.Drain()
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Drain took %v: it waited for a write deadline", took)
	}
	if n := e.hub.Subscribers(); n != 0 {
		t.Fatalf("%d subscribers after Drain", n)
	}
	if n := e.metric(t, "batteryswap_stream_open"); n != 0 {
		t.Fatalf("open-streams gauge %v after Drain", n)
	}
	stuck.eof(t, 10*time.Second)

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if code := statusOf(t, client, e.ts.URL+"/stream/stations"); code != http.StatusServiceUnavailable {
		t.Fatalf("stream after Drain: %d, want 503", code)
	}
}

// Hub.Close ends hijacked streams: their clients see the end of the
// response at once, and reconnect.
func TestLeanStreamEndsWhenTheHubCloses(t *testing.T) {
	e := newLeanEnv(t, stream.HubOptions{}, time.Minute, 100, false, false)
	c := dialStream(t, e.ts.Listener.Addr().String(), "/stream/stations")
	c.head(t)
	eventually(t, "subscribed", func() bool { return e.hub.Subscribers() == 1 })
	e.hub.Close()
	c.eof(t, 5*time.Second)
	eventually(t, "the gauge drops", func() bool { return e.metric(t, "batteryswap_stream_open") == 0 })
}

// Over TLS: HTTP/1.1 is hijacked too, but the dispatcher never writes to a
// TLS connection's socket itself; HTTP/2 cannot be hijacked, and the same
// stream is served through net/http.
func TestStreamOverTLS(t *testing.T) {
	for _, tc := range []struct {
		name  string
		h2    bool
		proto string
		close bool // Connection: close, the lean writer's response
	}{
		{"http/1.1 hijacked", false, "HTTP/1.1", true},
		{"http/2 buffered", true, "HTTP/2.0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newLeanEnv(t, stream.HubOptions{}, time.Minute, 100, true, tc.h2)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", e.ts.URL+"/stream/stations", nil)
			res, err := e.ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.Proto != tc.proto || res.Header.Get("Content-Type") != "text/event-stream" ||
				res.Header.Get("X-Request-Id") == "" || res.Close != tc.close {
				t.Fatalf("%s, Content-Type %q, X-Request-Id %q, Connection: close %v", res.Proto,
					res.Header.Get("Content-Type"), res.Header.Get("X-Request-Id"), res.Close)
			}
			r := bufio.NewReader(res.Body)
			if l, _ := r.ReadString('\n'); l != "retry: 2000\n" {
				t.Fatalf("first line %q", l)
			}
			for range 3 { // the rest of the preamble, the opening events
				for l, _ := r.ReadString('\n'); l != "\n"; l, _ = r.ReadString('\n') {
				}
			}
			eventually(t, "subscribed", func() bool { return e.hub.Subscribers() == 1 })
			for range 5 {
				ev := e.publish(t, 1000)
				want := stream.NewMessage(ev).SSE()
				got := make([]byte, len(want))
				if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("event %d: %v\ngot  %.80q\nwant %.80q", ev.Seq, err, got, want)
				}
			}
		})
	}
}

// A client that reads slowly gets every frame whole and in order, with
// heartbeats only between frames: a frame the dispatcher could write only in
// part is finished by the stream's goroutine before the events queued
// behind it, and before any heartbeat.
func TestLeanStreamSlowReaderGetsWholeFrames(t *testing.T) {
	e := newLeanEnv(t, stream.HubOptions{QueueSize: 1000}, 2*time.Millisecond, 100, false, false)
	c := dialStream(t, e.ts.Listener.Addr().String(), "/stream/stations")
	if err := c.conn.(*net.TCPConn).SetReadBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	c.head(t)
	for range 3 { // the preamble and the opening events, then a heartbeat
		for l := c.line(t); l != "\n"; l = c.line(t) {
		}
	}
	c.expect(t, "heartbeat", sseWriterHeartbeat)

	// The stream is idle, so the dispatcher writes the next event itself.
	// While the client does not read, this one is larger than the socket
	// buffers (at most 4 MiB + 16 KiB here) and can only be written in
	// part; the next ones queue up behind its rest.
	var want [][]byte
	total := 0
	publish := func(size int) {
		f := stream.NewMessage(e.publish(t, size)).SSE()
		want, total = append(want, f), total+len(f)
	}
	publish(8 << 20)
	for range 3 {
		publish(10)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 30 {
			size := 10
			if i%3 == 0 {
				size = 100 << 10
			}
			publish(size)
			time.Sleep(time.Duration(i%4) * time.Millisecond) // some events find the socket free, some do not
		}
	}()
	// Read slowly until every frame has come, checking the bytes as they
	// come once the publisher is done: frames in order, and heartbeats only
	// between them.
	var got []byte
	pos, frames, beats := 0, 0, 0
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(20 * time.Second)
	for finished := false; !finished || frames < len(want); {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d frames after %d bytes: frames were lost", frames, len(want), len(got))
		}
		select {
		case <-done:
			finished = true
		default:
		}
		time.Sleep(100 * time.Microsecond)
		_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.r.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
		for finished {
			rest := got[pos:]
			switch {
			case bytes.HasPrefix(rest, sseWriterHeartbeat):
				pos, beats = pos+len(sseWriterHeartbeat), beats+1
				continue
			case frames < len(want) && bytes.HasPrefix(rest, want[frames]):
				pos, frames = pos+len(want[frames]), frames+1
				continue
			case bytes.HasPrefix(sseWriterHeartbeat, rest),
				frames < len(want) && bytes.HasPrefix(want[frames], rest): // more to come
			default:
				t.Fatalf("frame %d of %d (%d bytes) is not whole where expected; next bytes %.60q", frames, len(want), len(want[frames%len(want)]), rest)
			}
			break
		}
	}
	t.Logf("%d frames whole and in order, %d heartbeats between them", frames, beats)
}

var sseWriterHeartbeat = []byte(": keep-alive\n\n")

// A long-poll waiting when the server drains is answered, not failed: an
// empty list and the same cursor, so the client polls again elsewhere.
func TestLongPollAnswersWhenTheServerDrains(t *testing.T) {
	e := newLeanEnv(t, stream.HubOptions{}, time.Minute, 100, false, false)
	cursor := strconv.FormatInt(e.seq, 10) // the head: nothing to answer yet
	type answer struct {
		status int
		body   string
	}
	done := make(chan answer, 1)
	go func() {
		res, err := http.Get(e.ts.URL + "/stream/stations?transport=poll&timeout=30&since=" + cursor)
		if err != nil {
			done <- answer{body: err.Error()}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		done <- answer{res.StatusCode, string(b)}
	}()
	eventually(t, "the poll waiting", func() bool { return e.hub.Subscribers() == 1 })
	e.srv.Drain()
	a := <-done
	if want := `{"events":[],"last_event_id":"` + cursor + `"}`; a.status != http.StatusOK || strings.TrimSpace(a.body) != want {
		t.Fatalf("poll at drain: %d %s, want 200 %s", a.status, a.body, want)
	}
}

// A WebSocket over TLS writes through the TLS connection (no socket
// writer, so no write slot: its bytes must be encrypted) and gets its
// events, large ones too, in order.
func TestWebSocketOverTLS(t *testing.T) {
	e := newLeanEnv(t, stream.HubOptions{}, time.Minute, 100, true, false,
		func(c *api.Config) { c.StreamWriters = 1 })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(e.ts.URL, "https")+"/ws/stations/",
		&websocket.DialOptions{HTTPClient: e.ts.Client()})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	for range 2 { // connection_established, snapshot
		if _, _, err := conn.Read(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var sent []*models.Event
	for range 3 {
		sent = append(sent, e.publish(t, 64<<10))
	}
	for _, ev := range sent {
		_, msg, err := conn.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(msg), `{"id":"`+ev.ID()+`"`) || len(msg) < 64<<10 {
			t.Fatalf("message %.40q (%d bytes), want event %s of 64 KiB", msg, len(msg), ev.ID())
		}
	}
}

// A WebSocket open when the server drains is closed with 1001 (going away),
// a clean close that tells the client to reconnect, not dropped (1006).
func TestWebSocketClosesGoingAwayWhenTheServerDrains(t *testing.T) {
	e := newLeanEnv(t, stream.HubOptions{}, time.Minute, 100, false, false)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// Several sockets: without the fix, whether one is dropped before its
	// close frame is written depends on timing, but all of them never are.
	conns := make([]*websocket.Conn, 10)
	for i := range conns {
		conns[i] = e.dialStations(ctx, t)
	}
	e.srv.Drain()
	for i, conn := range conns {
		_, _, err := conn.Read(ctx)
		if st := websocket.CloseStatus(err); st != websocket.StatusGoingAway {
			t.Errorf("socket %d after drain: %v (close status %d), want a close with %d", i, err, st, websocket.StatusGoingAway)
		}
	}
}

// Drain waits for every WebSocket to close, as it does for the hijacked
// streams (http.Server.Shutdown does not see either): a client that reads
// gets its close frame (1001) before Drain returns, and one that stopped
// reading, whose writer is blocked on its full socket, is cut off within
// the drain's grace rather than after the write timeout. Nothing is left
// running when Drain returns.
func TestWebSocketDrainWaitsForClosesAndCutsOffAStuckClient(t *testing.T) {
	// Registered first, so it runs after every other cleanup.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	e := newLeanEnv(t, stream.HubOptions{QueueSize: 100000}, time.Minute, 100, false, false)
	addr := e.ts.Listener.Addr().String()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	reading, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws/stations/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reading.CloseNow()
	reading.SetReadLimit(1 << 20)
	closed := make(chan error, 1)
	got := make(chan struct{}, 1000)
	go func() {
		for {
			if _, _, err := reading.Read(ctx); err != nil {
				closed <- err
				return
			}
			got <- struct{}{}
		}
	}()
	stuck := dialWebSocket(t, addr, "/ws/stations/")
	if err := stuck.conn.(*net.TCPConn).SetReadBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two subscribers", func() bool { return e.hub.Subscribers() == 2 })
	// Events of 64 KiB, in step with the reading client, until twice what
	// the stuck client's socket buffers can hold has been sent: its writer
	// is then blocked on the full socket.
	for range 2 { // connection_established, snapshot
		<-got
	}
	for i := range fillCount(t, 64<<10) {
		e.publish(t, 64<<10)
		select {
		case <-got:
		case err := <-closed:
			t.Fatalf("the reading client's socket ended after %d events: %v", i, err)
		}
	}

	start := time.Now()
	e.srv.Drain()
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Drain took %v: it waited for the stuck client's write deadline", took)
	}
	if n := e.metric(t, "batteryswap_stream_open", "transport", "websocket"); n != 0 {
		t.Fatalf("%v WebSockets open when Drain returned, want 0", n)
	}
	// The client's reader reports the close once it has answered it, which
	// may be just after the server saw the answer and Drain returned.
	select {
	case err := <-closed:
		if st := websocket.CloseStatus(err); st != websocket.StatusGoingAway {
			t.Fatalf("the reading client after Drain: %v (close status %d), want a close with %d", err, st, websocket.StatusGoingAway)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the reading client's socket was not closed")
	}
	stuck.eof(t, 10*time.Second)
}

// fillCount is how many events of size bytes fill a client's socket that
// does not read (its receive buffer set to 16 KiB) twice over: the
// kernel's largest send buffer (tcp_wmem) and the receive buffer, at
// least 300 events.
func fillCount(t *testing.T, size int) int {
	t.Helper()
	wmem := 4 << 20
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_wmem"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 3 {
			if n, err := strconv.Atoi(f[2]); err == nil {
				wmem = n
			}
		}
	}
	return max(300, 2*(wmem+(64<<10))/size+1)
}

// downBroker is a broker that cannot deliver (Redis down): Subscribe waits
// until its context ends, and says on entered that it was called.
type downBroker struct {
	*stream.MemoryBroker
	entered chan struct{}
}

func (b *downBroker) Subscribe(ctx context.Context, _ ...models.Topic) error {
	b.entered <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}

// A stream that is still opening when the server drains (here it waits
// for a broker that is down) is answered as one that arrives during the
// drain: 503 service_unavailable, or for a long-poll with a cursor what a
// waiting poll gets, nothing and the same cursor; never an empty 200.
func TestStreamOpeningWhenTheServerDrains(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		status     int
		body       string // the JSON answer, or only its error code
	}{
		{"sse", "/stream/stations", http.StatusServiceUnavailable, "service_unavailable"},
		{"poll", "/stream/stations?transport=poll&timeout=30&since=0", http.StatusOK, `{"events":[],"last_event_id":"0"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := storetest.Open(t, "sqlite", store.Options{})
			broker := &downBroker{MemoryBroker: stream.NewMemoryBroker(), entered: make(chan struct{}, 1)}
			reg := prometheus.NewRegistry()
			hub := stream.NewHub(broker, st, stream.HubOptions{Metrics: stream.NewMetrics(reg)})
			t.Cleanup(hub.Close)
			srv := api.New(api.Config{JWTSecret: []byte("test"), BcryptCost: 4, HeartbeatInterval: time.Minute,
				MaxStreamsPerClient: 10, Registry: reg, StreamMetrics: stream.NewMetrics(prometheus.NewRegistry()),
				Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}, st, hub, broker)
			ts := httptest.NewServer(srv.Handler())
			t.Cleanup(ts.Close)

			type answer struct {
				status int
				body   string
			}
			done := make(chan answer, 1)
			go func() {
				res, err := http.Get(ts.URL + tc.path)
				if err != nil {
					done <- answer{body: err.Error()}
					return
				}
				defer res.Body.Close()
				b, _ := io.ReadAll(res.Body)
				done <- answer{res.StatusCode, strings.TrimSpace(string(b))}
			}()
			<-broker.entered
			srv.Drain()
			a := <-done
			if a.status != tc.status {
				t.Fatalf("%s at drain: %d %q, want %d", tc.path, a.status, a.body, tc.status)
			}
			if tc.status == http.StatusOK {
				if a.body != tc.body {
					t.Fatalf("poll at drain: %s, want %s", a.body, tc.body)
				}
				return
			}
			var e struct {
				Error struct{ Code string } `json:"error"`
			}
			if err := json.Unmarshal([]byte(a.body), &e); err != nil || e.Error.Code != tc.body {
				t.Fatalf("%s at drain: %q, want the error %s", tc.path, a.body, tc.body)
			}
		})
	}
}

// A WebSocket whose heartbeat waits for a pong when the server drains (a
// client that reads but never answers pings) does not hold Drain for the
// heartbeat's timeout: the wait ends with the drain, and the client gets
// its close frame (1001).
func TestWebSocketDrainDoesNotWaitForAPong(t *testing.T) {
	e := newLeanEnv(t, stream.HubOptions{}, 50*time.Millisecond, 100, false, false)
	c := dialWebSocket(t, e.ts.Listener.Addr().String(), "/ws/stations/")
	if status, _ := c.head(t); !strings.Contains(status, " 101 ") {
		t.Fatalf("upgrade: %q", status)
	}
	const opClose, opPing = 0x8, 0x9
	for op := byte(0); op != opPing; {
		op, _ = c.wsFrame(t)
	}
	// The server now waits for the pong that never comes.
	start := time.Now()
	e.srv.Drain()
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Drain took %v: it waited for the heartbeat's pong", took)
	}
	for {
		op, payload := c.wsFrame(t)
		if op != opClose {
			continue
		}
		if len(payload) < 2 || int(payload[0])<<8|int(payload[1]) != int(websocket.StatusGoingAway) {
			t.Fatalf("close frame %q, want status %d", payload, websocket.StatusGoingAway)
		}
		return
	}
}

// wsFrame reads one unmasked WebSocket frame from the server: its opcode
// and payload.
func (s *rawStream) wsFrame(t *testing.T) (op byte, payload []byte) {
	t.Helper()
	_ = s.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(s.r, h[:]); err != nil {
		t.Fatalf("frame header: %v", err)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126, 127:
		ext := make([]byte, map[uint64]int{126: 2, 127: 8}[n])
		if _, err := io.ReadFull(s.r, ext); err != nil {
			t.Fatalf("frame length: %v", err)
		}
		n = 0
		for _, b := range ext {
			n = n<<8 | uint64(b)
		}
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(s.r, payload); err != nil {
		t.Fatalf("frame payload: %v", err)
	}
	return h[0] & 0x0f, payload
}

// A WebSocket holds its client's stream slot for as long as it is open,
// though its handler returned when it handed the socket to its own
// goroutine, and gives it back when the client closes it.
func TestWebSocketHoldsItsStreamSlot(t *testing.T) {
	e := newLeanEnv(t, stream.HubOptions{}, time.Minute, 2, false, false)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conns := []*websocket.Conn{e.dialStations(ctx, t), e.dialStations(ctx, t)}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	poll := e.ts.URL + "/stream/stations?transport=poll&timeout=0"
	if code := statusOf(t, client, poll); code != http.StatusTooManyRequests {
		t.Fatalf("a third stream beside two WebSockets: %d, want 429", code)
	}
	if err := conns[0].Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the closed WebSocket's slot is free", func() bool { return statusOf(t, client, poll) == http.StatusOK })
	if n := e.metric(t, "batteryswap_stream_open", "transport", "websocket"); n != 1 {
		t.Fatalf("%v WebSockets open, want 1", n)
	}
}

// dialStations opens a WebSocket on the stations topic and reads its
// opening messages; it is closed when the test ends.
func (e *leanEnv) dialStations(ctx context.Context, t *testing.T) *websocket.Conn {
	t.Helper()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.ts.URL, "http")+"/ws/stations/", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	for range 2 { // connection_established, snapshot
		if _, _, err := conn.Read(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return conn
}
