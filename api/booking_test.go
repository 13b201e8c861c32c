package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestBookingCreate(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, _ := e.newAdmin(t)

		type fixture struct {
			token   string
			userID  int64
			station int64
			battery int64 // the battery the booking should take
		}
		tests := []struct {
			name  string
			given func(t *testing.T) fixture
			when  func(f fixture) any // the body
			want  func(t *testing.T, f fixture, r response)
		}{
			{
				name: "charged battery: ready",
				given: func(t *testing.T) fixture {
					tok, uid := e.newUser(t)
					sid := e.newStation(t, admin)
					e.addBattery(t, admin, sid, 85)
					best, _ := e.addBattery(t, admin, sid, 97)
					e.addBattery(t, admin, sid, 30)
					return fixture{tok, uid, sid, best}
				},
				want: func(t *testing.T, f fixture, r response) {
					r.want(t, http.StatusCreated)
					wantBooking(t, r.Body)
					if r.Body["status"] != "ready" || id(t, r.Body, "user_id") != f.userID || id(t, r.Body, "station_id") != f.station ||
						id(t, r.Body, "battery_id") != f.battery {
						t.Errorf("booking %s, want ready, user %d, station %d, battery %d", r.Raw, f.userID, f.station, f.battery)
					}
					exp, _ := time.Parse(time.RFC3339Nano, str(t, r.Body, "expires_at"))
					created, _ := time.Parse(time.RFC3339Nano, str(t, r.Body, "created_at"))
					if d := exp.Sub(created); d < 14*time.Minute || d > 16*time.Minute {
						t.Errorf("held for %v, want the default 15m", d)
					}
					if c := e.counts(t, f.station); c != (counts{1, 1, 1, 3}) {
						t.Errorf("counts %+v, want 1 available, 1 booked, 1 charging", c)
					}
					if b := e.battery(t, f.station, f.battery); b["status"] != "booked" {
						t.Errorf("battery %v, want booked", b["status"])
					}
				},
			},
			{
				name: "only charging batteries: confirmed with the fullest",
				given: func(t *testing.T) fixture {
					tok, uid := e.newUser(t)
					sid := e.newStation(t, admin)
					e.addBattery(t, admin, sid, 40)
					best, _ := e.addBattery(t, admin, sid, 70)
					return fixture{tok, uid, sid, best}
				},
				want: func(t *testing.T, f fixture, r response) {
					r.want(t, http.StatusCreated)
					wantBooking(t, r.Body)
					if r.Body["status"] != "confirmed" || id(t, r.Body, "battery_id") != f.battery {
						t.Errorf("booking %s, want confirmed with battery %d", r.Raw, f.battery)
					}
					if c := e.counts(t, f.station); c != (counts{0, 1, 1, 2}) {
						t.Errorf("counts %+v, want 1 booked, 1 charging", c)
					}
				},
			},
			{
				name: "no battery",
				given: func(t *testing.T) fixture {
					tok, uid := e.newUser(t)
					return fixture{token: tok, userID: uid, station: e.newStation(t, admin)}
				},
				want: func(t *testing.T, f fixture, r response) {
					wantError(t, r, http.StatusConflict, "no_battery_available")
				},
			},
			{
				name: "only maintenance batteries",
				given: func(t *testing.T) fixture {
					tok, uid := e.newUser(t)
					sid := e.newStation(t, admin)
					bid, _ := e.addBattery(t, admin, sid, 90)
					e.do(t, http.MethodPatch, fmt.Sprintf("/api/v1/batteries/%d", bid), admin, map[string]any{"status": "maintenance"}).want(t, http.StatusOK)
					return fixture{token: tok, userID: uid, station: sid}
				},
				want: func(t *testing.T, f fixture, r response) {
					wantError(t, r, http.StatusConflict, "no_battery_available")
				},
			},
			{
				name: "all booked",
				given: func(t *testing.T) fixture {
					tok, uid := e.newUser(t)
					sid := e.newStation(t, admin)
					e.addBattery(t, admin, sid, 90)
					other, _ := e.newUser(t)
					e.book(t, other, sid)
					return fixture{token: tok, userID: uid, station: sid}
				},
				want: func(t *testing.T, f fixture, r response) {
					wantError(t, r, http.StatusConflict, "no_battery_available")
					if c := e.counts(t, f.station); c != (counts{0, 1, 0, 1}) {
						t.Errorf("counts %+v after a refused booking", c)
					}
				},
			},
			{
				name: "closed station",
				given: func(t *testing.T) fixture {
					tok, uid := e.newUser(t)
					sid := e.newStation(t, admin)
					e.addBattery(t, admin, sid, 90)
					e.do(t, http.MethodPatch, fmt.Sprintf("/api/v1/stations/%d", sid), admin, map[string]any{"status": "closed"}).want(t, http.StatusOK)
					return fixture{token: tok, userID: uid, station: sid}
				},
				want: func(t *testing.T, f fixture, r response) {
					wantError(t, r, http.StatusConflict, "station_unavailable")
					if c := e.counts(t, f.station); c != (counts{1, 0, 0, 1}) {
						t.Errorf("counts %+v after a refused booking", c)
					}
				},
			},
			{
				name: "station in maintenance",
				given: func(t *testing.T) fixture {
					tok, uid := e.newUser(t)
					sid := e.newStation(t, admin)
					e.addBattery(t, admin, sid, 90)
					e.do(t, http.MethodPatch, fmt.Sprintf("/api/v1/stations/%d", sid), admin, map[string]any{"status": "maintenance"}).want(t, http.StatusOK)
					return fixture{token: tok, userID: uid, station: sid}
				},
				want: func(t *testing.T, f fixture, r response) {
					wantError(t, r, http.StatusConflict, "station_unavailable")
				},
			},
			{
				name: "active booking exists",
				given: func(t *testing.T) fixture {
					tok, uid := e.newUser(t)
					first := e.newStation(t, admin)
					e.addBattery(t, admin, first, 90)
					e.book(t, tok, first)
					sid := e.newStation(t, admin)
					e.addBattery(t, admin, sid, 90)
					return fixture{token: tok, userID: uid, station: sid}
				},
				want: func(t *testing.T, f fixture, r response) {
					wantError(t, r, http.StatusConflict, "active_booking_exists")
					if c := e.counts(t, f.station); c != (counts{1, 0, 0, 1}) {
						t.Errorf("counts %+v after a refused booking", c)
					}
				},
			},
			{
				name: "unknown station",
				given: func(t *testing.T) fixture {
					tok, uid := e.newUser(t)
					return fixture{token: tok, userID: uid, station: 987654}
				},
				want: func(t *testing.T, f fixture, r response) { wantError(t, r, http.StatusNotFound, "not_found") },
			},
			{
				name: "missing station_id",
				given: func(t *testing.T) fixture {
					tok, uid := e.newUser(t)
					return fixture{token: tok, userID: uid}
				},
				when: func(fixture) any { return map[string]any{} },
				want: func(t *testing.T, f fixture, r response) { wantFields(t, r, "station_id") },
			},
			{
				name: "station_id zero",
				given: func(t *testing.T) fixture {
					tok, uid := e.newUser(t)
					return fixture{token: tok, userID: uid}
				},
				when: func(fixture) any { return map[string]any{"station_id": 0} },
				want: func(t *testing.T, f fixture, r response) { wantFields(t, r, "station_id") },
			},
			{
				name: "station_id as a string",
				given: func(t *testing.T) fixture {
					tok, uid := e.newUser(t)
					return fixture{token: tok, userID: uid}
				},
				when: func(fixture) any { return map[string]any{"station_id": "1"} },
				want: func(t *testing.T, f fixture, r response) { wantError(t, r, http.StatusBadRequest, "invalid_request") },
			},
			{
				name: "anonymous",
				given: func(t *testing.T) fixture {
					sid := e.newStation(t, admin)
					e.addBattery(t, admin, sid, 90)
					return fixture{station: sid}
				},
				want: func(t *testing.T, f fixture, r response) {
					wantError(t, r, http.StatusUnauthorized, "unauthorized")
					if c := e.counts(t, f.station); c != (counts{1, 0, 0, 1}) {
						t.Errorf("counts %+v after a refused booking", c)
					}
				},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				f := tt.given(t)
				var body any = map[string]any{"station_id": f.station}
				if tt.when != nil {
					body = tt.when(f)
				}
				tt.want(t, f, e.do(t, http.MethodPost, "/api/v1/bookings", f.token, body))
			})
		}
	})
}

