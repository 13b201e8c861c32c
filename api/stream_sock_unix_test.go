//go:build unix

package api

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
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

// A heldConn (a WebSocket's) on a socket writes through the socket writer:
// its write waits for a write slot, and gives the slot back once the
// kernel took the bytes.
func TestHeldConnWritesInAWriteSlot(t *testing.T) {
	skipWithoutSlots(t)
	client, server := tcpPair(t)
	slots := make(writeSlots, 1)
	h := newHeldConn(server, slots)
	slots.take() // every slot taken
	done := make(chan error, 1)
	go func() {
		_, err := h.Write([]byte("frame"))
		done <- err
	}()
	awaitSlotWait(t, "the write did not wait for a write slot")
	_ = client.SetReadDeadline(time.Now())
	if n, err := client.Read(make([]byte, 16)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes (%v) while every write slot was taken, want none", n, err)
	}
	slots.give()
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len("frame"))
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "frame" {
		t.Fatalf("read %q (%v), want %q", got, err, "frame")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(slots) != 0 {
		t.Fatalf("%d write slots still taken after the write", len(slots))
	}
}

// skipWithoutSlots skips a test of the write slots where hijacked streams
// take none (stream_writev_other.go).
func skipWithoutSlots(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("write slots are Linux's (stream_writev_linux.go)")
	}
}

// awaitSlotWait waits until a goroutine is blocked taking a write slot,
// and fails with why if none is within 10 s.
func awaitSlotWait(t *testing.T, why string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !waitingForSlot() {
		if time.Now().After(deadline) {
			t.Fatal(why)
		}
		runtime.Gosched()
	}
}

// waitingForSlot reports whether a goroutine is blocked taking a write slot.
func waitingForSlot() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "[chan send") && strings.Contains(g, "api.writeSlots.take") {
			return true
		}
	}
	return false
}

// A WebSocket's connection (heldHijacker.Hijack) is wired to the server's
// write slots: a write on it waits while every slot is taken.
func TestHijackedWebSocketConnWaitsForAWriteSlot(t *testing.T) {
	skipWithoutSlots(t)
	slots := make(writeSlots, 1)
	wrote := make(chan error, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hj := &heldHijacker{ResponseWriter: w, slots: slots}
		conn, _, err := hj.Hijack()
		if err != nil {
			wrote <- err
			return
		}
		go func() {
			defer conn.Close()
			_, err := conn.Write([]byte("frame"))
			wrote <- err
		}()
	}))
	t.Cleanup(ts.Close)
	slots.take() // every slot taken
	client, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	if _, err := io.WriteString(client, "GET / HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	awaitSlotWait(t, "the hijacked connection's write did not wait for a write slot")
	slots.give()
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "frame" {
		t.Fatalf("read %q (%v), want %q", got, err, "frame")
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}
