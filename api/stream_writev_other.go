//go:build !linux

package api

import "net"

// socketWriter is Linux's (stream_writev_linux.go); elsewhere hijacked
// streams write with net.Buffers.WriteTo and take no write slot.
type socketWriter struct{ conn net.Conn }

func newSocketWriter(conn net.Conn, _ writeSlots) *socketWriter { return &socketWriter{conn: conn} }

func (w *socketWriter) send(frames *net.Buffers) (int64, error) { return frames.WriteTo(w.conn) }
