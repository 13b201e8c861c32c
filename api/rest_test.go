package api_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"batteryswap/api"
	"batteryswap/store/storetest"
)

// TestRequestBodies covers what every write endpoint does with its body:
// JSON only, at most 1 MiB, strict decoding.
func TestRequestBodies(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		register := func(email string) map[string]any {
			return map[string]any{"email": email, "password": testPassword, "name": "R"}
		}
		// padded is a valid registration padded with spaces to size bytes.
		padded := func(size int) []byte {
			b := []byte(fmt.Sprintf(`{"email":%q,"password":%q,"name":"R"}`, e.email(), testPassword))
			return append(b, bytes.Repeat([]byte(" "), size-len(b))...)
		}

		tests := []struct {
			name    string
			when    any
			headers []string
			status  int
			code    string // "" for success
		}{
			{name: "JSON", when: register(e.email()), status: http.StatusCreated},
			{name: "JSON with charset", when: register(e.email()), headers: []string{"Content-Type", "application/json; charset=utf-8"}, status: http.StatusCreated},
			{name: "text/plain", when: register(e.email()), headers: []string{"Content-Type", "text/plain"}, status: http.StatusUnsupportedMediaType, code: "unsupported_media_type"},
			{name: "form", when: "email=a%40b.c&password=12345678&name=R", headers: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: http.StatusUnsupportedMediaType, code: "unsupported_media_type"},
			{name: "multipart", when: "--x--", headers: []string{"Content-Type", "multipart/form-data; boundary=x"}, status: http.StatusUnsupportedMediaType, code: "unsupported_media_type"},
			{name: "no content type", when: register(e.email()), headers: []string{"Content-Type", ""}, status: http.StatusUnsupportedMediaType, code: "unsupported_media_type"},
			{name: "exactly 1 MiB", when: padded(1 << 20), status: http.StatusCreated},
			{name: "1 MiB and a byte", when: padded(1<<20 + 1), status: http.StatusRequestEntityTooLarge, code: "payload_too_large"},
			{name: "2 MiB", when: padded(2 << 20), status: http.StatusRequestEntityTooLarge, code: "payload_too_large"},
			{name: "2 MiB chunked", when: io.MultiReader(bytes.NewReader(padded(2 << 20))), status: http.StatusRequestEntityTooLarge, code: "payload_too_large"},
			{name: "malformed", when: `{"email":`, status: http.StatusBadRequest, code: "invalid_request"},
			{name: "trailing garbage", when: `{"email":"a@b.c","password":"12345678","name":"R"} x`, status: http.StatusBadRequest, code: "invalid_request"},
			{name: "null", when: `null`, status: http.StatusUnprocessableEntity, code: "validation_failed"},
			{name: "wrong type", when: `{"email":["a@b.c"],"password":"12345678","name":"R"}`, status: http.StatusBadRequest, code: "invalid_request"},
			{name: "unknown field", when: `{"email":"a@b.c","password":"12345678","name":"R","admin":true}`, status: http.StatusBadRequest, code: "invalid_request"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := e.do(t, http.MethodPost, "/api/v1/auth/register", "", tt.when, tt.headers...)
				if tt.code == "" {
					r.want(t, tt.status)
					return
				}
				wantError(t, r, tt.status, tt.code)
			})
		}

		t.Run("a cross-site form cannot book with the cookie", func(t *testing.T) {
			_, sid, _ := e.readyStation(t)
			tok, _ := e.newUser(t)
			before := e.counts(t, sid)
			for _, ct := range []string{"application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"} {
				r := e.do(t, http.MethodPost, "/api/v1/bookings", "", fmt.Sprintf(`{"station_id":%d}`, sid),
					"Content-Type", ct, "Cookie", "bs_token="+tok)
				wantError(t, r, http.StatusUnsupportedMediaType, "unsupported_media_type")
			}
			// Even without a body a form-encoded write is refused.
			wantError(t, e.do(t, http.MethodPost, "/api/v1/auth/logout", "", nil, "Content-Type", "text/plain", "Cookie", "bs_token="+tok),
				http.StatusUnsupportedMediaType, "unsupported_media_type")
			if after := e.counts(t, sid); after != before {
				t.Fatalf("counts moved %+v -> %+v", before, after)
			}
		})

		t.Run("every JSON write endpoint refuses a non-JSON body", func(t *testing.T) {
			admin, sid, bat := e.readyStation(t)
			for _, w := range []struct{ method, path string }{
				{http.MethodPost, "/api/v1/auth/login"},
				{http.MethodPost, "/api/v1/stations"},
				{http.MethodPatch, fmt.Sprintf("/api/v1/stations/%d", sid)},
				{http.MethodPost, fmt.Sprintf("/api/v1/stations/%d/batteries", sid)},
				{http.MethodPatch, fmt.Sprintf("/api/v1/batteries/%d", bat)},
				{http.MethodPost, "/api/v1/bookings"},
				{http.MethodPost, "/api/v1/notifications"},
			} {
				r := e.do(t, w.method, w.path, admin, "name=x", "Content-Type", "application/x-www-form-urlencoded")
				wantError(t, r, http.StatusUnsupportedMediaType, "unsupported_media_type")
			}
		})
	})
}

