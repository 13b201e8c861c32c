//go:build !linux

package api

import "net"

// sysWriter is Linux's writev (stream_writev_linux.go); elsewhere streams
// write with net.Buffers.WriteTo and take no write slot.
type sysWriter struct{}

func (*sysWriter) init(net.Conn, writeSlots) {}

func (*sysWriter) send(*net.Buffers) (n int64, ok bool, err error) { return 0, false, nil }
