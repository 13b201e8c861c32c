package api

import (
	"bytes"
	"crypto/tls"
	"net"
	"slices"
	"testing"
)

// countingConn records each write that reaches it.
type countingConn struct {
	net.Conn
	writes [][]byte
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

// A heldConn collects what is written between hold and flush and sends it
// in one write; outside a hold, writes go straight through.
func TestHeldConnSendsABatchInOneWrite(t *testing.T) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	under := &countingConn{Conn: a}
	h := newHeldConn(under, make(writeSlots, 1))

	if _, err := h.Write([]byte("direct")); err != nil {
		t.Fatal(err)
	}
	h.hold()
	for _, p := range []string{"one", "two", "three"} {
		if _, err := h.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if len(under.writes) != 1 {
		t.Fatalf("%d writes reached the connection during the hold, want only the one before it", len(under.writes)-1)
	}
	if err := h.flush(); err != nil {
		t.Fatal(err)
	}
	if err := h.flush(); err != nil { // nothing held: nothing written
		t.Fatal(err)
	}
	want := [][]byte{[]byte("direct"), []byte("onetwothree")}
	if !slices.EqualFunc(under.writes, want, bytes.Equal) {
		t.Fatalf("writes %q, want %q", under.writes, want)
	}
}

// A hijacked stream writes to the bare socket under the server's Listener,
// whose wrapper would turn each writev into a write per frame; a TLS
// connection is never unwrapped.
func TestBareConnUnwrapsOnlyTheListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wrapped := Listener(ln, 1<<20)
	t.Cleanup(func() { wrapped.Close() })
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}()
	c, err := wrapped.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*net.TCPConn); ok {
		t.Fatal("the Listener no longer wraps: this test checks nothing")
	}
	if _, ok := bareConn(c).(*net.TCPConn); !ok {
		t.Fatalf("bareConn(%T) = %T, want *net.TCPConn", c, bareConn(c))
	}
	tc := tls.Server(c, &tls.Config{})
	if got := bareConn(tc); got != net.Conn(tc) {
		t.Fatalf("bareConn unwrapped a TLS connection to %T", got)
	}
}
