package api_test

import (
	"fmt"
	"net/http"
	"testing"
)

// Names, addresses, titles, serials and messages refuse control characters
// (ANSI escapes, bells, C1) and bidi controls with 422 naming the field;
// messages keep their line breaks and tabs. What was refused is not stored.
func TestTextRefusesControlCharacters(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, stationID, _ := e.readyStation(t)
		_, riderID := e.newUser(t)
		station := func(name, address string) any {
			return map[string]any{"name": name, "address": address, "latitude": 1, "longitude": 2}
		}
		note := func(title, message string) any {
			return map[string]any{"user_id": riderID, "title": title, "message": message, "level": "info"}
		}
		stations := "/api/v1/stations"
		one := fmt.Sprintf("/api/v1/stations/%d", stationID)
		for _, tt := range []struct {
			name         string
			method, path string
			token        string
			body         any
			field        string // "": accepted
		}{
			{"station name with an ANSI escape", http.MethodPost, stations, admin, station("\x1b[2J\x1b[HFree batteries", "1 Main St"), "name"},
			{"station name with a newline", http.MethodPost, stations, admin, station("Harbour\nClosed", "1 Main St"), "name"},
			{"station address with a right-to-left override", http.MethodPost, stations, admin, station("Harbour", "1 Main St \u202etxt.exe"), "address"},
			{"station renamed with a C1 control", http.MethodPatch, one, admin, map[string]any{"name": "Harbour\u009b"}, "name"},
			{"station message with a bell", http.MethodPatch, one, admin, map[string]any{"message": "closed\a"}, "message"},
			{"station message with a bidi isolate", http.MethodPatch, one, admin, map[string]any{"message": "closed \u2067until\u2069 noon"}, "message"},
			{"station message with line breaks and a tab", http.MethodPatch, one, admin, map[string]any{"message": "Closed today.\r\nOpen\ttomorrow."}, ""},
			{"serial with a tab", http.MethodPost, one + "/batteries", admin, map[string]any{"serial_number": "SN\t1", "charge_percent": 50}, "serial_number"},
			{"notification title with a newline", http.MethodPost, "/api/v1/notifications", admin, note("Hello\nWorld", "Hi"), "title"},
			{"notification message with an escape", http.MethodPost, "/api/v1/notifications", admin, note("Hello", "\x1b]8;;https://evil.example\x07click\x1b]8;;\x07"), "message"},
			{"notification message with a lone CR", http.MethodPost, "/api/v1/notifications", admin, note("Hello", "safe\revil"), "message"},
			{"notification message on two lines", http.MethodPost, "/api/v1/notifications", admin, note("Hello", "line one\nline two"), ""},
			{"rider name with a right-to-left mark", http.MethodPost, "/api/v1/auth/register", "",
				map[string]any{"email": e.email(), "password": testPassword, "name": "Ria\u200f"}, "name"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				r := e.do(t, tt.method, tt.path, tt.token, tt.body)
				if tt.field == "" {
					if r.Status >= 300 {
						t.Fatalf("refused: %d %s", r.Status, r.Raw)
					}
					return
				}
				wantFields(t, r, tt.field)
			})
		}
		r := e.do(t, http.MethodGet, stations, "", nil).want(t, http.StatusOK)
		if n := len(list(t, r.Body, "stations")); n != 1 {
			t.Fatalf("%d stations, want the first one only", n)
		}
		if got := str(t, e.station(t, stationID), "message"); got != "Closed today.\r\nOpen\ttomorrow." {
			t.Fatalf("station message %q, want the accepted one", got)
		}
	})
}
