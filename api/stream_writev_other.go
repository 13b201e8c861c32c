//go:build !linux

package api

import "net"

// socketWriter is Linux's (stream_writev_linux.go); elsewhere hijacked
// streams write with net.Buffers.WriteTo and take no write slot.
type socketWriter struct{}

func newSocketWriter(net.Conn, writeSlots) *socketWriter { return nil }

func (*socketWriter) send(frames *net.Buffers) (int64, error) {
	panic("api: no socket writer on this platform")
}
