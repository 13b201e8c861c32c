package api

import "testing"

func TestPrefersJSON(t *testing.T) {
	for _, tt := range []struct {
		accept string
		want   bool
	}{
		{"", false},
		{"*/*", false},
		{"text/event-stream", false},
		{"application/json", true},
		{"Application/JSON", true},
		{"application/json; charset=utf-8", true},
		{"application/json;q=0.1, text/event-stream", false},
		{"text/event-stream;q=0.5, application/json", true},
		{"application/json, text/event-stream", true},
		{"text/event-stream, application/json", false},
		{"application/json;q=0", false},
		{"text/html, application/json;q=0.9", true},
	} {
		if got := prefersJSON([]string{tt.accept}); got != tt.want {
			t.Errorf("prefersJSON(%q) = %v, want %v", tt.accept, got, tt.want)
		}
	}
}
