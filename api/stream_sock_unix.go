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