func TestRouting(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		tests := []struct {
			name   string
			method string
			path   string
			status int
			code   string
		}{
			{"unknown API route", http.MethodGet, "/api/v1/nothing", http.StatusNotFound, "not_found"},
			{"unknown API version", http.MethodGet, "/api/v2/stations", http.StatusNotFound, "not_found"},
			{"unknown top-level route", http.MethodGet, "/nothing/here", http.StatusNotFound, "not_found"},
			{"unknown route, POST", http.MethodPost, "/api/v1/nothing", http.StatusNotFound, "not_found"},
			{"unknown static file", http.MethodGet, "/static/nothing.js", http.StatusNotFound, "not_found"},
			{"wrong method on a collection", http.MethodDelete, "/api/v1/stations", http.StatusMethodNotAllowed, "method_not_allowed"},
			{"wrong method on an item", http.MethodPut, "/api/v1/stations/1", http.StatusMethodNotAllowed, "method_not_allowed"},
			{"wrong method on an action", http.MethodGet, "/api/v1/bookings/1/cancel", http.StatusMethodNotAllowed, "method_not_allowed"},
			{"wrong method on me", http.MethodPost, "/api/v1/me", http.StatusMethodNotAllowed, "method_not_allowed"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				wantError(t, e.do(t, tt.method, tt.path, "", nil), tt.status, tt.code)
			})
		}
		t.Run("trailing slash", func(t *testing.T) {
			r := e.do(t, http.MethodGet, "/api/v1/stations/", "", nil).want(t, http.StatusOK)
			list(t, r.Body, "stations")
		})
		t.Run("405 names the allowed methods", func(t *testing.T) {
			r := e.do(t, http.MethodDelete, "/api/v1/stations", "", nil)
			if allow := r.Header.Get("Allow"); !strings.Contains(allow, http.MethodGet) || !strings.Contains(allow, http.MethodPost) {
				t.Fatalf("Allow %q, want GET and POST", allow)
			}
		})
	})
}

