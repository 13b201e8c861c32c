//go:build unix

package api

import (
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// peerGone tells a client that is still there (idle, or sending bytes the
// stream ignores) from one that closed or reset its end, without waiting.
func TestPeerGone(t *testing.T) {
	for _, tc := range []struct {
		name  string
		given func(client net.Conn)
		want  bool
	}{
		{"idle client", func(net.Conn) {}, false},
		{"client sent bytes", func(c net.Conn) { _, _ = c.Write([]byte("GET / HTTP/1.1\r\n\r\n")) }, false},
		{"client closed", func(c net.Conn) { c.Close() }, true},
		{"client reset", func(c net.Conn) { _ = c.(*net.TCPConn).SetLinger(0); c.Close() }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t)
			tc.given(client)
			// The client's bytes or its FIN cross loopback asynchronously;
			// a false answer may only be early, never a true one wrong.
			deadline := time.Now().Add(5 * time.Second)
			got := peerGone(server)
			for got != tc.want && tc.want && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
				got = peerGone(server)
			}
			if got != tc.want {
				t.Fatalf("peerGone = %v, want %v", got, tc.want)
			}
			if !tc.want {
				time.Sleep(20 * time.Millisecond) // let the client's bytes arrive, then ask again
				if peerGone(server) {
					t.Fatal("peerGone = true for a client that is still there")
				}
			}
		})
	}
	t.Run("not a socket", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		if peerGone(a) {
			t.Fatal("peerGone = true for a pipe")
		}
	})
}
