//go:build !unix

package api

import (
	"net"
	"syscall"
)

// peerGone cannot look at the socket on this platform; a client that left
// is noticed when a write to it fails.
func peerGone(net.Conn) bool { return false }

// rawConnOf gives no socket here: the dispatcher never writes directly.
func rawConnOf(net.Conn) syscall.RawConn { return nil }

// writeNow is never called without a socket.
func writeNow(syscall.RawConn, []byte) int { return 0 }