func TestOps(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		t.Run("healthz", func(t *testing.T) {
			r := e.do(t, http.MethodGet, "/healthz", "", nil).want(t, http.StatusOK)
			if r.Body["status"] != "ok" {
				t.Fatalf("healthz %s", r.Raw)
			}
		})
		t.Run("readyz", func(t *testing.T) {
			r := e.do(t, http.MethodGet, "/readyz", "", nil).want(t, http.StatusOK)
			checks := object(t, r.Body, "checks")
			if r.Body["status"] != "ok" || checks["database"] != "ok" || checks["broker"] != "ok" {
				t.Fatalf("readyz %s", r.Raw)
			}
		})
		t.Run("openapi", func(t *testing.T) {
			r := e.do(t, http.MethodGet, "/openapi.yaml", "", nil).want(t, http.StatusOK)
			if !bytes.Equal(r.Raw, api.OpenAPI) || !strings.HasPrefix(strings.TrimSpace(string(r.Raw)), "openapi: 3") {
				t.Fatalf("openapi.yaml is not the embedded OpenAPI 3 document: %.80s", r.Raw)
			}
			if ct := r.Header.Get("Content-Type"); !strings.Contains(ct, "yaml") {
				t.Errorf("Content-Type %q, want YAML", ct)
			}
			for _, p := range []string{"/auth/register", "/stations/{id}/batteries", "/bookings/{id}/collect", "/notifications/{id}/read"} {
				if !bytes.Contains(r.Raw, []byte(p)) {
					t.Errorf("openapi.yaml does not describe %s", p)
				}
			}
		})
		t.Run("dashboard", func(t *testing.T) {
			r := e.do(t, http.MethodGet, "/", "", nil).want(t, http.StatusOK)
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
				t.Fatalf("Content-Type %q, want HTML", ct)
			}
		})
		t.Run("metrics", func(t *testing.T) {
			_, sid, _ := e.readyStation(t)
			tok, _ := e.newUser(t)
			e.book(t, tok, sid)
			e.station(t, sid)
			other, _ := e.newUser(t)
			wantError(t, e.do(t, http.MethodPost, "/api/v1/bookings", other, map[string]any{"station_id": sid}), http.StatusConflict, "no_battery_available")

			r := e.do(t, http.MethodGet, "/metrics", "", nil).want(t, http.StatusOK)
			text := string(r.Raw)
			for _, want := range []string{
				`batteryswap_booking_outcomes_total{code="ok"} 1`,
				`batteryswap_booking_outcomes_total{code="no_battery_available"} 1`,
			} {
				if !strings.Contains(text, want) {
					t.Errorf("metrics lack %s", want)
				}
			}
			re := regexp.MustCompile(`batteryswap_http_request_duration_seconds_count\{method="POST",route="/api/v1/bookings",status="201"\} (\d+)`)
			if m := re.FindStringSubmatch(text); m == nil || m[1] != "1" {
				t.Errorf("metrics lack one observed POST /api/v1/bookings 201: %v", m)
			}
			if !strings.Contains(text, `route="/api/v1/stations/:id"`) {
				t.Errorf("request durations are not labelled by route pattern")
			}
			if strings.Contains(text, fmt.Sprintf(`route="/api/v1/stations/%d"`, sid)) {
				t.Errorf("request durations are labelled by raw path (unbounded cardinality)")
			}
		})
	})
}

func TestReadyzFailures(t *testing.T) {
	tests := []struct {
		name string
		when func(e *apiEnv)
		want string
	}{
		{"database closed", func(e *apiEnv) { _ = e.store.Close() }, "database"},
		{"broker closed", func(e *apiEnv) { _ = e.broker.Close() }, "broker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newAPIEnv(t, "sqlite", nil)
			tt.when(e)
			r := e.do(t, http.MethodGet, "/readyz", "", nil).want(t, http.StatusServiceUnavailable)
			failed, _ := r.Body["failed"].([]any)
			if r.Body["status"] != "unavailable" || len(failed) != 1 || failed[0] != tt.want {
				t.Fatalf("readyz %s, want %s failed", r.Raw, tt.want)
			}
			e.do(t, http.MethodGet, "/healthz", "", nil).want(t, http.StatusOK)
		})
	}
}

