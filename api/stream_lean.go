package api

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"batteryswap/stream"
)

// The lean writer.
//
// An SSE or NDJSON stream spends nearly all its life idle, so what an idle
// stream holds decides how many streams one instance serves. Through
// net/http an idle stream keeps its handler goroutine (its stack grown to
// 16 KiB beneath the Echo middleware while it built the snapshot), net/http's
// 4 KiB reader, 4 + 2 KiB of writers and its background-read goroutine:
// about 53 KiB in all (docs/BENCHMARKS.md). So once a stream is subscribed
// and its opening frames are built, serveHijacked takes the connection from
// net/http, writes the response head itself and hands the connection to one
// goroutine with a shallow stack, which writes each event's shared frame
// straight to the socket. The handler returns, and everything net/http and
// Echo held for the request is freed.
//
// While a stream has nothing queued, the dispatcher writes the next event
// to its socket itself (send, a stream.DirectFunc), with a write that never
// waits: 10,000 subscribers of one topic then cost 10,000 system calls per
// event instead of 10,000 goroutine wake-ups as well. A socket that is full,
// or busy with the stream's own write, refuses the event, which is queued
// for the stream's goroutine as before; so a client that stops reading
// still fills its bounded queue and is dropped, and nothing waits for it.
// The price: the fan-out's system calls run on the broker's goroutine (and
// its helpers, see stream.Hub.dispatch), which holds the hub's read lock
// meanwhile, so a new subscription may wait for one fan-out (50–100 ms for
// 10,000 subscribers on the 2-core machine of docs/BENCHMARKS.md). Only
// plain TCP connections get direct writes; TLS ones always use the queue.
//
// What the lean writer changes:
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
// HTTP/2 connections cannot be hijacked; serveBuffered serves them.

// handOffKey marks, in the Echo context, a request whose stream goes on
// after the handler returned: logRequests leaves its duration to the
// stream, which observes it when it ends.
const handOffKey = "batteryswap.stream.handed_off"

var (
	// errClientGone ends a lean stream whose write failed or whose client
	// closed its end.
	errClientGone = errors.New("client gone")
	// errDraining ends a lean stream when the server drains.
	errDraining = errors.New("server draining")
)

// aLongTimeAgo is a deadline in the past: it fails pending and future I/O.
var aLongTimeAgo = time.Unix(1, 0)

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

// serveHijacked hands the stream to a lean writer and reports whether it
// did. If it did, sub, the connection and the slot now belong to the
// stream's goroutine, and err is what the handler returns. It does not when
// the connection cannot be hijacked (HTTP/2); the caller then serves the
// stream itself, still owning sub.
func (s *Server) serveHijacked(c echo.Context, req *streamRequest, fw *frameWriter, sub *stream.Subscription, opening []byte, introN int, slot *streamSlot) (handedOff bool, err error) {
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
	l := &leanStream{
		s: s, conn: conn, sub: sub, fw: fw, delivered: s.cfg.StreamMetrics.DeliveriesOf(req.transport),
		transport: req.transport, requestID: req.requestID, route: c.Path(), start: time.Now(),
		clientKey: slot.key, release: slot.take(),
	}
	if l.sock = newSockWriter(conn); l.sock != nil {
		l.direct = l.send
	}
	if !s.hijacked.add(l) { // the server began draining meanwhile
		_ = conn.Close()
		sub.Close()
		l.release()
		return true, errStreamEnded
	}
	c.Set(handOffKey, true)
	sub.OnEnd(l.kick)
	s.cfg.StreamMetrics.StreamOpened(req.transport)
	head := append(responseHead(res.Header(), fw.contentType), opening...)
	go l.run(head, introN)
	return true, nil
}

