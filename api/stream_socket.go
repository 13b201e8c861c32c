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
// goroutine, end fails the write in progress and every later one at once,
// and hurry gives them a last deadline.
type socketWriter struct {
	conn net.Conn
	sys  sysWriter
	// ended is set by end to why the writes must stop; once it is, no
	// write may re-arm the deadline that end set in the past.
	ended atomic.Pointer[error]
	// last, set by hurry, is the latest deadline any write may have
	// (Unix nanoseconds; 0: none).
	last     atomic.Int64
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
		case sent > 0 && errors.Is(err, os.ErrDeadlineExceeded) && w.ended.Load() == nil:
			w.deadline = time.Time{} // progress: a new deadline for the rest
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

// armDeadline sets the write deadline unless enough of it is left. Setting
// a deadline updates a runtime timer; re-arming it only once half of it is
// used keeps that off the per-batch path: each write still gets between
// writeTimeout/2 and writeTimeout to make progress.
func (w *socketWriter) armDeadline() error {
	now := time.Now()
	if w.deadline.Sub(now) >= writeTimeout/2 {
		return nil
	}
	w.deadline = now.Add(writeTimeout)
	if last := w.last.Load(); last != 0 {
		if !now.Before(time.Unix(0, last)) {
			return os.ErrDeadlineExceeded
		}
		w.deadline = time.Unix(0, last)
	}
	if err := w.conn.SetWriteDeadline(w.deadline); err != nil {
		return err
	}
	// An end or a hurry just before the new deadline would be undone by
	// it: both set theirs again after it.
	if last := w.last.Load(); last != 0 && time.Unix(0, last).Before(w.deadline) {
		w.deadline = time.Unix(0, last)
		_ = w.conn.SetWriteDeadline(w.deadline)
	}
	return w.cause()
}

// hurry gives the write in progress, if any, and every later one until
// at most d from now to finish: what is on its way to a client that reads
// goes out, a client that does not read fails within d. It never blocks.
func (w *socketWriter) hurry(d time.Duration) {
	last := time.Now().Add(d)
	w.last.Store(last.UnixNano())
	_ = w.conn.SetWriteDeadline(last)
	if w.cause() != nil { // an end came first: its deadline stays
		_ = w.conn.SetWriteDeadline(aLongTimeAgo)
	}
}

// end makes the write in progress, if any, and every later one fail with
// cause, and reports whether cause is the one they fail with (no other
// came first). It never blocks.
func (w *socketWriter) end(cause error) bool {
	first := w.ended.CompareAndSwap(nil, &cause)
	_ = w.conn.SetWriteDeadline(aLongTimeAgo)
	return first
}

// cause is why the writer was ended, or nil.
func (w *socketWriter) cause() error {
	if c := w.ended.Load(); c != nil {
		return *c
	}
	return nil
}
