package main

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestSSEReader(t *testing.T) {
	long := `{"id":"5","type":"snapshot","stations":[` + strings.Repeat(`{"id":1,"name":"x"},`, 100) + `{}],"timestamp":"2025-01-01T00:00:00Z"}`
	stream := "retry: 2000\n\n" +
		"id: 5\nevent: connection_established\ndata: {\"id\":\"5\",\"type\":\"connection_established\",\"timestamp\":\"2025-01-01T00:00:00Z\"}\n\n" +
		"id: 5\nevent: snapshot\ndata: " + long + "\n\n" +
		": keep-alive\n\n" +
		"id: 6\r\nevent: inventory_update\r\ndata: {\"id\":\"6\",\"type\":\"inventory_update\",\"timestamp\":\"2025-01-01T12:00:05.123456Z\",\"station_id\":3}\r\n\r\n" +
		"id: 7\nevent: inventory_update\ndata: {\"id\":\"7\"}\n\n" +
		"id: 8\nevent: partial\n"
	r := newSSEReader(bufio.NewReaderSize(strings.NewReader(stream), 256))
	at := time.Date(2025, 1, 1, 12, 0, 5, 200e6, time.UTC)
	r.now = func() time.Time { return at }
	type ev struct {
		id  int64
		typ string
		ts  time.Time
	}
	want := []ev{
		{5, "connection_established", time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)},
		{5, "snapshot", time.Time{}}, // too long for the buffer: timestamp not looked for
		{6, "inventory_update", time.Date(2025, 1, 1, 12, 0, 5, 123456000, time.UTC)},
		{7, "inventory_update", time.Time{}},
	}
	for i, w := range want {
		got, err := r.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if got.ID != w.id || !got.HasID || got.Type != w.typ || !got.Timestamp.Equal(w.ts) || !got.ReceivedAt.Equal(at) {
			t.Errorf("event %d = %+v, want %+v", i, *got, w)
		}
	}
	if got, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("after the last event: %+v, %v; want io.EOF (an unterminated event is not dispatched)", got, err)
	}
}

func TestPayloadTimestamp(t *testing.T) {
	tests := []struct {
		name  string
		given string
		want  time.Time
		ok    bool
	}{
		{"nanoseconds", `{"timestamp":"2025-03-04T05:06:07.123456789Z","type":"x"}`, time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC), true},
		{"whole seconds", `{"a":1,"timestamp":"2025-03-04T05:06:07Z"}`, time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC), true},
		{"missing", `{"type":"x"}`, time.Time{}, false},
		{"unterminated", `{"timestamp":"2025-03-04`, time.Time{}, false},
		{"not a time", `{"timestamp":"yesterday"}`, time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := payloadTimestamp([]byte(tt.given))
			if ok != tt.ok || !got.Equal(tt.want) {
				t.Errorf("payloadTimestamp = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
