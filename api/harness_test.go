package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"batteryswap/api"
	"batteryswap/models"
	"batteryswap/store"
	"batteryswap/store/storetest"
	"batteryswap/stream"
	"batteryswap/web"
)

// testPassword is the password of every account the harness creates.
const testPassword = "correct horse battery"

// apiEnv is one running server on a fresh, migrated database.
type apiEnv struct {
	url     string
	handler http.Handler // the server's, to serve it again in another way
	store   *store.Store
	broker  *stream.MemoryBroker
	client  *http.Client
	seq     atomic.Int64 // makes e-mails, names and serials unique per env
}

// eachDialect runs fn once per database dialect, each on its own server
// (PostgreSQL is skipped without TEST_DATABASE_URL, or fails under
// REQUIRE_SERVICES=1).
func eachDialect(t *testing.T, fn func(t *testing.T, e *apiEnv)) {
	t.Helper()
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, newAPIEnv(t, d, nil))
		})
	}
}

// newAPIEnv starts a server on a fresh database of the dialect; tune may
// adjust the configuration. Everything is closed when the test ends.
func newAPIEnv(t *testing.T, dialect string, tune func(*api.Config)) *apiEnv {
	t.Helper()
	st := storetest.Open(t, dialect, store.Options{})
	broker := stream.NewMemoryBroker()
	t.Cleanup(func() { _ = broker.Close() })
	hub := stream.NewHub(broker, st, stream.HubOptions{})
	t.Cleanup(hub.Close)
	cfg := api.Config{
		JWTSecret: []byte("test"), BcryptCost: 4, AuthRateLimit: -1, BookingRateLimit: -1,
		Web: web.FS, OpenAPI: api.OpenAPI,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if tune != nil {
		tune(&cfg)
	}
	srv := api.New(cfg, st, hub, broker)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &apiEnv{url: ts.URL, handler: srv.Handler(), store: st, broker: broker, client: ts.Client()}
}

// response is one HTTP answer. Body is the decoded JSON object (numbers as
// json.Number), nil when the answer is not a JSON object.
type response struct {
	Status int
	Header http.Header
	Raw    []byte
	Body   map[string]any
}

// leaks are strings that must never reach a client: password hashes, SQL and
// driver words, stack traces and Go source paths.
var leaks = []string{
	"$2a$", "$2b$", "password_hash", "passwordhash",
	"select ", "insert into", "update ", "delete from", "sqlstate", "sqlite", "pq:", "gorm", "pgx", "constraint",
	"goroutine ", "panic", ".go:", "/work/", "runtime/", "batteryswap/store", "internal error:",
}

// jwtPattern matches access tokens, whose base64 may spell anything.
var jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*`)

// do sends one request. body is nil (no body), a string or []byte (sent
// as is) or a value marshalled to JSON; a JSON content type is set whenever
// there is a body. headers are key, value pairs and override the defaults (a
// value of "" removes the header). token, when set, is sent as a Bearer token.
// Every JSON answer is checked for leaks.
func (e *apiEnv) do(t *testing.T, method, path, token string, body any, headers ...string) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	case io.Reader:
		rd = b
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("marshal body: %v", err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.url+path, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if len(headers)%2 != 0 {
		t.Fatalf("headers must be key, value pairs: %q", headers)
	}
	for i := 0; i < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	r := response{Status: res.StatusCode, Header: res.Header, Raw: raw}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		lower := strings.ToLower(jwtPattern.ReplaceAllString(string(raw), "TOKEN"))
		for _, l := range leaks {
			if strings.Contains(lower, l) {
				t.Errorf("%s %s: answer contains %q: %s", method, path, l, raw)
			}
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err == nil {
			r.Body = m
		}
	}
	return r
}

// want asserts the status of an answer.
func (r response) want(t *testing.T, status int) response {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body: %s", r.Status, status, r.Raw)
	}
	return r
}

// wantError asserts a contract error: the status, error.code and a
// non-empty error.message. It returns the error object.
func wantError(t *testing.T, r response, status int, code string) map[string]any {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d (%s); body: %s", r.Status, status, code, r.Raw)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error Content-Type %q, want JSON; body: %s", ct, r.Raw)
	}
	ev, ok := r.Body["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object in %s", r.Raw)
	}
	if got := ev["code"]; got != code {
		t.Fatalf("error.code %v, want %s; body: %s", got, code, r.Raw)
	}
	if msg, _ := ev["message"].(string); msg == "" {
		t.Fatalf("error.message is empty: %s", r.Raw)
	}
	return ev
}

// wantFields asserts a 422 validation_failed naming exactly these fields.
func wantFields(t *testing.T, r response, fields ...string) {
	t.Helper()
	ev := wantError(t, r, http.StatusUnprocessableEntity, "validation_failed")
	got, ok := ev["fields"].(map[string]any)
	if !ok {
		t.Fatalf("validation error without fields: %s", r.Raw)
	}
	for _, f := range fields {
		if msg, _ := got[f].(string); msg == "" {
			t.Errorf("fields[%q] missing or empty in %s", f, r.Raw)
		}
	}
	if len(got) != len(fields) {
		t.Errorf("fields %v, want exactly %v", keys(got), fields)
	}
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// object returns the JSON object under key.
func object(t *testing.T, m map[string]any, key string) map[string]any {
	t.Helper()
	o, ok := m[key].(map[string]any)
	if !ok {
		t.Fatalf("%q is %T, want an object: %v", key, m[key], m)
	}
	return o
}

// list returns the JSON array of objects under key.
func list(t *testing.T, m map[string]any, key string) []map[string]any {
	t.Helper()
	raw, ok := m[key].([]any)
	if !ok {
		t.Fatalf("%q is %T, want an array: %v", key, m[key], m)
	}
	out := make([]map[string]any, len(raw))
	for i, v := range raw {
		if out[i], ok = v.(map[string]any); !ok {
			t.Fatalf("%s[%d] is %T, want an object", key, i, v)
		}
	}
	return out
}

// id returns the positive integer under key (a JSON number).
func id(t *testing.T, m map[string]any, key string) int64 {
	t.Helper()
	n, ok := m[key].(json.Number)
	if !ok {
		t.Fatalf("%q is %T (%v), want a JSON number", key, m[key], m[key])
	}
	v, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil || v <= 0 {
		t.Fatalf("%q = %s, want a positive integer", key, n)
	}
	return v
}

// integer returns the integer under key (a JSON number).
func integer(t *testing.T, m map[string]any, key string) int64 {
	t.Helper()
	n, ok := m[key].(json.Number)
	if !ok {
		t.Fatalf("%q is %T (%v), want a JSON number", key, m[key], m[key])
	}
	v, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		t.Fatalf("%q = %s, want an integer", key, n)
	}
	return v
}

// str returns the string under key.
func str(t *testing.T, m map[string]any, key string) string {
	t.Helper()
	s, ok := m[key].(string)
	if !ok {
		t.Fatalf("%q is %T (%v), want a string", key, m[key], m[key])
	}
	return s
}

// kind is the JSON type a shape field must have.
type kind int

const (
	kID         kind = iota // positive integer number
	kIDOrNull               // positive integer number or null
	kInt                    // integer number
	kNumber                 // any number
	kString                 // string
	kTime                   // RFC 3339 UTC string
	kTimeOrNull             // RFC 3339 UTC string or null
	kObject                 // object
)

// wantShape asserts that every field of spec is present with its kind.
func wantShape(t *testing.T, what string, m map[string]any, spec map[string]kind) {
	t.Helper()
	for f, k := range spec {
		v, ok := m[f]
		if !ok {
			t.Errorf("%s: field %q missing in %v", what, f, m)
			continue
		}
		if v == nil && (k == kIDOrNull || k == kTimeOrNull) {
			continue
		}
		if err := checkKind(v, k); err != nil {
			t.Errorf("%s: field %q = %v: %v", what, f, v, err)
		}
	}
}

func checkKind(v any, k kind) error {
	switch k {
	case kID, kIDOrNull, kInt:
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("is %T, want a JSON number", v)
		}
		i, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil {
			return fmt.Errorf("want an integer")
		}
		if k != kInt && i <= 0 {
			return fmt.Errorf("want a positive id")
		}
	case kNumber:
		if _, ok := v.(json.Number); !ok {
			return fmt.Errorf("is %T, want a JSON number", v)
		}
	case kString:
		if _, ok := v.(string); !ok {
			return fmt.Errorf("is %T, want a string", v)
		}
	case kTime, kTimeOrNull:
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("is %T, want an RFC 3339 string", v)
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return fmt.Errorf("not RFC 3339: %v", err)
		}
		if !strings.HasSuffix(s, "Z") {
			return fmt.Errorf("not UTC (want a Z suffix)")
		}
	case kObject:
		if _, ok := v.(map[string]any); !ok {
			return fmt.Errorf("is %T, want an object", v)
		}
	}
	return nil
}

// oneOf asserts that m[key] is one of the allowed strings.
func oneOf(t *testing.T, m map[string]any, key string, allowed ...string) {
	t.Helper()
	s := str(t, m, key)
	for _, a := range allowed {
		if s == a {
			return
		}
	}
	t.Errorf("%q = %q, want one of %q", key, s, allowed)
}

func wantUser(t *testing.T, m map[string]any) {
	t.Helper()
	wantShape(t, "user", m, map[string]kind{"id": kID, "email": kString, "name": kString, "role": kString})
	oneOf(t, m, "role", "user", "admin")
}

func wantStation(t *testing.T, m map[string]any) {
	t.Helper()
	wantShape(t, "station", m, map[string]kind{
		"id": kID, "name": kString, "address": kString, "latitude": kNumber, "longitude": kNumber, "status": kString,
		"available_batteries": kInt, "booked_batteries": kInt, "charging_batteries": kInt, "total_batteries": kInt,
		"presence": kString, "last_seen_at": kTime, "updated_at": kTime,
	})
	oneOf(t, m, "status", "open", "closed", "maintenance")
	oneOf(t, m, "presence", "online", "offline")
}

func wantBattery(t *testing.T, m map[string]any) {
	t.Helper()
	wantShape(t, "battery", m, map[string]kind{
		"id": kID, "station_id": kIDOrNull, "serial_number": kString, "charge_percent": kInt, "health_percent": kInt, "status": kString,
	})
	oneOf(t, m, "status", "available", "charging", "booked", "collected", "maintenance")
}

func wantBooking(t *testing.T, m map[string]any) {
	t.Helper()
	wantShape(t, "booking", m, map[string]kind{
		"id": kID, "user_id": kID, "station_id": kID, "battery_id": kID, "status": kString, "expires_at": kTime, "created_at": kTime,
	})
	oneOf(t, m, "status", "confirmed", "ready", "collected", "cancelled", "expired")
}

func wantNotification(t *testing.T, m map[string]any) {
	t.Helper()
	wantShape(t, "notification", m, map[string]kind{
		"id": kID, "type": kString, "title": kString, "message": kString, "level": kString, "data": kObject,
		"read_at": kTimeOrNull, "created_at": kTime,
	})
	oneOf(t, m, "level", "info", "warning", "error")
}

// next returns a number unique within the env.
func (e *apiEnv) next() int64 { return e.seq.Add(1) }

// email returns an unused e-mail address.
func (e *apiEnv) email() string { return fmt.Sprintf("rider%d@example.com", e.next()) }

// serial returns an unused battery serial number.
func (e *apiEnv) serial() string { return fmt.Sprintf("SN-%06d", e.next()) }

// register creates an account through the API and returns its token and id.
func (e *apiEnv) register(t *testing.T, email string) (token string, userID int64) {
	t.Helper()
	r := e.do(t, http.MethodPost, "/api/v1/auth/register", "", map[string]any{"email": email, "password": testPassword, "name": "Rider"}).
		want(t, http.StatusCreated)
	return str(t, r.Body, "token"), id(t, object(t, r.Body, "user"), "id")
}

// login signs in through the API and returns the whole answer.
func (e *apiEnv) login(t *testing.T, email, password string) response {
	t.Helper()
	return e.do(t, http.MethodPost, "/api/v1/auth/login", "", map[string]any{"email": email, "password": password})
}

// newUser registers a fresh rider.
func (e *apiEnv) newUser(t *testing.T) (token string, userID int64) {
	t.Helper()
	return e.register(t, e.email())
}

// newAdmin creates an operator in the store and signs in through the API.
func (e *apiEnv) newAdmin(t *testing.T) (token string, userID int64) {
	t.Helper()
	hash, err := api.HashPassword(testPassword, 4)
	if err != nil {
		t.Fatalf("hash: %v", err)
	}
	email := fmt.Sprintf("admin%d@example.com", e.next())
	u, err := e.store.CreateUser(context.Background(), email, "Operator", hash, models.RoleAdmin)
	if err != nil {
		t.Fatalf("create admin: %v", err)
	}
	r := e.login(t, email, testPassword).want(t, http.StatusOK)
	return str(t, r.Body, "token"), u.ID
}

// newStation creates an open station and returns its id.
func (e *apiEnv) newStation(t *testing.T, admin string) int64 {
	t.Helper()
	r := e.do(t, http.MethodPost, "/api/v1/stations", admin, map[string]any{
		"name": fmt.Sprintf("Station %d", e.next()), "address": "1 Main St", "latitude": 52.5, "longitude": 13.4,
	}).want(t, http.StatusCreated)
	return id(t, r.Body, "id")
}

// addBattery adds a battery at charge percent and returns its id and serial.
func (e *apiEnv) addBattery(t *testing.T, admin string, stationID int64, charge int) (int64, string) {
	t.Helper()
	serial := e.serial()
	r := e.do(t, http.MethodPost, fmt.Sprintf("/api/v1/stations/%d/batteries", stationID), admin,
		map[string]any{"serial_number": serial, "charge_percent": charge}).want(t, http.StatusCreated)
	return id(t, r.Body, "id"), serial
}

// station reads a station through the API.
func (e *apiEnv) station(t *testing.T, stationID int64) map[string]any {
	t.Helper()
	return e.do(t, http.MethodGet, fmt.Sprintf("/api/v1/stations/%d", stationID), "", nil).want(t, http.StatusOK).Body
}

// counts is a station's battery counts.
type counts struct{ available, booked, charging, total int64 }

func (e *apiEnv) counts(t *testing.T, stationID int64) counts {
	t.Helper()
	s := e.station(t, stationID)
	return counts{integer(t, s, "available_batteries"), integer(t, s, "booked_batteries"),
		integer(t, s, "charging_batteries"), integer(t, s, "total_batteries")}
}

// battery finds a battery in its station's list.
func (e *apiEnv) battery(t *testing.T, stationID, batteryID int64) map[string]any {
	t.Helper()
	r := e.do(t, http.MethodGet, fmt.Sprintf("/api/v1/stations/%d/batteries", stationID), "", nil).want(t, http.StatusOK)
	for _, b := range list(t, r.Body, "batteries") {
		if id(t, b, "id") == batteryID {
			return b
		}
	}
	t.Fatalf("battery %d not at station %d: %s", batteryID, stationID, r.Raw)
	return nil
}

// book creates a booking and returns it.
func (e *apiEnv) book(t *testing.T, token string, stationID int64) map[string]any {
	t.Helper()
	return e.do(t, http.MethodPost, "/api/v1/bookings", token, map[string]any{"station_id": stationID}).
		want(t, http.StatusCreated).Body
}

// readyStation is an open station with one charged battery, and its operator.
func (e *apiEnv) readyStation(t *testing.T) (admin string, stationID, batteryID int64) {
	t.Helper()
	admin, _ = e.newAdmin(t)
	stationID = e.newStation(t, admin)
	batteryID, _ = e.addBattery(t, admin, stationID, 95)
	return admin, stationID, batteryID
}

// head sends method path with one header set and returns the answer's
// status and header, closing the body unread: it suits streams, whose body
// never ends, as well as REST routes.
func (e *apiEnv) head(t *testing.T, method, path, header, value string) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(header, value)
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode, res.Header
}
