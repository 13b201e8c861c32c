package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"batteryswap/stream"
)

// SSE and NDJSON streams.
//
// A stream spends nearly all its life idle, so what an idle stream holds
// decides how many streams one instance serves. Through net/http an idle
// stream keeps its handler goroutine, grown beneath the Echo middleware
// while it built the snapshot, net/http's reader and writers and its
// background-read goroutine. So once an HTTP/1.x stream is subscribed and
// its opening events are built, serveHijacked takes the connection from
// net/http and hands it to a goroutine with a shallow stack that runs the
// pump, writing each batch's shared frames straight to the socket with one
// writev. The handler returns, and everything net/http and Echo held for
// the request is freed.
//
// What hijacking changes:
//
//   - The response is close-delimited: "Connection: close", with neither a
//     Content-Length nor chunked encoding. A stream only ever ends with its
//     connection (drain, slow consumer, the client leaving), so chunked
//     framing would buy no reuse of the connection; it would cost a size
//     line around every write of the shared frames, and HTTP/1.0 clients
//     could not read it.
//   - Nothing reads the connection any more, so a client that leaves is
//     noticed at the next write to it, or at the latest at the next
//     heartbeat, which first checks the socket for the client's end of
//     stream (peerGone). Until then, at most HEARTBEAT_INTERVAL, its
//     subscription and its stream slot stay taken, unless the same client
//     asks for a stream while at its limit: its streams are then checked
//     at once (leanStreams.releaseGone). (Over TLS there is no such check:
//     the second write after the client left fails.)
//   - http.Server.Shutdown does not track hijacked connections. Server.Drain
//     ends them and waits for their goroutines (leanStreams).
//   - The request's log line is written when the handler hands off (status
//     200, with its request id); the request duration metric is observed
//     when the stream ends, as for the other streams (handOffKey).
//
// HTTP/2 connections cannot be hijacked; serveBuffered runs the same pump
// through net/http's response writer.

// encoding is how SSE or NDJSON frames events and heartbeats.
type encoding struct {
	contentType string
	preamble    []byte
	// frame is an event's complete frame, shared by every subscriber (see
	// stream.Message); it must not be modified.
	frame     func(m *stream.Message) []byte
	heartbeat []byte
}

var (
	sseEncoding = encoding{
		contentType: "text/event-stream",
		preamble:    stream.AppendRetry(nil, retryAfter),
		frame:       (*stream.Message).SSE,
		heartbeat:   stream.AppendComment(nil, "keep-alive"),
	}
	ndjsonEncoding = encoding{
		contentType: "application/x-ndjson",
		frame:       (*stream.Message).NDJSON,
		heartbeat:   []byte("\n"),
	}
)

// handOffKey marks, in the Echo context, a request whose stream goes on
// after the handler returned: logRequests leaves its duration to the
// stream, which observes it when it ends.
const handOffKey = "batteryswap.stream.handed_off"

var (
	// errClientGone ends a stream whose write failed or whose client
	// closed its end.
	errClientGone = errors.New("client gone")
	// errDraining ends a hijacked stream when the server drains.
	errDraining = errors.New("server draining")
)

// aLongTimeAgo is a deadline in the past: it fails pending and future I/O.
var aLongTimeAgo = time.Unix(1, 0)

// serveSSE runs an SSE or NDJSON stream: on a hijacked connection when it
// can (HTTP/1.x), through net/http otherwise (HTTP/2).
func (s *Server) serveSSE(c echo.Context, req *streamRequest, slot *streamSlot) error {
	enc := &sseEncoding
	if req.transport == transportNDJSON {
		enc = &ndjsonEncoding
	}
	sub, intro, err := s.open(c.Request().Context(), req)
	if err != nil {
		return err
	}
	if handedOff, err := s.serveHijacked(c, req, enc, sub, intro, slot); handedOff {
		return err
	}
	return s.serveBuffered(c, req, enc, sub, intro)
}

// streamSlot is a client's stream slot (see streamLimiter), under the
// limiter's key for the client. The handler gives it back when it returns,
// unless a hijacked stream took it over.
type streamSlot struct {
	release func()
	key     string
}

// take hands the slot's release over to the caller.
func (s *streamSlot) take() func() {
	r := s.release
	s.release = func() {}
	return r
}

