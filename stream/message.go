package stream

import "batteryswap/models"

// Message is one event ready for the wire. It is encoded once, when it is
// made, and the same Message is shared by every subscriber that receives it,
// so fan-out never encodes per subscriber. It is immutable and safe for
// concurrent use; the byte slices it returns are shared and must not be
// modified.
type Message struct {
	ev   *models.Event
	sse  []byte
	line []byte
	// skipped is how many events this one replaces (MergeLatest); such a
	// message belongs to one subscriber.
	skipped int
}

// NewMessage encodes ev. The Message keeps ev, which must not change afterwards.
func NewMessage(ev *models.Event) *Message {
	line := AppendNDJSON(nil, ev.Data())
	return &Message{
		ev:   ev,
		sse:  AppendSSE(nil, ev.ID(), ev.Type, line[:len(line)-1]),
		line: line,
	}
}

// Event returns the event; callers must not modify it.
func (m *Message) Event() *models.Event { return m.ev }

// Seq returns the event's sequence number, its public id.
func (m *Message) Seq() int64 { return m.ev.Seq }

// SSE returns the complete SSE frame (id, event, one data line, blank line).
func (m *Message) SSE() []byte { return m.sse }

// Data returns the event's JSON on one line: a WebSocket message or an
// element of a long-poll answer.
func (m *Message) Data() []byte { return m.line[:len(m.line)-1] }

// NDJSON returns Data followed by a newline.
func (m *Message) NDJSON() []byte { return m.line }
