package api

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"batteryswap/models"
)

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

// TestTransportChoice: an explicit ?transport= or ?format= wins over
// Accept, and an unknown one is refused whatever Accept says.
func TestTransportChoice(t *testing.T) {
	s := &Server{}
	topics := func(echo.Context) ([]models.Topic, error) { return []models.Topic{models.TopicStations}, nil }
	for _, tt := range []struct {
		query, accept, upgrade string
		want                   string // a transport, or "400"
	}{
		{"", "", "", transportSSE},
		{"", "application/json", "", transportPoll},
		{"?transport=sse", "application/json", "", transportSSE},
		{"?format=ndjson", "application/x-ndjson, application/json;q=0.5", "", transportNDJSON},
		{"?format=NDJSON", "", "", transportNDJSON},
		{"?transport=poll", "", "", transportPoll},
		{"?transport=poll&format=ndjson", "", "", transportPoll},
		{"", "", "websocket", transportWS},
		{"?transport=bogus", "application/json", "", "400"},
		{"?transport=poll&format=xml", "", "", "400"},
		{"?format=xml", "", "websocket", "400"},
		{"?transport=websocket", "", "websocket", transportWS},
		{"?transport=websocket", "", "", "400"}, // no handshake: not silently SSE
	} {
		r := httptest.NewRequest(http.MethodGet, "/stream/stations"+tt.query, nil)
		if tt.accept != "" {
			r.Header.Set("Accept", tt.accept)
		}
		if tt.upgrade != "" {
			r.Header.Set("Upgrade", tt.upgrade)
		}
		req, err := s.parseStreamRequest(echo.New().NewContext(r, httptest.NewRecorder()), topics)
		got := "400"
		if err == nil {
			got = req.transport
		} else if !models.IsCode(err, models.CodeInvalidRequest) {
			t.Errorf("%q Accept %q: %v", tt.query, tt.accept, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%q Accept %q Upgrade %q: %s, want %s", tt.query, tt.accept, tt.upgrade, got, tt.want)
		}
	}
}