// responseHead is the HTTP/1.1 head of a hijacked stream: status 200, the
// headers the middleware set (X-Request-Id, CORS), the stream's own, and
// Connection: close.
func responseHead(h http.Header, contentType string) []byte {
	h.Set(echo.HeaderContentType, contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Connection", "close")
	if h.Get("Date") == "" {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n")
	_ = h.Write(&b) // it replaces line breaks in values; it cannot fail on a bytes.Buffer
	b.WriteString("\r\n")
	return b.Bytes()
}

// leanStream is one hijacked SSE or NDJSON stream. Its goroutine (run)
// writes what the subscription queues, heartbeats and the rest of a frame
// that a direct send began; the dispatcher sends events itself while
// nothing is queued (send). kick may be called from any goroutine.
type leanStream struct {
	s         *Server
	conn      net.Conn
	sub       *stream.Subscription
	fw        *frameWriter
	delivered stream.Deliveries
	transport string
	requestID string
	route     string
	start     time.Time
	clientKey string // the stream limiter's key for the client
	release   func() // gives the client's stream slot back; idempotent

	// ended is set by kick to why the stream must end; once it is, no
	// write may re-arm the deadline that kick set in the past.
	ended atomic.Pointer[error]

	// sock writes to conn's socket for direct sends; it and direct (l.send)
	// are nil when conn is not a socket.
	sock   *sockWriter
	direct stream.DirectFunc
	// wmu is held by whoever writes to conn: run, or a direct send, which
	// only tries it, so that the dispatcher never waits for run's write.
	wmu sync.Mutex
	// pending is the unwritten rest of a frame that a direct send began;
	// run writes it before anything else. Guarded by wmu.
	pending []byte
	// lastWrite is when conn was last written to (by run or a direct
	// send), as time since monoEpoch: the heartbeat waits for idleness.
	lastWrite atomic.Int64

	deadline time.Time // the write deadline set last; run's own
}

// monoEpoch is the origin of leanStream.lastWrite: a monotonic clock.
var monoEpoch = time.Now()

// run writes the response head and the opening frames, then the stream,
// and releases everything the stream holds when it ends.
func (l *leanStream) run(head []byte, introN int) {
	err := l.write(net.Buffers{head})
	if err == nil {
		l.delivered.Add(introN)
		err = l.loop()
	}
	l.finish(err)
}

// loop writes events as they come, everything queued in one write, and a
// heartbeat after each idle interval, until the subscription ends, the
// server drains, or a write fails. Whenever it has written all it has, it
// lets the dispatcher send the next events directly (stream.DirectFunc);
// when one cannot be sent at once it is queued, and loop wakes up.
func (l *leanStream) loop() error {
	// The drain context bounds reads of the history. The wait below does
	// not watch it: every stream waiting on one shared channel contends on
	// its lock at each event. Drain closes the subscription instead.
	ctx := l.s.drain
	interval := l.s.cfg.HeartbeatInterval
	// One timer per stream, re-armed only when it fires: never per event.
	hb := time.NewTimer(interval)
	defer hb.Stop()
	var batch [][]byte
	for {
		m, err := l.sub.Poll(ctx)
		switch {
		case err != nil:
			return err
		case l.ended.Load() != nil:
			return *l.ended.Load()
		case m == nil:
			if l.direct != nil {
				if err := l.write(nil); err != nil { // the rest of a direct send's frame
					return err
				}
				l.sub.EnableDirect(l.direct)
			}
			select {
			case <-l.sub.Ready():
			case <-hb.C:
				if err := l.heartbeat(hb, interval); err != nil {
					return err
				}
			}
			continue
		}
		batch = append(batch[:0], l.fw.frame(m))
		for len(batch) < maxBatch {
			m, ok := l.sub.TryNext()
			if !ok {
				break
			}
			batch = append(batch, l.fw.frame(m))
		}
		n := len(batch)
		if err := l.write(batch); err != nil {
			return err
		}
		clear(batch)
		if cap(batch) > 16 {
			batch = nil // an idle stream keeps no burst-sized slice
		}
		l.delivered.Add(n)
	}
}

// heartbeat runs when the heartbeat timer fires. A write since it was armed,
// direct sends included, pushes it back; otherwise the client must still be
// there, and it gets a heartbeat.
func (l *leanStream) heartbeat(hb *time.Timer, interval time.Duration) error {
	if idle := time.Since(monoEpoch) - time.Duration(l.lastWrite.Load()); idle < interval {
		hb.Reset(interval - idle)
		return nil
	}
	// A write to a socket whose peer has closed succeeds once (the peer
	// answers with a reset), so without this check a client that left is
	// only noticed at the heartbeat after next.
	if peerGone(l.conn) {
		return errClientGone
	}
	if err := l.write(net.Buffers{l.fw.heartbeat}); err != nil {
		return err
	}
	hb.Reset(interval)
	return nil
}

// write writes the rest of a direct send's frame, if any, and bufs, in one
// call (writev on a TCP connection), blocking until the socket took them or
// the write deadline passed. The frames are the shared ones of
// stream.Message; WriteTo consumes bufs, its own copy of the slice, and
// never modifies the frames.
func (l *leanStream) write(bufs net.Buffers) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if len(l.pending) > 0 {
		bufs = append(net.Buffers{l.pending}, bufs...)
		l.pending = nil
	}
	if len(bufs) == 0 {
		return nil
	}
	now := time.Now()
	// Setting a deadline updates a runtime timer. Re-arming it only once
	// half of it is used keeps that off the per-event path: each write
	// still gets between writeTimeout/2 and writeTimeout to finish.
	if l.deadline.Sub(now) < writeTimeout/2 {
		l.deadline = now.Add(writeTimeout)
		if err := l.conn.SetWriteDeadline(l.deadline); err != nil {
			return fmt.Errorf("%w: %w", errClientGone, err)
		}
		// A kick just before the new deadline would be undone by it.
		if cause := l.ended.Load(); cause != nil {
			return *cause
		}
	}
	l.lastWrite.Store(int64(now.Sub(monoEpoch)))
	if _, err := bufs.WriteTo(l.conn); err != nil {
		return fmt.Errorf("%w: %w", errClientGone, err)
	}
	return nil
}

// send is the stream's stream.DirectFunc. On the dispatcher's goroutine,
// with the hub's locks held, it writes m's frame if the socket takes it at
// once, and never waits: while run is writing (it holds wmu), while the
// rest of an earlier frame is pending, or when the socket is full, it sends
// nothing, and m is queued for run. If the socket takes part of the frame,
// the rest is left to run, which the subscription wakes.
func (l *leanStream) send(m *stream.Message) (sent, more bool) {
	if !l.wmu.TryLock() {
		return false, false
	}
	defer l.wmu.Unlock()
	if len(l.pending) > 0 {
		return false, false
	}
	b := l.fw.frame(m)
	n := l.sock.writeNow(b)
	if n <= 0 {
		return false, false
	}
	l.lastWrite.Store(int64(time.Since(monoEpoch)))
	l.delivered.Add(1)
	if n < len(b) {
		l.pending = b[n:]
		return true, false
	}
	return true, true
}

// kick ends the stream from another goroutine, for cause: the
// subscription ended (kick is its OnEnd function, which may run on the
// broker's goroutine), or the server drains. The writer sees ended before
// its next write, and a write blocked on a full socket fails at once on
// the past deadline. It never blocks.
func (l *leanStream) kick(cause error) { l.end(cause) }

// end is kick, reporting whether cause is the one the stream ends for (no
// other came first).
func (l *leanStream) end(cause error) bool {
	first := l.ended.CompareAndSwap(nil, &cause)
	_ = l.conn.SetWriteDeadline(aLongTimeAgo)
	return first
}

// finish releases what the stream holds: the subscription, the connection,
// the client's stream slot, the open-stream gauge. It observes the
// request's duration, logs why the stream ended, and lets Drain know.
func (l *leanStream) finish(err error) {
	if cause := l.ended.Load(); cause != nil {
		err = *cause // rather than the write that failed on kick's deadline
	}
	l.sub.Close()
	_ = l.conn.Close()
	l.release()
	l.s.cfg.StreamMetrics.StreamClosed(l.transport)
	l.s.metrics.observe(http.MethodGet, l.route, http.StatusOK, time.Since(l.start))
	switch {
	case errors.Is(err, errClientGone), errors.Is(err, errDraining):
		l.s.log.Debug("stream ended", "transport", l.transport, "reason", err.Error(), "request_id", l.requestID)
	default:
		l.s.endLog(err, l.transport, l.requestID)
	}
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
		if l.ended.Load() == nil { // one already ending gave its slot back or will
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
// goroutines have returned. The wait is short: a kicked stream's write
// fails at once, closing its subscription wakes it if it waits for events,
// and its reads of the history end with the drain context.
func (t *leanStreams) endAll() {
	t.mu.Lock()
	t.drained = true
	var open []*leanStream
	for _, mine := range t.open {
		for l := range mine {
			l.kick(errDraining)
			open = append(open, l)
		}
	}
	t.mu.Unlock()
	for _, l := range open {
		l.sub.Close() // outside t.mu: it may leave a broker channel
	}
	t.wg.Wait()
}