func TestRateLimits(t *testing.T) {
	tests := []struct {
		name  string
		given func(*api.Config)
		when  func(t *testing.T, e *apiEnv) func() response // returns one attempt
	}{
		{
			name:  "logins",
			given: func(c *api.Config) { c.AuthRateLimit = 1 },
			when: func(t *testing.T, e *apiEnv) func() response {
				email := e.email()
				e.register(t, email) // takes one token of the shared auth bucket
				return func() response { return e.login(t, email, testPassword) }
			},
		},
		{
			name:  "failed logins",
			given: func(c *api.Config) { c.AuthRateLimit = 1 },
			when: func(t *testing.T, e *apiEnv) func() response {
				return func() response { return e.login(t, "nobody@example.com", "wrong password") }
			},
		},
		{
			name:  "booking writes",
			given: func(c *api.Config) { c.BookingRateLimit = 1 },
			when: func(t *testing.T, e *apiEnv) func() response {
				tok, _ := e.newUser(t)
				return func() response {
					return e.do(t, http.MethodPost, "/api/v1/bookings", tok, map[string]any{"station_id": 987654})
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newAPIEnv(t, "sqlite", tt.given)
			attempt := tt.when(t, e)
			// The bucket starts with a burst of 4 and refills at one per
			// second, so 4 quick attempts pass and one of the next few fails.
			var limited *response
			for i := range 20 {
				r := attempt()
				if r.Status == http.StatusTooManyRequests {
					limited = &r
					if i < 3 {
						t.Fatalf("limited after %d attempts, want a burst of 4", i)
					}
					break
				}
			}
			if limited == nil {
				t.Fatalf("20 quick attempts were never limited")
			}
			wantError(t, *limited, http.StatusTooManyRequests, "rate_limited")
			ra, err := strconv.Atoi(limited.Header.Get("Retry-After"))
			if err != nil || ra < 1 {
				t.Fatalf("Retry-After %q, want whole seconds >= 1", limited.Header.Get("Retry-After"))
			}
		})
	}

	t.Run("other clients are not limited", func(t *testing.T) {
		e := newAPIEnv(t, "sqlite", func(c *api.Config) { c.BookingRateLimit = 1 })
		tok, _ := e.newUser(t)
		for {
			if r := e.do(t, http.MethodGet, "/api/v1/me", tok, nil); r.Status != http.StatusOK {
				t.Fatalf("reads are limited: %d", r.Status)
			}
			if e.do(t, http.MethodPost, "/api/v1/bookings", tok, map[string]any{"station_id": 987654}).Status == http.StatusTooManyRequests {
				break
			}
		}
		other, _ := e.newUser(t)
		wantError(t, e.do(t, http.MethodPost, "/api/v1/bookings", other, map[string]any{"station_id": 987654}), http.StatusNotFound, "not_found")
	})
}

// TestPrivacy checks that typical failures explain themselves without
// internals, and that no answer carries a password hash. (do checks every
// JSON answer of every test for hashes, SQL, stack traces and Go paths.)
func TestPrivacy(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, sid, _ := e.readyStation(t)
		email := e.email()
		tok, uid := e.register(t, email)
		_, serial := e.addBattery(t, admin, sid, 50)

		tests := []struct {
			name   string
			when   func(t *testing.T) response
			status int
		}{
			{"register", func(t *testing.T) response {
				return e.do(t, http.MethodPost, "/api/v1/auth/register", "", map[string]any{"email": e.email(), "password": testPassword, "name": "R"})
			}, http.StatusCreated},
			{"login", func(t *testing.T) response { return e.login(t, email, testPassword) }, http.StatusOK},
			{"me", func(t *testing.T) response { return e.do(t, http.MethodGet, "/api/v1/me", tok, nil) }, http.StatusOK},
			{"email taken", func(t *testing.T) response {
				return e.do(t, http.MethodPost, "/api/v1/auth/register", "", map[string]any{"email": email, "password": testPassword, "name": "R"})
			}, http.StatusConflict},
			{"wrong password", func(t *testing.T) response { return e.login(t, email, "wrong password") }, http.StatusUnauthorized},
			{"serial taken", func(t *testing.T) response {
				return e.do(t, http.MethodPost, fmt.Sprintf("/api/v1/stations/%d/batteries", sid), admin, map[string]any{"serial_number": serial, "charge_percent": 5})
			}, http.StatusConflict},
			{"notification to nobody", func(t *testing.T) response {
				return e.do(t, http.MethodPost, "/api/v1/notifications", admin, map[string]any{"user_id": uid + 1000, "title": "T", "message": "M", "level": "info"})
			}, http.StatusNotFound},
			{"huge id", func(t *testing.T) response {
				return e.do(t, http.MethodGet, "/api/v1/stations/9223372036854775807", "", nil)
			}, http.StatusNotFound},
			{"huge station_id", func(t *testing.T) response {
				return e.do(t, http.MethodPost, "/api/v1/bookings", tok, `{"station_id": 9223372036854775807}`)
			}, http.StatusNotFound},
			{"NUL in a name", func(t *testing.T) response {
				return e.do(t, http.MethodPost, "/api/v1/stations", admin, `{"name":"bad\u0000name","latitude":1,"longitude":2}`)
			}, http.StatusBadRequest},
			{"NUL in a registration", func(t *testing.T) response {
				return e.do(t, http.MethodPost, "/api/v1/auth/register", "", fmt.Sprintf(`{"email":%q,"password":"12345678","name":"R\u0000"}`, e.email()))
			}, http.StatusBadRequest},
			{"NUL in a login", func(t *testing.T) response {
				return e.do(t, http.MethodPost, "/api/v1/auth/login", "", `{"email":"a\u0000@example.com","password":"12345678"}`)
			}, http.StatusBadRequest},
			{"an escaped backslash before u0000 is text", func(t *testing.T) response {
				return e.do(t, http.MethodPost, "/api/v1/stations", admin, `{"name":"C:\\u0000","address":"a","latitude":1,"longitude":2}`)
			}, http.StatusCreated},
			{"invalid UTF-8 in a name", func(t *testing.T) response {
				return e.do(t, http.MethodPost, "/api/v1/stations", admin, []byte("{\"name\":\"bad\xff\xfe\",\"address\":\"a\",\"latitude\":1,\"longitude\":2}"))
			}, http.StatusCreated},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := tt.when(t)
				if r.Status != tt.status {
					t.Fatalf("status %d, want %d: %s", r.Status, tt.status, r.Raw)
				}
				if bytes.Contains(r.Raw, []byte(testPassword)) {
					t.Errorf("the answer echoes the password: %s", r.Raw)
				}
				if r.Status >= 400 {
					ev := object(t, r.Body, "error")
					if len(r.Body) != 1 {
						t.Errorf("error answer has more than the error object: %s", r.Raw)
					}
					if msg := str(t, ev, "message"); len(msg) > 200 {
						t.Errorf("error message is suspiciously long: %q", msg)
					}
				}
			})
		}
	})
}