// serveHijacked hands the stream to a goroutine of its own on the hijacked
// connection and reports whether it did. If it did, sub, the connection
// and the slot now belong to that goroutine, and err is what the handler
// returns. It does not when the connection cannot be hijacked (HTTP/2);
// the caller then serves the stream itself, still owning sub.
func (s *Server) serveHijacked(c echo.Context, req *streamRequest, enc *encoding, sub *stream.Subscription, intro []*stream.Message, slot *streamSlot) (handedOff bool, err error) {
	res := c.Response()
	conn, _, err := http.NewResponseController(res).Hijack()
	if errors.Is(err, http.ErrNotSupported) {
		return false, nil
	}
	if err != nil {
		sub.Close()
		return true, fmt.Errorf("stream: hijack: %w", err)
	}
	// The bufio.ReadWriter is dropped: a stream never reads the request
	// body, and its writes go straight to conn. Echo must not write either.
	res.Committed = true
	conn = bareConn(conn)
	if req.delivery == stream.DeliverLatest {
		latestSendBuffer(conn)
	}
	l := &leanStream{
		handOff: s.newHandOff(c, req, sub, slot, http.StatusOK),
		conn:    conn, sock: newSocketWriter(conn, s.writers), enc: enc,
		opening:   responseHead(res.Header(), enc.contentType, enc.preamble),
		clientKey: slot.key,
	}
	if !s.hijacked.add(l) { // the server began draining meanwhile
		_ = conn.Close()
		sub.Close()
		l.release()
		return true, errStreamEnded
	}
	c.Set(handOffKey, true)
	// However the subscription ends (slow consumer, hub closed), a write
	// blocked on a client that stopped reading fails at once.
	sub.AfterEnd(func(cause error) { l.end(cause) })
	s.cfg.StreamMetrics.StreamOpened(req.transport)
	if err := s.writeOpening(l, l.transport, intro); err != nil {
		l.finish(err)
		return true, nil
	}
	go l.run()
	return true, nil
}

// bareConn returns the connection under the server's own wrapper
// (Listener), which only ever rewrites a 431, so that a stream's batches
// reach a TCP socket in one writev: net.Buffers writes buffer by buffer to
// any other net.Conn. A TLS connection stays as it is.
func bareConn(conn net.Conn) net.Conn {
	switch c := conn.(type) {
	case *jsonErrorConn:
		return c.Conn
	case *jsonErrorSocket:
		return c.Conn
	}
	return conn
}

// latestSendBuffer keeps the socket's send buffer of a delivery=latest
// stream small. What waits in a socket buffer can no longer be merged:
// with the kernel's default, which grows to megabytes, a slow reader would
// read minutes of stale events before the merged state that waits behind
// them; with a small one, the server feels the slow reader within a few
// events, and the reader gets the newest state soon after.
func latestSendBuffer(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(latestSocketBuffer)
	}
}

// latestSocketBuffer is the send buffer of a delivery=latest stream's
// socket (the kernel doubles it for its bookkeeping).
const latestSocketBuffer = 16 << 10