func TestBookingIdempotency(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, _ := e.newAdmin(t)
		sid := e.newStation(t, admin)
		e.addBattery(t, admin, sid, 90)
		e.addBattery(t, admin, sid, 90)
		tok, _ := e.newUser(t)
		other, _ := e.newUser(t)

		first := e.do(t, http.MethodPost, "/api/v1/bookings", tok, map[string]any{"station_id": sid}, "Idempotency-Key", "key-1").
			want(t, http.StatusCreated)
		bid := id(t, first.Body, "id")

		tests := []struct {
			name  string
			given string // token
			when  string // key
			want  func(t *testing.T, r response)
		}{
			{
				name: "same key replays", given: tok, when: "key-1",
				want: func(t *testing.T, r response) {
					r.want(t, http.StatusCreated)
					wantBooking(t, r.Body)
					if id(t, r.Body, "id") != bid || r.Body["battery_id"] != first.Body["battery_id"] || r.Body["status"] != first.Body["status"] {
						t.Fatalf("replay %s, want %s", r.Raw, first.Raw)
					}
				},
			},
			{
				name: "another key is a new attempt", given: tok, when: "key-2",
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusConflict, "active_booking_exists") },
			},
			{
				name: "same key of another user is theirs", given: other, when: "key-1",
				want: func(t *testing.T, r response) {
					r.want(t, http.StatusCreated)
					if id(t, r.Body, "id") == bid {
						t.Fatalf("another user's key replayed booking %d", bid)
					}
				},
			},
			{
				name: "key too long", given: tok, when: string(make([]byte, 201)),
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusUnprocessableEntity, "validation_failed") },
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				key := tt.when
				if len(key) > 200 {
					key = fmt.Sprintf("%0201d", 7)
				}
				tt.want(t, e.do(t, http.MethodPost, "/api/v1/bookings", tt.given, map[string]any{"station_id": sid}, "Idempotency-Key", key))
			})
		}

		t.Run("the key's limit counts bytes, as its message says", func(t *testing.T) {
			// 200 bytes in 68 characters: within the limit, so the booking
			// rule answers (this user already holds one).
			r := e.do(t, http.MethodPost, "/api/v1/bookings", tok, map[string]any{"station_id": sid}, "Idempotency-Key", strings.Repeat("€", 66)+"ab")
			wantError(t, r, http.StatusConflict, "active_booking_exists")
			// 201 bytes in 67 characters: over it.
			r = e.do(t, http.MethodPost, "/api/v1/bookings", tok, map[string]any{"station_id": sid}, "Idempotency-Key", strings.Repeat("€", 67))
			wantFields(t, r, "Idempotency-Key")
			if msg := r.Body["error"].(map[string]any)["fields"].(map[string]any)["Idempotency-Key"]; msg != "must be at most 200 bytes" {
				t.Fatalf("message %q, want it to say bytes", msg)
			}
		})

		t.Run("nothing more was booked", func(t *testing.T) {
			if c := e.counts(t, sid); c != (counts{0, 2, 0, 2}) {
				t.Fatalf("counts %+v, want exactly the two users' bookings", c)
			}
			r := e.do(t, http.MethodGet, "/api/v1/bookings", tok, nil).want(t, http.StatusOK)
			if n := len(list(t, r.Body, "bookings")); n != 1 {
				t.Fatalf("user has %d bookings, want 1", n)
			}
		})

		t.Run("replay after cancel still returns the first answer", func(t *testing.T) {
			e.do(t, http.MethodPost, fmt.Sprintf("/api/v1/bookings/%d/cancel", bid), tok, nil).want(t, http.StatusOK)
			r := e.do(t, http.MethodPost, "/api/v1/bookings", tok, map[string]any{"station_id": sid}, "Idempotency-Key", "key-1").
				want(t, http.StatusCreated)
			if id(t, r.Body, "id") != bid {
				t.Fatalf("replay booked anew: %s", r.Raw)
			}
			if c := e.counts(t, sid); c != (counts{1, 1, 0, 2}) {
				t.Fatalf("counts %+v after replaying a cancelled booking, want nothing booked anew", c)
			}
		})
	})
}