// ALLOWED_ORIGINS lets those origins make credentialed CORS requests, to
// the REST API and to a stream alike; a hijacked stream writes its own
// response head, which must keep the headers the middleware set. Another
// origin gets no CORS headers.
func TestCORS(t *testing.T) {
	const allowed = "https://app.example"
	e := newAPIEnv(t, "sqlite", func(c *api.Config) { c.AllowedOrigins = []string{allowed} })
	for _, path := range []string{"/api/v1/stations", "/stream/stations", "/stream/stations?format=ndjson"} {
		for _, origin := range []string{allowed, "https://elsewhere.example"} {
			status, header := e.head(t, http.MethodGet, path, "Origin", origin)
			acao, creds := header.Get("Access-Control-Allow-Origin"), header.Get("Access-Control-Allow-Credentials")
			if status != http.StatusOK {
				t.Fatalf("GET %s from %s: %d", path, origin, status)
			}
			if origin == allowed && (acao != allowed || creds != "true") {
				t.Errorf("GET %s from %s: Access-Control-Allow-Origin %q, -Credentials %q", path, origin, acao, creds)
			}
			if origin != allowed && acao != "" {
				t.Errorf("GET %s from %s: Access-Control-Allow-Origin %q, want none", path, origin, acao)
			}
		}
	}
}