// responseHead is the HTTP/1.1 head of a hijacked stream: status 200, the
// headers the middleware set (X-Request-Id, CORS), the stream's own, and
// Connection: close; then preamble, the transport's first bytes.
func responseHead(h http.Header, contentType string, preamble []byte) []byte {
	h.Set(echo.HeaderContentType, contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Connection", "close")
	if h.Get("Date") == "" {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	// One allocation: grown from empty, the buffer was allocated five
	// times per connect.
	b := bytes.NewBuffer(make([]byte, 0, headSize+len(preamble)))
	b.WriteString("HTTP/1.1 200 OK\r\n")
	_ = h.Write(b) // it replaces line breaks in values; it cannot fail on a bytes.Buffer
	b.WriteString("\r\n")
	b.Write(preamble)
	return b.Bytes()
}

// headSize holds a stream's response head: about 500 bytes with the
// security headers, more with CORS's.
const headSize = 1 << 10

// leanStream is one hijacked SSE or NDJSON stream: the pump's transport on
// the raw connection. end may be called from any goroutine.
type leanStream struct {
	handOff
	conn      net.Conn
	sock      *socketWriter // conn's writer
	enc       *encoding
	opening   []byte // the response head and preamble, sent with the first write
	clientKey string // the stream limiter's key for the client
}

// run runs the pump and releases everything the stream holds when it ends.
func (l *leanStream) run() {
	// No context: the stream ends through its subscription (drain closes
	// it), which spares every stream a wait on one shared channel.
	l.finish(l.s.pump(context.Background(), l.sub, l, l.transport))
}

func (l *leanStream) frame(m *stream.Message) []byte { return l.enc.frame(m) }

// write writes the opening (first time only) and frames in one call
// (writev on a TCP connection), blocking until the socket took them or
// writeTimeout passed without progress (socketWriter.write).
func (l *leanStream) write(frames net.Buffers) error {
	if l.opening != nil {
		frames = append(net.Buffers{l.opening}, frames...)
		l.opening = nil
	}
	if _, err := l.sock.write(&frames); err != nil {
		return fmt.Errorf("%w: %w", errClientGone, err)
	}
	return nil
}

// heartbeat checks that the client is still there, then writes a
// heartbeat. A write to a socket whose peer has closed succeeds once (the
// peer answers with a reset), so without the check a client that left is
// only noticed at the heartbeat after next.
func (l *leanStream) heartbeat() error {
	if peerGone(l.conn) {
		return errClientGone
	}
	return l.write(net.Buffers{l.enc.heartbeat})
}

// end ends the stream from another goroutine, for cause, and reports
// whether cause is the one it ends for (no other came first). The pump
// sees it before its next write, and a write blocked on a full socket
// fails at once on the past deadline. It never blocks.
func (l *leanStream) end(cause error) bool { return l.sock.end(cause) }

// finish releases what the stream holds: the subscription, the connection,
// the client's stream slot, the open-stream gauge. It observes the
// request's duration, logs why the stream ended, and lets Drain know.
func (l *leanStream) finish(err error) {
	if cause := l.sock.cause(); cause != nil {
		err = cause // rather than the write that failed on end's deadline
	}
	_ = l.conn.Close()
	l.s.cfg.StreamMetrics.StreamClosed(l.transport)
	l.ended(err)
	l.s.hijacked.remove(l)
}

// leanStreams are a Server's hijacked streams, which http.Server does not
// track: Drain ends them and waits for their goroutines.
type leanStreams struct {
	mu      sync.Mutex
	open    map[string]map[*leanStream]struct{} // by clientKey
	drained bool
	wg      sync.WaitGroup
}

// add registers l, unless the server drains.
func (t *leanStreams) add(l *leanStream) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.drained {
		return false
	}
	if t.open == nil {
		t.open = make(map[string]map[*leanStream]struct{})
	}
	mine := t.open[l.clientKey]
	if mine == nil {
		mine = make(map[*leanStream]struct{})
		t.open[l.clientKey] = mine
	}
	mine[l] = struct{}{}
	t.wg.Add(1)
	return true
}

// remove is l's goroutine saying it is done.
func (t *leanStreams) remove(l *leanStream) {
	t.mu.Lock()
	if mine := t.open[l.clientKey]; mine != nil {
		if delete(mine, l); len(mine) == 0 {
			delete(t.open, l.clientKey)
		}
	}
	t.mu.Unlock()
	t.wg.Done()
}

// releaseGone ends the streams of the client key whose peer has closed,
// gives their slots back at once, and reports how many. A stream only
// notices a departed client at its next heartbeat (peerGone), up to
// HEARTBEAT_INTERVAL later; a client at its limit of streams that closes
// some and opens new ones (a page reloaded) would be refused until then.
// Called only when that client is at its limit. The departed stream's
// subscription and connection are closed here, before its slot is given
// back; its goroutine, woken, finishes the rest.
func (t *leanStreams) releaseGone(key string) int {
	t.mu.Lock()
	mine := make([]*leanStream, 0, len(t.open[key]))
	for l := range t.open[key] {
		if l.sock.cause() == nil { // one already ending gave its slot back or will
			mine = append(mine, l)
		}
	}
	t.mu.Unlock()
	n := 0
	for _, l := range mine {
		if peerGone(l.conn) && l.end(errClientGone) {
			l.sub.Close() // outside t.mu: it may leave a broker channel
			_ = l.conn.Close()
			l.release()
			n++
		}
	}
	return n
}

// endAll refuses new streams, ends every open one and waits until their
// goroutines have returned. The wait is short: an ended stream's write
// fails at once, and closing its subscription wakes it if it waits for
// events.
func (t *leanStreams) endAll() {
	t.mu.Lock()
	t.drained = true
	var open []*leanStream
	for _, mine := range t.open {
		for l := range mine {
			l.end(errDraining)
			open = append(open, l)
		}
	}
	t.mu.Unlock()
	for _, l := range open {
		l.sub.Close() // outside t.mu: it may leave a broker channel
	}
	t.wg.Wait()
}

// serveBuffered runs the pump through net/http's response writer, on the
// handler's goroutine: for connections that cannot be hijacked (HTTP/2).
// It closes sub.
func (s *Server) serveBuffered(c echo.Context, req *streamRequest, enc *encoding, sub *stream.Subscription, intro []*stream.Message) error {
	defer sub.Close()
	s.cfg.StreamMetrics.StreamOpened(req.transport)
	defer s.cfg.StreamMetrics.StreamClosed(req.transport)
	t := &bufferedStream{res: c.Response(), rc: http.NewResponseController(c.Response()), enc: enc}
	err := s.writeOpening(t, req.transport, intro)
	if err == nil {
		err = s.pump(c.Request().Context(), sub, t, req.transport)
	}
	s.endLog(err, req.transport, req.requestID)
	return errStreamEnded
}

// bufferedStream is the pump's transport through net/http: each frame is
// written to the response, and the batch flushed once.
type bufferedStream struct {
	res     *echo.Response
	rc      *http.ResponseController
	enc     *encoding
	started bool
}

func (b *bufferedStream) frame(m *stream.Message) []byte { return b.enc.frame(m) }

func (b *bufferedStream) write(frames net.Buffers) error {
	if !b.started {
		b.started = true
		h := b.res.Header()
		h.Set(echo.HeaderContentType, b.enc.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
		b.res.WriteHeader(http.StatusOK)
		frames = append(net.Buffers{b.enc.preamble}, frames...)
	}
	_ = b.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	for _, f := range frames {
		if _, err := b.res.Write(f); err != nil {
			return fmt.Errorf("%w: %w", errClientGone, err)
		}
	}
	if err := b.rc.Flush(); err != nil {
		return fmt.Errorf("%w: %w", errClientGone, err)
	}
	return nil
}

func (b *bufferedStream) heartbeat() error { return b.write(net.Buffers{b.enc.heartbeat}) }
