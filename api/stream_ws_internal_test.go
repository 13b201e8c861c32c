package api

import (
	"bytes"
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
	h := &heldConn{Conn: under}

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