func TestBookingList(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, _ := e.newAdmin(t)
		sid := e.newStation(t, admin)
		for range 3 {
			e.addBattery(t, admin, sid, 90)
		}
		alice, aliceID := e.newUser(t)
		bob, bobID := e.newUser(t)
		carol, _ := e.newUser(t)
		a1 := id(t, e.book(t, alice, sid), "id")
		e.do(t, http.MethodPost, fmt.Sprintf("/api/v1/bookings/%d/cancel", a1), alice, nil).want(t, http.StatusOK)
		a2 := id(t, e.book(t, alice, sid), "id")
		b1 := id(t, e.book(t, bob, sid), "id")

		tests := []struct {
			name  string
			given string // token
			when  string // query
			want  []int64
		}{
			// Newest first: a user's active booking leads their list.
			{"own only", alice, "", []int64{a2, a1}},
			{"other user's own", bob, "", []int64{b1}},
			{"none", carol, "", []int64{}},
			{"user_id ignored for users", bob, fmt.Sprintf("?user_id=%d", aliceID), []int64{b1}},
			{"admin sees all", admin, "", []int64{b1, a2, a1}},
			{"admin filters by user", admin, fmt.Sprintf("?user_id=%d", bobID), []int64{b1}},
			{"admin pages", admin, "?limit=2", []int64{b1, a2}},
			{"admin pages on", admin, fmt.Sprintf("?limit=2&cursor=%d", a2), []int64{a1}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := e.do(t, http.MethodGet, "/api/v1/bookings"+tt.when, tt.given, nil).want(t, http.StatusOK)
				got := list(t, r.Body, "bookings")
				var ids []int64
				for _, b := range got {
					wantBooking(t, b)
					ids = append(ids, id(t, b, "id"))
				}
				if fmt.Sprint(ids) != fmt.Sprint(tt.want) && !(len(ids) == 0 && len(tt.want) == 0) {
					t.Fatalf("bookings %v, want %v", ids, tt.want)
				}
			})
		}

		errs := []struct {
			name   string
			given  string
			when   string
			status int
			code   string
		}{
			{"anonymous", "", "", http.StatusUnauthorized, "unauthorized"},
			{"admin bad user_id", admin, "?user_id=x", http.StatusUnprocessableEntity, "validation_failed"},
			{"bad cursor", alice, "?cursor=x", http.StatusBadRequest, "invalid_cursor"},
			{"bad limit", alice, "?limit=0", http.StatusUnprocessableEntity, "validation_failed"},
		}
		for _, tt := range errs {
			t.Run(tt.name, func(t *testing.T) {
				wantError(t, e.do(t, http.MethodGet, "/api/v1/bookings"+tt.when, tt.given, nil), tt.status, tt.code)
			})
		}
	})
}

