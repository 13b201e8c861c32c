package stream

import (
	"bytes"
	"encoding/json"
	"testing"

	"batteryswap/models"
)

func TestNDJSONGolden(t *testing.T) {
	ev := testEvent(42, models.StationTopic(3))
	var b []byte
	b = append(b, NewMessage(&ev).NDJSON()...)
	b = AppendNDJSON(b, []byte("{\n  \"id\": \"43\",\r\n  \"type\": \"snapshot\"\n}"))
	b = AppendNDJSON(b, []byte(`{}`))
	golden(t, "ndjson.golden", b)
}

// A Message's encodings agree with the encoders and with the event's
// Data, even when the stored payload spans lines.
func TestMessage(t *testing.T) {
	ev := testEvent(9, models.UserTopic(4))
	ev.Payload = json.RawMessage("{\n\"type\": \"notification\",\n\"title\": \"a\\nb\"\n}")
	m := NewMessage(&ev)
	if m.Seq() != 9 || m.Event() != &ev {
		t.Errorf("Seq() = %d, Event() = %p; want 9 and %p", m.Seq(), m.Event(), &ev)
	}
	data := m.Data()
	if bytes.ContainsAny(data, "\r\n") {
		t.Errorf("Data() = %q spans lines", data)
	}
	var got, want map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("Data() is not JSON: %v", err)
	}
	if err := json.Unmarshal(ev.Data(), &want); err != nil {
		t.Fatal(err)
	}
	if got["id"] != "9" || got["title"] != want["title"] || len(got) != len(want) {
		t.Errorf("Data() = %v, want %v", got, want)
	}
	if !bytes.Equal(m.NDJSON(), append(bytes.Clone(data), '\n')) {
		t.Errorf("NDJSON() = %q, want Data() and a newline", m.NDJSON())
	}
	if want := AppendSSE(nil, "9", ev.Type, data); !bytes.Equal(m.SSE(), want) {
		t.Errorf("SSE() = %q, want %q", m.SSE(), want)
	}
}
