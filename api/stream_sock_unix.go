//go:build unix

package api

import (
	"net"
	"syscall"
)

// peerGone reports whether the client has closed or reset its end of
// conn, with one non-blocking read of the socket. Whatever else the client
// sent is read and dropped: a stream never reads its connection. A
// connection that is not a socket (TLS) reports false; its writes tell.
func peerGone(conn net.Conn) bool {
	raw, err := rawConnOf(conn)
	if raw == nil {
		return err != nil // closed; not a socket tells nothing
	}
	gone := false
	var buf [64]byte
	err = raw.Read(func(fd uintptr) bool {
		n, err := syscall.Read(int(fd), buf[:])
		switch {
		case n == 0 && err == nil: // end of stream
			gone = true
		case err == syscall.EAGAIN || err == syscall.EINTR:
		case err != nil:
			gone = true
		}
		return true // never wait for data
	})
	return gone || err != nil
}

// rawConnOf returns conn's socket; nil, nil if conn is not one (TLS), and
// the error if conn is closed.
func rawConnOf(conn net.Conn) (syscall.RawConn, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, nil
	}
	return sc.SyscallConn()
}

// sockWriter writes to one socket without waiting for room. Its callback
// is bound once, so that a write (one per event per subscriber on the
// direct path) allocates nothing. Its user serialises the writes.
type sockWriter struct {
	raw  syscall.RawConn
	b    []byte
	n    int
	call func(fd uintptr) bool
}

// newSockWriter returns a writer for conn's socket, or nil if conn is not
// one (TLS).
func newSockWriter(conn net.Conn) *sockWriter {
	raw, err := rawConnOf(conn)
	if raw == nil || err != nil {
		return nil
	}
	w := &sockWriter{raw: raw}
	w.call = w.write
	return w
}

func (w *sockWriter) write(fd uintptr) bool {
	for {
		n, err := syscall.Write(int(fd), w.b)
		if err != syscall.EINTR {
			if err != nil {
				n = 0
			}
			w.n = n
			return true // never wait for room
		}
	}
}

// writeNow writes b to the socket as far as it takes it now, without
// waiting for room, and returns how many bytes it took: 0 when it is full,
// closed, or past its write deadline.
func (w *sockWriter) writeNow(b []byte) int {
	w.b, w.n = b, 0
	err := w.raw.Write(w.call)
	w.b = nil
	if err != nil {
		return 0
	}
	return w.n
}