func TestBookingGet(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, sid, _ := e.readyStation(t)
		owner, _ := e.newUser(t)
		other, _ := e.newUser(t)
		b := e.book(t, owner, sid)
		bid := id(t, b, "id")

		tests := []struct {
			name   string
			given  string // token
			when   string // id
			status int
			code   string
		}{
			{"owner", owner, fmt.Sprint(bid), http.StatusOK, ""},
			{"admin", admin, fmt.Sprint(bid), http.StatusOK, ""},
			{"other user", other, fmt.Sprint(bid), http.StatusNotFound, "not_found"},
			{"anonymous", "", fmt.Sprint(bid), http.StatusUnauthorized, "unauthorized"},
			{"unknown", owner, fmt.Sprint(bid + 1000), http.StatusNotFound, "not_found"},
			{"non-numeric", owner, "abc", http.StatusNotFound, "not_found"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := e.do(t, http.MethodGet, "/api/v1/bookings/"+tt.when, tt.given, nil)
				if tt.code != "" {
					wantError(t, r, tt.status, tt.code)
					return
				}
				r.want(t, http.StatusOK)
				wantBooking(t, r.Body)
				if id(t, r.Body, "id") != bid || r.Body["battery_id"] != b["battery_id"] {
					t.Fatalf("booking %s, want %v", r.Raw, b)
				}
			})
		}
		t.Run("another user's booking looks like an unknown one", func(t *testing.T) {
			hidden := wantError(t, e.do(t, http.MethodGet, fmt.Sprintf("/api/v1/bookings/%d", bid), other, nil), http.StatusNotFound, "not_found")
			missing := wantError(t, e.do(t, http.MethodGet, "/api/v1/bookings/987654", other, nil), http.StatusNotFound, "not_found")
			if hidden["message"] != missing["message"] {
				t.Errorf("messages differ, so ids leak: %q vs %q", hidden["message"], missing["message"])
			}
		})
	})
}

