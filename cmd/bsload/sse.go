package main

import (
	"bufio"
	"bytes"
	"errors"
	"strconv"
	"time"
)

// sseEvent is one dispatched SSE event, as much of it as the tool needs.
type sseEvent struct {
	ID    int64
	HasID bool
	Type  string
	// Timestamp is the payload's "timestamp" (commit time); zero when the
	// data had none or was too long to look into.
	Timestamp time.Time
	// ReceivedAt is when the event's data line was read.
	ReceivedAt time.Time
}

// sseReader reads events from a text/event-stream body with one small
// buffer: it keeps no event data, only the id, the type and the payload's
// timestamp, which it finds without decoding the JSON. Lines longer than
// the buffer (snapshots) are skipped past. Comments (heartbeats) and retry
// lines are not events.
type sseReader struct {
	r    *bufio.Reader
	ev   sseEvent
	any  bool // a field of the current event was seen
	last sseEvent
	long []byte
	now  func() time.Time
}

func newSSEReader(r *bufio.Reader) *sseReader { return &sseReader{r: r, now: time.Now} }

// readLine returns the next line without its line ending, valid until the
// next call. A line longer than the buffer (a snapshot) is skipped past: only
// its first bytes come back, enough to tell its field.
func (s *sseReader) readLine() ([]byte, error) {
	line, err := s.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		s.long = append(s.long[:0], line[:min(len(line), 64)]...)
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = s.r.ReadSlice('\n')
		}
		if err != nil {
			return nil, err
		}
		return s.long, nil
	}
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// Next returns the next event; the returned value is reused by the next
// call.
func (s *sseReader) Next() (*sseEvent, error) {
	for {
		line, err := s.readLine()
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			if s.any {
				ev := s.ev
				s.ev, s.any = sseEvent{}, false
				s.last = ev
				return &s.last, nil
			}
			continue
		}
		if line[0] == ':' {
			continue // comment: a heartbeat
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "id":
			if n, err := strconv.ParseInt(string(value), 10, 64); err == nil {
				s.ev.ID, s.ev.HasID = n, true
			}
			s.any = true
		case "event":
			s.ev.Type = string(value)
			s.any = true
		case "data":
			s.ev.ReceivedAt = s.now()
			if ts, ok := payloadTimestamp(value); ok {
				s.ev.Timestamp = ts
			}
			s.any = true
		}
	}
}

var timestampKey = []byte(`"timestamp":"`)

// payloadTimestamp finds the top-level "timestamp" of a payload without
// decoding it. The payloads are flat objects whose only timestamp key is
// the top-level one.
func payloadTimestamp(data []byte) (time.Time, bool) {
	v, ok := stringField(data, timestampKey)
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(v))
	return t, err == nil
}
