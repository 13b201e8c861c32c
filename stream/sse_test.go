package stream

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"batteryswap/models"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestSSEGolden(t *testing.T) {
	ev := testEvent(42, models.StationTopic(3))
	var b []byte
	b = AppendRetry(b, 3*time.Second)
	b = AppendComment(b, "heartbeat")
	b = AppendComment(b, "forged\r\nevent: x")
	b = append(b, NewMessage(&ev).SSE()...)
	b = AppendSSE(b, "7", "multi_line", []byte("line 1\nline 2\r\nline 3\rline 4\n"))
	b = AppendSSE(b, "8\r\nevent: forged\x00", "bad\nname", []byte(`{}`))
	b = AppendSSE(b, "", "", []byte(" leading space"))
	b = AppendSSE(b, "\n", "empty_data", nil)
	golden(t, "sse.golden", b)
}

// sseEvent is what a client makes of a frame.
type sseEvent struct {
	id, event, data string
	hasID           bool
}

// parseSSE reads frames as the WHATWG EventSource parser does and returns
// the events it dispatches and the bytes left after the last blank line.
func parseSSE(stream string) (events []sseEvent, rest string) {
	var cur sseEvent
	var data []string
	for {
		i := strings.IndexAny(stream, "\r\n")
		if i < 0 {
			return events, stream
		}
		line := stream[:i]
		if strings.HasPrefix(stream[i:], "\r\n") {
			i++
		}
		stream = stream[i+1:]
		if line == "" {
			if data != nil {
				cur.data = strings.Join(data, "\n")
				events = append(events, cur)
			}
			cur, data = sseEvent{}, nil
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "id":
			if !strings.Contains(value, "\x00") {
				cur.id, cur.hasID = value, true
			}
		case "event":
			cur.event = value
		case "data":
			data = append(data, value)
		}
	}
}

func FuzzSSE(f *testing.F) {
	f.Add("1", "inventory_update", []byte(`{"id":"1"}`))
	f.Add("2\r\n", "a\nb", []byte("x\r\ny\rz\n"))
	f.Add("", "", []byte(""))
	f.Add("\x00", ":", []byte("\n\n"))
	f.Fuzz(func(t *testing.T, id, event string, data []byte) {
		frame := string(AppendSSE(nil, id, event, data))
		if !strings.HasSuffix(frame, "\n\n") || strings.Contains(frame[:len(frame)-1], "\n\n") || strings.Contains(frame, "\r") {
			t.Fatalf("frame %q is not one event ending in one blank line", frame)
		}
		events, rest := parseSSE(frame)
		if len(events) != 1 || rest != "" {
			t.Fatalf("frame %q parses into %d events, rest %q", frame, len(events), rest)
		}
		got := events[0]
		wantID := cleanField(id)
		if got.id != wantID || got.hasID != (wantID != "") {
			t.Errorf("id = %q (set %v), want %q", got.id, got.hasID, wantID)
		}
		if want := cleanField(event); got.event != want {
			t.Errorf("event = %q, want %q", got.event, want)
		}
		if want := normalizeNewlines(string(data)); got.data != want {
			t.Errorf("data = %q, want %q", got.data, want)
		}
	})
}

func normalizeNewlines(s string) string {
	return strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(s)
}

func TestAppendRetryAndComment(t *testing.T) {
	tests := []struct {
		name  string
		given []byte
		want  string
	}{
		{"retry in milliseconds", AppendRetry(nil, 1500*time.Millisecond), "retry: 1500\n\n"},
		{"negative retry", AppendRetry(nil, -time.Second), "retry: 0\n\n"},
		{"comment", AppendComment(nil, "ping"), ": ping\n\n"},
		{"comment cannot break out", AppendComment(nil, "a\n\nid: 9\r"), ": aid: 9\n\n"},
	}
	for _, tt := range tests {
		if string(tt.given) != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.given, tt.want)
		}
	}
}