func TestBookingCollect(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, _ := e.newAdmin(t)

		type fixture struct {
			token   string
			station int64
			booking int64
			battery int64
			serial  string // of the booked battery
			other   int64  // another station, when a case needs one
			pack    string // the serial to swap in, when a case needs one
		}
		// booked is a fresh user's booking at a fresh station holding one
		// battery at charge.
		booked := func(t *testing.T, charge int) fixture {
			t.Helper()
			tok, _ := e.newUser(t)
			sid := e.newStation(t, admin)
			bat, serial := e.addBattery(t, admin, sid, charge)
			b := e.book(t, tok, sid)
			return fixture{token: tok, station: sid, booking: id(t, b, "id"), battery: bat, serial: serial}
		}
		collect := func(t *testing.T, f fixture, token string, body any) response {
			t.Helper()
			return e.do(t, http.MethodPost, fmt.Sprintf("/api/v1/bookings/%d/collect", f.booking), token, body)
		}

		tests := []struct {
			name  string
			given func(t *testing.T) fixture
			when  func(t *testing.T, f fixture) response
			want  func(t *testing.T, f fixture, r response)
		}{
			{
				name:  "ready, no swap-in",
				given: func(t *testing.T) fixture { return booked(t, 90) },
				when:  func(t *testing.T, f fixture) response { return collect(t, f, f.token, nil) },
				want: func(t *testing.T, f fixture, r response) {
					r.want(t, http.StatusOK)
					wantBooking(t, r.Body)
					if r.Body["status"] != "collected" || id(t, r.Body, "id") != f.booking {
						t.Fatalf("booking %s, want collected", r.Raw)
					}
					if c := e.counts(t, f.station); c != (counts{0, 0, 0, 0}) {
						t.Errorf("counts %+v, want the battery gone from the station", c)
					}
				},
			},
			{
				name:  "empty JSON object",
				given: func(t *testing.T) fixture { return booked(t, 90) },
				when:  func(t *testing.T, f fixture) response { return collect(t, f, f.token, map[string]any{}) },
				want:  func(t *testing.T, f fixture, r response) { r.want(t, http.StatusOK) },
			},
			{
				name:  "swap-in of a new pack",
				given: func(t *testing.T) fixture { return booked(t, 90) },
				when: func(t *testing.T, f fixture) response {
					return collect(t, f, f.token, map[string]any{"return_serial_number": "RET-NEW", "return_charge_percent": 12})
				},
				want: func(t *testing.T, f fixture, r response) {
					r.want(t, http.StatusOK)
					if r.Body["status"] != "collected" {
						t.Fatalf("status %v, want collected", r.Body["status"])
					}
					l := e.do(t, http.MethodGet, fmt.Sprintf("/api/v1/stations/%d/batteries", f.station), "", nil).want(t, http.StatusOK)
					bats := list(t, l.Body, "batteries")
					if len(bats) != 1 || bats[0]["serial_number"] != "RET-NEW" || bats[0]["status"] != "charging" ||
						integer(t, bats[0], "charge_percent") != 12 || id(t, bats[0], "station_id") != f.station {
						t.Fatalf("station batteries %s, want only RET-NEW charging at 12%%", l.Raw)
					}
					if rid, ok := r.Body["returned_battery_id"]; ok && rid != bats[0]["id"] {
						t.Errorf("returned_battery_id %v, want %v", rid, bats[0]["id"])
					}
					if c := e.counts(t, f.station); c != (counts{0, 0, 1, 1}) {
						t.Errorf("counts %+v, want the swapped-in pack charging", c)
					}
				},
			},
			{
				name: "swap-in of a pack out with a rider takes it in",
				given: func(t *testing.T) fixture {
					f := booked(t, 90)
					away := booked(t, 90)
					collect(t, away, away.token, nil).want(t, http.StatusOK)
					f.pack = away.serial
					return f
				},
				when: func(t *testing.T, f fixture) response {
					return collect(t, f, f.token, map[string]any{"return_serial_number": f.pack, "return_charge_percent": 85})
				},
				want: func(t *testing.T, f fixture, r response) {
					r.want(t, http.StatusOK)
					if c := e.counts(t, f.station); c != (counts{1, 0, 0, 1}) {
						t.Errorf("counts %+v, want the 85%% pack available here", c)
					}
				},
			},
			{
				name: "swap-in of a pack at another station",
				given: func(t *testing.T) fixture {
					f := booked(t, 90)
					f.other = e.newStation(t, admin)
					_, f.pack = e.addBattery(t, admin, f.other, 60)
					return f
				},
				when: func(t *testing.T, f fixture) response {
					return collect(t, f, f.token, map[string]any{"return_serial_number": f.pack, "return_charge_percent": 85})
				},
				want: func(t *testing.T, f fixture, r response) {
					wantError(t, r, http.StatusConflict, "battery_not_returnable")
					if c := e.counts(t, f.other); c != (counts{0, 0, 1, 1}) {
						t.Errorf("the pack's station has %+v, want it still there, charging", c)
					}
					if c := e.counts(t, f.station); c != (counts{0, 1, 0, 1}) {
						t.Errorf("counts %+v, want nothing changed by the refused swap", c)
					}
				},
			},
			{
				name:  "not ready",
				given: func(t *testing.T) fixture { return booked(t, 50) },
				when:  func(t *testing.T, f fixture) response { return collect(t, f, f.token, nil) },
				want: func(t *testing.T, f fixture, r response) {
					wantError(t, r, http.StatusConflict, "battery_not_ready")
					if c := e.counts(t, f.station); c != (counts{0, 1, 0, 1}) {
						t.Errorf("counts %+v, want still booked", c)
					}
				},
			},
			{
				name: "ready after telemetry",
				given: func(t *testing.T) fixture {
					f := booked(t, 50)
					r := e.do(t, http.MethodPatch, fmt.Sprintf("/api/v1/batteries/%d", f.battery), admin, map[string]any{"charge_percent": 80}).
						want(t, http.StatusOK)
					if r.Body["status"] != "booked" {
						t.Fatalf("telemetry freed a booked battery: %s", r.Raw)
					}
					g := e.do(t, http.MethodGet, fmt.Sprintf("/api/v1/bookings/%d", f.booking), f.token, nil).want(t, http.StatusOK)
					if g.Body["status"] != "ready" {
						t.Fatalf("booking %v after charging, want ready", g.Body["status"])
					}
					return f
				},
				when: func(t *testing.T, f fixture) response { return collect(t, f, f.token, nil) },
				want: func(t *testing.T, f fixture, r response) {
					r.want(t, http.StatusOK)
					if r.Body["status"] != "collected" {
						t.Fatalf("status %v", r.Body["status"])
					}
				},
			},
			{
				name:  "another user's",
				given: func(t *testing.T) fixture { return booked(t, 90) },
				when: func(t *testing.T, f fixture) response {
					other, _ := e.newUser(t)
					return collect(t, f, other, nil)
				},
				want: func(t *testing.T, f fixture, r response) {
					wantError(t, r, http.StatusNotFound, "not_found")
					if c := e.counts(t, f.station); c != (counts{0, 1, 0, 1}) {
						t.Errorf("counts %+v, want still booked", c)
					}
				},
			},
			{
				name:  "anonymous",
				given: func(t *testing.T) fixture { return booked(t, 90) },
				when:  func(t *testing.T, f fixture) response { return collect(t, f, "", nil) },
				want:  func(t *testing.T, f fixture, r response) { wantError(t, r, http.StatusUnauthorized, "unauthorized") },
			},
			{
				name: "twice",
				given: func(t *testing.T) fixture {
					f := booked(t, 90)
					collect(t, f, f.token, nil).want(t, http.StatusOK)
					return f
				},
				when: func(t *testing.T, f fixture) response { return collect(t, f, f.token, nil) },
				want: func(t *testing.T, f fixture, r response) { wantError(t, r, http.StatusConflict, "invalid_state") },
			},
			{
				name: "cancelled",
				given: func(t *testing.T) fixture {
					f := booked(t, 90)
					e.do(t, http.MethodPost, fmt.Sprintf("/api/v1/bookings/%d/cancel", f.booking), f.token, nil).want(t, http.StatusOK)
					return f
				},
				when: func(t *testing.T, f fixture) response { return collect(t, f, f.token, nil) },
				want: func(t *testing.T, f fixture, r response) {
					wantError(t, r, http.StatusConflict, "invalid_state")
					if c := e.counts(t, f.station); c != (counts{1, 0, 0, 1}) {
						t.Errorf("counts %+v, want the battery back and staying", c)
					}
				},
			},
			{
				name: "swap-in of a pack another booking holds",
				given: func(t *testing.T) fixture {
					f := booked(t, 90)
					f.pack = booked(t, 90).serial
					return f
				},
				when: func(t *testing.T, f fixture) response {
					return collect(t, f, f.token, map[string]any{"return_serial_number": f.pack, "return_charge_percent": 10})
				},
				want: func(t *testing.T, f fixture, r response) {
					wantError(t, r, http.StatusConflict, "battery_not_returnable")
					if c := e.counts(t, f.station); c != (counts{0, 1, 0, 1}) {
						t.Errorf("counts %+v, want nothing changed by the refused swap", c)
					}
				},
			},
			{
				name:  "swap-in of the pack being collected",
				given: func(t *testing.T) fixture { return booked(t, 90) },
				when: func(t *testing.T, f fixture) response {
					return collect(t, f, f.token, map[string]any{"return_serial_number": f.serial, "return_charge_percent": 10})
				},
				want: func(t *testing.T, f fixture, r response) {
					wantError(t, r, http.StatusConflict, "battery_not_returnable")
				},
			},
			{
				name:  "swap-in without charge",
				given: func(t *testing.T) fixture { return booked(t, 90) },
				when: func(t *testing.T, f fixture) response {
					return collect(t, f, f.token, map[string]any{"return_serial_number": "RET-1"})
				},
				want: func(t *testing.T, f fixture, r response) { wantFields(t, r, "return_charge_percent") },
			},
			{
				name:  "swap-in charge out of range",
				given: func(t *testing.T) fixture { return booked(t, 90) },
				when: func(t *testing.T, f fixture) response {
					return collect(t, f, f.token, map[string]any{"return_serial_number": "RET-2", "return_charge_percent": 120})
				},
				want: func(t *testing.T, f fixture, r response) { wantFields(t, r, "return_charge_percent") },
			},
			{
				name:  "unknown field",
				given: func(t *testing.T) fixture { return booked(t, 90) },
				when: func(t *testing.T, f fixture) response {
					return collect(t, f, f.token, map[string]any{"serial": "RET-3"})
				},
				want: func(t *testing.T, f fixture, r response) { wantError(t, r, http.StatusBadRequest, "invalid_request") },
			},
			{
				name:  "unknown booking",
				given: func(t *testing.T) fixture { return booked(t, 90) },
				when: func(t *testing.T, f fixture) response {
					return e.do(t, http.MethodPost, "/api/v1/bookings/987654/collect", f.token, nil)
				},
				want: func(t *testing.T, f fixture, r response) { wantError(t, r, http.StatusNotFound, "not_found") },
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				f := tt.given(t)
				tt.want(t, f, tt.when(t, f))
			})
		}
	})
}

