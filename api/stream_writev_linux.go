//go:build linux

package api

import (
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// sysWriter writes a socket with writev, holding one of the server's
// write slots only while the kernel takes bytes (writeSlots). A connection
// that is not a socket (TLS) is left to net.Buffers.WriteTo, without a
// slot: its writes cannot pause to give one back.
type sysWriter struct {
	raw   syscall.RawConn // nil: not a socket
	slots writeSlots
	// The state of the send in progress, for writev.
	frames *net.Buffers
	n      int64
	err    error
	held   bool
	write  func(fd uintptr) bool // writev, bound once
}

// init binds w to conn's socket, if it is one.
func (w *sysWriter) init(conn net.Conn, slots writeSlots) {
	w.slots = slots
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			w.raw = raw
			w.write = w.writev
		}
	}
}

// send writes frames, consuming them as it goes, until all are written,
// the socket fails, or the write deadline passes while the socket is full;
// n is what it wrote. ok is false when the connection is not a socket and
// nothing was tried.
func (w *sysWriter) send(frames *net.Buffers) (n int64, ok bool, err error) {
	if w.raw == nil {
		return 0, false, nil
	}
	w.frames, w.n, w.err = frames, 0, nil
	w.slots.take()
	w.held = true
	err = w.raw.Write(w.write)
	w.giveBack()
	w.frames = nil
	if err == nil {
		err = w.err
	}
	return w.n, true, err
}

// giveBack returns the send's slot if it still holds it.
func (w *sysWriter) giveBack() {
	if w.held {
		w.held = false
		w.slots.give()
	}
}

// maxIovecs is the most buffers one writev takes (IOV_MAX).
const maxIovecs = 1024

// writev is raw.Write's callback: it writes until everything is written
// or the socket is full; then it gives the slot back and asks to be
// called again once the socket has room.
func (w *sysWriter) writev(fd uintptr) bool {
	for len(*w.frames) > 0 {
		iovs := *w.frames
		if len(iovs) > maxIovecs {
			iovs = iovs[:maxIovecs]
		}
		n, err := unix.Writev(int(fd), iovs)
		if n > 0 {
			w.n += int64(n)
		}
		switch {
		case err == nil:
			consume(w.frames, n)
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			w.giveBack()
			return false
		default:
			w.err = os.NewSyscallError("writev", err)
			return true
		}
	}
	return true
}

// consume drops the first n bytes of v, and the buffers they empty.
func consume(v *net.Buffers, n int) {
	for len(*v) > 0 {
		first := len((*v)[0])
		if first > n {
			(*v)[0] = (*v)[0][n:]
			return
		}
		n -= first
		(*v)[0] = nil
		*v = (*v)[1:]
	}
}