// TestCrossOriginWrites: a body-less POST needs no JSON content type, so a
// page of another origin that the browser counts as the same site (another
// port, a sibling subdomain) could send one with the rider's cookie. Such a
// write is refused, and nothing changes; the server's own pages, trusted
// origins and programs (no browser headers) pass.
func TestCrossOriginWrites(t *testing.T) {
	const trusted = "https://app.example"
	e := newAPIEnv(t, "sqlite", func(c *api.Config) { c.AllowedOrigins = []string{trusted} })
	_, stationID, _ := e.readyStation(t)
	token, _ := e.newUser(t)
	bookingID := id(t, e.book(t, token, stationID), "id")
	cancel := fmt.Sprintf("/api/v1/bookings/%d/cancel", bookingID)
	cookie := "bs_token=" + token

	for _, h := range [][]string{
		{"Sec-Fetch-Site", "same-site", "Origin", "http://127.0.0.1:9999"},
		{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"},
		{"Origin", "https://evil.example"}, // an older browser: no Sec-Fetch-Site
	} {
		r := e.do(t, http.MethodPost, cancel, "", nil, append([]string{"Cookie", cookie}, h...)...)
		wantError(t, r, http.StatusForbidden, "forbidden")
		if got := str(t, e.do(t, http.MethodGet, fmt.Sprintf("/api/v1/bookings/%d", bookingID), token, nil).want(t, http.StatusOK).Body, "status"); got == "cancelled" {
			t.Fatalf("a cross-origin cancel (%q) went through", h)
		}
	}
	e.do(t, http.MethodPost, cancel, token, nil).want(t, http.StatusOK) // the rider's own, by Bearer
	// Reading is not writing: a cross-site GET is CORS's business.
	e.do(t, http.MethodGet, "/api/v1/stations", "", nil, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example").want(t, http.StatusOK)

	for _, h := range [][]string{
		{"Sec-Fetch-Site", "same-origin", "Origin", e.url},
		{"Sec-Fetch-Site", "cross-site", "Origin", trusted},
		{}, // curl, bsload, another service
	} {
		token, _ := e.newUser(t)
		b := e.book(t, token, stationID)
		r := e.do(t, http.MethodPost, fmt.Sprintf("/api/v1/bookings/%d/cancel", id(t, b, "id")), "", nil,
			append([]string{"Cookie", "bs_token=" + token}, h...)...).want(t, http.StatusOK)
		if got := str(t, r.Body, "status"); got != "cancelled" {
			t.Fatalf("cancel with %q: status %q", h, got)
		}
	}
}

// TestMetricsStartAtZero: a fresh instance already has the booking
// outcomes an alert watches, at 0; "no data" is not 0 to an alert rule.
func TestMetricsStartAtZero(t *testing.T) {
	e := newAPIEnv(t, "sqlite", nil)
	text := string(e.do(t, http.MethodGet, "/metrics", "", nil).want(t, http.StatusOK).Raw)
	for _, want := range []string{
		`batteryswap_booking_outcomes_total{code="ok"} 0`,
		`batteryswap_booking_outcomes_total{code="no_battery_available"} 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("a fresh /metrics lacks %s", want)
		}
	}
}

// rawHead sends HEAD path over a connection of its own and returns what the
// server sent: Go's client never reads a body after HEAD, so only the wire
// shows one.
func rawHead(t *testing.T, base, path string) (int, http.Header, string) {
	t.Helper()
	host := strings.TrimPrefix(base, "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "HEAD %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host)
	raw, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	head, body, ok := strings.Cut(string(raw), "\r\n\r\n")
	if !ok {
		t.Fatalf("HEAD %s: no end of header in %q", path, raw)
	}
	res, err := http.ReadResponse(bufio.NewReader(strings.NewReader(head+"\r\n\r\n")), nil)
	if err != nil {
		t.Fatalf("HEAD %s: %v", path, err)
	}
	return res.StatusCode, res.Header, body
}

// TestHeadIsGetWithoutBody: probes that send HEAD get GET's status and
// header, without a body; a stream, whose body never ends, stays 405.
func TestHeadIsGetWithoutBody(t *testing.T) {
	e := newAPIEnv(t, "sqlite", nil)
	for _, path := range []string{"/healthz", "/readyz", "/api/v1/stations", "/openapi.yaml", "/", "/api/v1/stations/999"} {
		get := e.do(t, http.MethodGet, path, "", nil)
		status, header, body := rawHead(t, e.url, path)
		if status != get.Status {
			t.Errorf("HEAD %s: %d, GET's is %d", path, status, get.Status)
		}
		if body != "" {
			t.Errorf("HEAD %s sent a body: %q", path, body)
		}
		if got, want := header.Get("Content-Type"), get.Header.Get("Content-Type"); got != want {
			t.Errorf("HEAD %s: Content-Type %q, GET's is %q", path, got, want)
		}
	}
	for _, path := range []string{"/stream/stations", "/ws/stations"} {
		r := e.do(t, http.MethodHead, path, "", nil).want(t, http.StatusMethodNotAllowed)
		if strings.Contains(r.Header.Get("Allow"), "HEAD") {
			t.Errorf("HEAD %s refused, yet Allow: %s", path, r.Header.Get("Allow"))
		}
	}
	// Where GET is allowed, so is HEAD, and Allow says so.
	for _, method := range []string{http.MethodPut, http.MethodOptions} {
		r := e.do(t, method, "/healthz", "", nil)
		if allow := r.Header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "HEAD") {
			t.Errorf("%s /healthz: %d, Allow %q; want GET and HEAD", method, r.Status, allow)
		}
	}
}

// TestSecurityHeaders: the dashboard may not be framed or load anything
// from elsewhere, and no answer sends a Referer onwards.
func TestSecurityHeaders(t *testing.T) {
	e := newAPIEnv(t, "sqlite", nil)
	for _, path := range []string{"/", "/static/app.js", "/api/v1/stations", "/api/v1/stations/999"} {
		r := e.do(t, http.MethodGet, path, "", nil)
		for name, want := range map[string]string{
			"X-Content-Type-Options": "nosniff",
			"Referrer-Policy":        "no-referrer",
			"X-Frame-Options":        "DENY",
		} {
			if got := r.Header.Get(name); got != want {
				t.Errorf("GET %s: %s %q, want %q", path, name, got, want)
			}
		}
		if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
}

// TestDatabaseOutageIs503: with the database cut off (no new connections,
// every open one ended), a request is answered 503 service_unavailable with
// Retry-After, and nothing of the driver's error reaches the client.
func TestDatabaseOutageIs503(t *testing.T) {
	e := newAPIEnv(t, "postgres", nil)
	admin, _ := e.newAdmin(t)
	stationID := e.newStation(t, admin)
	var name string
	if err := e.store.DB().Raw("SELECT current_database()").Scan(&name).Error; err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, storetest.BaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "ALTER DATABASE "+name+" ALLOW_CONNECTIONS true")
		conn.Close(context.Background())
	})
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+name+" ALLOW_CONNECTIONS false"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name); err != nil {
		t.Fatal(err)
	}
	r := e.do(t, http.MethodGet, fmt.Sprintf("/api/v1/stations/%d", stationID), "", nil)
	wantError(t, r, http.StatusServiceUnavailable, "service_unavailable")
	if r.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}
