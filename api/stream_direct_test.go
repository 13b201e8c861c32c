//go:build unix

package api

import (
	"bytes"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"batteryswap/models"
	"batteryswap/stream"
)

// directStream is a lean stream over one end of a loopback connection,
// with no server around it: enough for send, write and heartbeat.
func directStream(t *testing.T) (l *leanStream, client net.Conn) {
	t.Helper()
	client, server := tcpPair(t)
	// Small fixed buffers (no autotuning), so that a frame of 1 MiB cannot
	// fit in them.
	if client.(*net.TCPConn).SetReadBuffer(64<<10) != nil || server.(*net.TCPConn).SetWriteBuffer(64<<10) != nil {
		t.Fatal("cannot set the socket buffers")
	}
	l = &leanStream{conn: server, fw: &sseWriter, sock: newSockWriter(server)}
	if l.sock == nil {
		t.Fatal("a TCP connection has no raw socket")
	}
	return l, client
}

func message(seq int64, size int) *stream.Message {
	return stream.NewMessage(&models.Event{
		Seq: seq, Type: models.EventInventoryUpdate, Topic: models.TopicStations, CreatedAt: time.Now(),
		Payload: models.NewPayload(models.EventInventoryUpdate, time.Now(), map[string]any{"message": strings.Repeat("x", size)}),
	})
}

// readAll reads from c until want bytes came or nothing more comes.
func readAll(t *testing.T, c net.Conn, want int) []byte {
	t.Helper()
	var got bytes.Buffer
	buf := make([]byte, 1<<20)
	for got.Len() < want {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			t.Fatalf("read %d of %d bytes: %v", got.Len(), want, err)
		}
	}
	return got.Bytes()
}

// nothingToRead asserts that no byte arrives for a while.
func nothingToRead(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var b [64]byte
	if n, err := c.Read(b[:]); n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %q, %v; want nothing", b[:n], err)
	}
}

// A direct send writes a frame that the socket takes at once; a frame the
// socket takes only in part leaves the rest pending, sends nothing more
// until the writer has finished it, and the writer writes it before
// anything else, so the client sees whole frames in order. A send never
// waits: not for the writer, not for a full socket.
func TestLeanSendPartialWrites(t *testing.T) {
	l, client := directStream(t)

	small := message(1, 10)
	if sent, more := l.send(small); !sent || !more {
		t.Fatalf("send of a small frame = %v, %v; want sent, more", sent, more)
	}
	if got := readAll(t, client, len(small.SSE())); !bytes.Equal(got, small.SSE()) {
		t.Fatalf("client got %q, want %q", got, small.SSE())
	}

	// Bigger than the socket buffers, while the client does not read.
	big := message(2, 1<<20)
	sent, more := l.send(big)
	if !sent || more || len(l.pending) == 0 || len(l.pending) >= len(big.SSE()) {
		t.Fatalf("send of a frame larger than the socket = %v, %v with %d of %d bytes pending; want sent, no more, a partial write",
			sent, more, len(l.pending), len(big.SSE()))
	}
	next := message(3, 10)
	if sent, _ := l.send(next); sent {
		t.Fatal("send with a frame pending: sent")
	}

	// While the writer writes, a send does not wait for it.
	l.wmu.Lock()
	done := make(chan bool)
	go func() { s, _ := l.send(next); done <- s }()
	select {
	case s := <-done:
		if s {
			t.Fatal("send while the writer writes: sent")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("send waited for the writer")
	}
	l.wmu.Unlock()

	// The writer finishes the frame, then the next one and a heartbeat.
	want := append(append(append([]byte(nil), big.SSE()...), next.SSE()...), sseWriter.heartbeat...)
	got := make(chan []byte)
	go func() { got <- readAll(t, client, len(want)) }()
	if err := l.write(net.Buffers{next.SSE()}); err != nil {
		t.Fatal(err)
	}
	if err := l.write(net.Buffers{sseWriter.heartbeat}); err != nil {
		t.Fatal(err)
	}
	if g := <-got; !bytes.Equal(g, want) {
		t.Fatalf("client got %d bytes, want %d: the frames were cut or reordered", len(g), len(want))
	}
	if len(l.pending) != 0 {
		t.Fatalf("%d bytes still pending", len(l.pending))
	}
}

// A direct send to a full socket sends nothing and returns at once, so the
// event is queued and the dispatcher moves on; nothing is left pending.
func TestLeanSendToFullSocket(t *testing.T) {
	l, client := directStream(t)
	filler := bytes.Repeat([]byte("x"), 1<<20)
	written := 0
	for n := l.sock.writeNow(filler); n > 0; n = l.sock.writeNow(filler) {
		written += n
	}
	start := time.Now()
	if sent, more := l.send(message(1, 10)); sent || more {
		t.Fatalf("send to a full socket = %v, %v; want nothing sent", sent, more)
	}
	if len(l.pending) != 0 {
		t.Fatal("a refused send left bytes pending")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("send to a full socket took %v", d)
	}
	readAll(t, client, written)
	client.Close()
	// A closed connection, or one kicked past its deadline, takes nothing.
	l.kick(errDraining)
	if sent, _ := l.send(message(2, 10)); sent {
		t.Fatal("send after kick: sent")
	}
}

// Heartbeats count direct sends as writes: a stream that got an event
// directly within the interval gets no heartbeat, an idle one does.
func TestLeanHeartbeatCountsDirectSends(t *testing.T) {
	l, client := directStream(t)
	const interval = time.Minute
	hb := time.NewTimer(interval)
	defer hb.Stop()

	m := message(1, 10)
	if sent, _ := l.send(m); !sent {
		t.Fatal("send: not sent")
	}
	readAll(t, client, len(m.SSE()))
	if err := l.heartbeat(hb, interval); err != nil {
		t.Fatal(err)
	}
	nothingToRead(t, client)

	l.lastWrite.Store(int64(time.Since(monoEpoch) - 2*interval)) // idle for two intervals
	if err := l.heartbeat(hb, interval); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, client, len(sseWriter.heartbeat)); !bytes.Equal(got, sseWriter.heartbeat) {
		t.Fatalf("heartbeat %q, want %q", got, sseWriter.heartbeat)
	}

	// The client leaves: the next heartbeat finds out before writing.
	client.Close()
	l.lastWrite.Store(int64(time.Since(monoEpoch) - 2*interval))
	deadline := time.Now().Add(5 * time.Second)
	err := l.heartbeat(hb, interval)
	for err == nil && time.Now().Before(deadline) { // the FIN crosses loopback asynchronously
		time.Sleep(5 * time.Millisecond)
		l.lastWrite.Store(int64(time.Since(monoEpoch) - 2*interval))
		err = l.heartbeat(hb, interval)
	}
	if !errors.Is(err, errClientGone) {
		t.Fatalf("heartbeat to a client that left = %v, want errClientGone", err)
	}
}
