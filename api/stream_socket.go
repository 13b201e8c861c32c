package api

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// socketWriter writes a stream's bytes to its connection: a hijacked SSE
// or NDJSON stream's batches, a WebSocket's held messages. On Linux a
// socket is written with writev, holding one of the server's write slots
// only while the kernel takes bytes (sysWriter, writeSlots); anything
// else (TLS, another platform) with net.Buffers.WriteTo, without a slot.
//
// A write fails only when writeTimeout passes without progress: the client
// is stuck. One that is slow but progressing goes on, so a reader on a
// slow network (delivery=latest) is served at its own pace. From any
// goroutine, hurry gives the write in progress and every later one a last
// deadline, and end sets it in the past, with the cause they fail with.
type socketWriter struct {
	conn net.Conn
	sys  sysWriter
	// last is the latest deadline any write may have (Unix nanoseconds;
	// 0: none). It only moves earlier: no write re-arms past it.
	last atomic.Int64
	// ended is set by end to why the writes must stop.
	ended    atomic.Pointer[error]
	deadline time.Time // the write deadline set last; the writer's own
}

// newSocketWriter returns conn's writer, taking slots for its socket
// writes.
func newSocketWriter(conn net.Conn, slots writeSlots) *socketWriter {
	w := &socketWriter{conn: conn}
	w.sys.init(conn, slots)
	return w
}

// write writes frames, consuming them as it goes (as net.Buffers.WriteTo
// does; it never modifies the frames themselves), until all are written;
// n is what it wrote. After end it fails with end's cause.
func (w *socketWriter) write(frames *net.Buffers) (n int64, err error) {
	for {
		if err := w.armDeadline(); err != nil {
			return n, err
		}
		sent, err := w.send(frames)
		n += sent
		switch {
		case err == nil:
			return n, nil
		case sent > 0 && errors.Is(err, os.ErrDeadlineExceeded):
			w.deadline = time.Time{} // progress: a new deadline for the rest, within last
		default:
			return n, err
		}
	}
}

// send is one attempt, bounded by the deadline set.
func (w *socketWriter) send(frames *net.Buffers) (int64, error) {
	if n, ok, err := w.sys.send(frames); ok {
		return n, err
	}
	return frames.WriteTo(w.conn)
}

// armDeadline sets the write deadline unless enough of it is left, never
// past last. Setting a deadline updates a runtime timer; re-arming it only
// once half of it is used keeps that off the per-batch path: each write
// still gets between writeTimeout/2 and writeTimeout to make progress.
func (w *socketWriter) armDeadline() error {
	now := time.Now()
	if w.deadline.Sub(now) >= writeTimeout/2 {
		return nil
	}
	w.deadline = now.Add(writeTimeout)
	if last := w.last.Load(); last != 0 {
		if !now.Before(time.Unix(0, last)) {
			return w.failure()
		}
		w.deadline = time.Unix(0, last)
	}
	if err := w.conn.SetWriteDeadline(w.deadline); err != nil {
		return err
	}
	// A last deadline set meanwhile would be undone by this one.
	if last := w.last.Load(); last != 0 && time.Unix(0, last).Before(w.deadline) {
		w.deadline = time.Unix(0, last)
		_ = w.conn.SetWriteDeadline(w.deadline)
	}
	return nil
}

// failure is why a write past last fails: end's cause, or the deadline.
func (w *socketWriter) failure() error {
	if c := w.cause(); c != nil {
		return c
	}
	return os.ErrDeadlineExceeded
}

// hurry gives the write in progress, if any, and every later one until
// at most d from now to finish: what is on its way to a client that reads
// goes out, a client that does not read fails within d. It never blocks.
func (w *socketWriter) hurry(d time.Duration) { w.limit(time.Now().Add(d)) }

// end makes the write in progress, if any, and every later one fail with
// cause, and reports whether cause is the one they fail with (no other
// came first). It never blocks.
func (w *socketWriter) end(cause error) bool {
	first := w.ended.CompareAndSwap(nil, &cause)
	w.limit(aLongTimeAgo)
	return first
}

// limit moves last to t if that is earlier, and sets the connection's
// write deadline to last. Concurrent limits (and armDeadline) all set
// theirs again until the deadline set is the earliest asked for.
func (w *socketWriter) limit(t time.Time) {
	at := t.UnixNano()
	for {
		old := w.last.Load()
		if old != 0 && old <= at || w.last.CompareAndSwap(old, at) {
			break
		}
	}
	for {
		last := w.last.Load()
		_ = w.conn.SetWriteDeadline(time.Unix(0, last))
		if w.last.Load() == last {
			return
		}
	}
}

// cause is why the writer was ended, or nil.
func (w *socketWriter) cause() error {
	if c := w.ended.Load(); c != nil {
		return *c
	}
	return nil
}