func TestBookingCancel(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, _ := e.newAdmin(t)

		type fixture struct {
			owner   string
			station int64
			booking int64
			before  counts // the station before the booking
		}
		tests := []struct {
			name   string
			given  int // charge of the station's only battery
			when   func(t *testing.T, f fixture) string
			status int
			code   string
		}{
			{name: "owner, ready", given: 90, when: func(_ *testing.T, f fixture) string { return f.owner }, status: http.StatusOK},
			{name: "owner, confirmed", given: 40, when: func(_ *testing.T, f fixture) string { return f.owner }, status: http.StatusOK},
			{name: "admin", given: 90, when: func(*testing.T, fixture) string { return admin }, status: http.StatusOK},
			{name: "other user", given: 90, when: func(t *testing.T, _ fixture) string {
				tok, _ := e.newUser(t)
				return tok
			}, status: http.StatusNotFound, code: "not_found"},
			{name: "anonymous", given: 90, when: func(*testing.T, fixture) string { return "" }, status: http.StatusUnauthorized, code: "unauthorized"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				owner, _ := e.newUser(t)
				sid := e.newStation(t, admin)
				e.addBattery(t, admin, sid, tt.given)
				f := fixture{owner: owner, station: sid, before: e.counts(t, sid)}
				f.booking = id(t, e.book(t, owner, sid), "id")
				path := fmt.Sprintf("/api/v1/bookings/%d/cancel", f.booking)

				r := e.do(t, http.MethodPost, path, tt.when(t, f), nil)
				if tt.code != "" {
					wantError(t, r, tt.status, tt.code)
					if c := e.counts(t, sid); c.booked != 1 {
						t.Fatalf("a refused cancel freed the battery: %+v", c)
					}
					return
				}
				r.want(t, http.StatusOK)
				wantBooking(t, r.Body)
				if r.Body["status"] != "cancelled" || id(t, r.Body, "id") != f.booking {
					t.Fatalf("booking %s, want cancelled", r.Raw)
				}
				if c := e.counts(t, sid); c != f.before {
					t.Fatalf("counts %+v after cancel, want %+v as before the booking", c, f.before)
				}
				g := e.do(t, http.MethodGet, fmt.Sprintf("/api/v1/bookings/%d", f.booking), owner, nil).want(t, http.StatusOK)
				if g.Body["status"] != "cancelled" {
					t.Fatalf("GET after cancel: %v", g.Body["status"])
				}
				wantError(t, e.do(t, http.MethodPost, path, owner, nil), http.StatusConflict, "invalid_state")
				if c := e.counts(t, sid); c != f.before {
					t.Fatalf("counts %+v after a second cancel, want %+v", c, f.before)
				}
				// The battery is bookable again, and the user may book again.
				e.book(t, owner, sid)
			})
		}

		t.Run("collected cannot be cancelled", func(t *testing.T) {
			_, sid, _ := e.readyStation(t)
			tok, _ := e.newUser(t)
			bid := id(t, e.book(t, tok, sid), "id")
			e.do(t, http.MethodPost, fmt.Sprintf("/api/v1/bookings/%d/collect", bid), tok, nil).want(t, http.StatusOK)
			wantError(t, e.do(t, http.MethodPost, fmt.Sprintf("/api/v1/bookings/%d/cancel", bid), tok, nil), http.StatusConflict, "invalid_state")
		})
		t.Run("unknown booking", func(t *testing.T) {
			tok, _ := e.newUser(t)
			wantError(t, e.do(t, http.MethodPost, "/api/v1/bookings/987654/cancel", tok, nil), http.StatusNotFound, "not_found")
		})
		t.Run("a body that is not an empty object", func(t *testing.T) {
			_, sid, _ := e.readyStation(t)
			tok, _ := e.newUser(t)
			bid := id(t, e.book(t, tok, sid), "id")
			wantError(t, e.do(t, http.MethodPost, fmt.Sprintf("/api/v1/bookings/%d/cancel", bid), tok, map[string]any{"reason": "x"}),
				http.StatusBadRequest, "invalid_request")
		})
	})
}
