package api_test

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
)

func TestNotificationCreate(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, _ := e.newAdmin(t)
		user, uid := e.newUser(t)

		tests := []struct {
			name  string
			given string // token
			when  map[string]any
			want  func(t *testing.T, r response)
		}{
			{
				name: "admin", given: admin, when: map[string]any{"user_id": uid, "title": "Hello", "message": "Station 3 reopens at 9.", "level": "warning"},
				want: func(t *testing.T, r response) {
					r.want(t, http.StatusCreated)
					wantNotification(t, r.Body)
					if r.Body["type"] != "notification" || r.Body["title"] != "Hello" || r.Body["message"] != "Station 3 reopens at 9." ||
						r.Body["level"] != "warning" || r.Body["read_at"] != nil {
						t.Fatalf("notification %s", r.Raw)
					}
					// The answer is the row that was stored, as the user reads it.
					stored := list(t, e.do(t, http.MethodGet, "/api/v1/notifications?limit=1", user, nil).want(t, http.StatusOK).Body, "notifications")
					if len(stored) != 1 || fmt.Sprint(stored[0]) != fmt.Sprint(r.Body) {
						t.Fatalf("answered %v, stored %v", r.Body, stored)
					}
				},
			},
			{
				name: "without level", given: admin, when: map[string]any{"user_id": uid, "title": "T", "message": "M"},
				want: func(t *testing.T, r response) { wantFields(t, r, "level") },
			},
			{
				name: "user", given: user, when: map[string]any{"user_id": uid, "title": "T", "message": "M", "level": "info"},
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusForbidden, "forbidden") },
			},
			{
				name: "anonymous", when: map[string]any{"user_id": uid, "title": "T", "message": "M", "level": "info"},
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusUnauthorized, "unauthorized") },
			},
			{
				name: "missing fields", given: admin, when: map[string]any{},
				want: func(t *testing.T, r response) { wantFields(t, r, "user_id", "title", "message", "level") },
			},
			{
				name: "bad level", given: admin, when: map[string]any{"user_id": uid, "title": "T", "message": "M", "level": "debug"},
				want: func(t *testing.T, r response) { wantFields(t, r, "level") },
			},
			{
				name: "unknown user", given: admin, when: map[string]any{"user_id": uid + 1000, "title": "T", "message": "M", "level": "info"},
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusNotFound, "not_found") },
			},
			{
				name: "user_id as a string", given: admin, when: map[string]any{"user_id": fmt.Sprint(uid), "title": "T", "message": "M", "level": "info"},
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusBadRequest, "invalid_request") },
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tt.want(t, e.do(t, http.MethodPost, "/api/v1/notifications", tt.given, tt.when))
			})
		}
	})
}

func TestNotificationList(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, _ := e.newAdmin(t)
		user, uid := e.newUser(t)
		other, otherID := e.newUser(t)
		send := func(to int64, title string) int64 {
			r := e.do(t, http.MethodPost, "/api/v1/notifications", admin, map[string]any{"user_id": to, "title": title, "message": "m", "level": "info"}).
				want(t, http.StatusCreated)
			return id(t, r.Body, "id")
		}
		n1 := send(uid, "first")
		n2 := send(uid, "second")
		n3 := send(otherID, "theirs")
		e.do(t, http.MethodPost, fmt.Sprintf("/api/v1/notifications/%d/read", n1), user, nil).want(t, http.StatusOK)

		tests := []struct {
			name  string
			given string // token
			when  string // query
			want  []int64
		}{
			// Newest first.
			{"all own", user, "", []int64{n2, n1}},
			{"unread", user, "?unread=true", []int64{n2}},
			{"unread=false is all", user, "?unread=false", []int64{n2, n1}},
			{"paged", user, "?limit=1", []int64{n2}},
			{"paged on", user, fmt.Sprintf("?limit=1&cursor=%d", n2), []int64{n1}},
			{"another user's own", other, "", []int64{n3}},
			{"admin sees only own", admin, "", nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := e.do(t, http.MethodGet, "/api/v1/notifications"+tt.when, tt.given, nil).want(t, http.StatusOK)
				var ids []int64
				for _, n := range list(t, r.Body, "notifications") {
					wantNotification(t, n)
					ids = append(ids, id(t, n, "id"))
				}
				if fmt.Sprint(ids) != fmt.Sprint(tt.want) {
					t.Fatalf("notifications %v, want %v", ids, tt.want)
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
			{"bad unread", user, "?unread=maybe", http.StatusUnprocessableEntity, "validation_failed"},
			{"bad cursor", user, "?cursor=x", http.StatusBadRequest, "invalid_cursor"},
		}
		for _, tt := range errs {
			t.Run(tt.name, func(t *testing.T) {
				wantError(t, e.do(t, http.MethodGet, "/api/v1/notifications"+tt.when, tt.given, nil), tt.status, tt.code)
			})
		}
	})
}

func TestNotificationRead(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, _ := e.newAdmin(t)
		owner, uid := e.newUser(t)
		other, _ := e.newUser(t)
		nid := id(t, e.do(t, http.MethodPost, "/api/v1/notifications", admin, map[string]any{"user_id": uid, "title": "T", "message": "M", "level": "info"}).
			want(t, http.StatusCreated).Body, "id")
		path := fmt.Sprintf("/api/v1/notifications/%d/read", nid)

		tests := []struct {
			name   string
			given  string // token
			when   string // path
			status int
			code   string
		}{
			{"other user", other, path, http.StatusNotFound, "not_found"},
			{"admin is not the owner", admin, path, http.StatusNotFound, "not_found"},
			{"anonymous", "", path, http.StatusUnauthorized, "unauthorized"},
			{"unknown", owner, "/api/v1/notifications/987654/read", http.StatusNotFound, "not_found"},
			{"non-numeric", owner, "/api/v1/notifications/x/read", http.StatusNotFound, "not_found"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				wantError(t, e.do(t, http.MethodPost, tt.when, tt.given, nil), tt.status, tt.code)
				r := e.do(t, http.MethodGet, "/api/v1/notifications?unread=true", owner, nil).want(t, http.StatusOK)
				if len(list(t, r.Body, "notifications")) != 1 {
					t.Fatalf("a refused read changed the owner's unread list: %s", r.Raw)
				}
			})
		}

		t.Run("owner", func(t *testing.T) {
			r := e.do(t, http.MethodPost, path, owner, nil).want(t, http.StatusOK)
			wantNotification(t, r.Body)
			if r.Body["read_at"] == nil || id(t, r.Body, "id") != nid {
				t.Fatalf("notification %s, want read_at set", r.Raw)
			}
			again := e.do(t, http.MethodPost, path, owner, nil).want(t, http.StatusOK)
			if again.Body["read_at"] != r.Body["read_at"] {
				t.Errorf("read again moved read_at: %v -> %v", r.Body["read_at"], again.Body["read_at"])
			}
			u := e.do(t, http.MethodGet, "/api/v1/notifications?unread=true", owner, nil).want(t, http.StatusOK)
			if n := len(list(t, u.Body, "notifications")); n != 0 {
				t.Errorf("%d unread after reading the only one", n)
			}
		})
	})
}

func TestBookingNotifications(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, _ := e.newAdmin(t)

		tests := []struct {
			name  string
			given int // charge of the station's only battery
			when  func(t *testing.T, tok string, booking, battery int64)
			want  []string // notification types, in order
		}{
			{
				name: "booked charged, cancelled", given: 90,
				when: func(t *testing.T, tok string, booking, _ int64) {
					e.do(t, http.MethodPost, fmt.Sprintf("/api/v1/bookings/%d/cancel", booking), tok, nil).want(t, http.StatusOK)
				},
				want: []string{"booking_confirmed", "booking_ready", "booking_cancelled"},
			},
			{
				name: "booked charging, charged, collected", given: 30,
				when: func(t *testing.T, tok string, booking, battery int64) {
					e.do(t, http.MethodPatch, fmt.Sprintf("/api/v1/batteries/%d", battery), admin, map[string]any{"charge_percent": 100}).want(t, http.StatusOK)
					e.do(t, http.MethodPost, fmt.Sprintf("/api/v1/bookings/%d/collect", booking), tok, nil).want(t, http.StatusOK)
				},
				want: []string{"booking_confirmed", "booking_ready", "booking_collected"},
			},
			{
				name: "cancelled by an admin", given: 30,
				when: func(t *testing.T, _ string, booking, _ int64) {
					e.do(t, http.MethodPost, fmt.Sprintf("/api/v1/bookings/%d/cancel", booking), admin, nil).want(t, http.StatusOK)
				},
				want: []string{"booking_confirmed", "booking_cancelled"},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tok, _ := e.newUser(t)
				sid := e.newStation(t, admin)
				bat, _ := e.addBattery(t, admin, sid, tt.given)
				booking := id(t, e.book(t, tok, sid), "id")
				tt.when(t, tok, booking, bat)

				r := e.do(t, http.MethodGet, "/api/v1/notifications", tok, nil).want(t, http.StatusOK)
				got := list(t, r.Body, "notifications")
				slices.Reverse(got) // the list is newest first
				var types []string
				for _, n := range got {
					wantNotification(t, n)
					types = append(types, str(t, n, "type"))
					data := object(t, n, "data")
					if integer(t, data, "booking_id") != booking || integer(t, data, "station_id") != sid {
						t.Errorf("%s data %v, want booking %d at station %d", n["type"], data, booking, sid)
					}
					if n["read_at"] != nil {
						t.Errorf("%s is already read", n["type"])
					}
				}
				if fmt.Sprint(types) != fmt.Sprint(tt.want) {
					t.Fatalf("notifications %v, want %v", types, tt.want)
				}
				if info, ok := object(t, got[0], "data")["battery_info"].(map[string]any); !ok || integer(t, info, "id") != bat {
					t.Errorf("booking_confirmed data lacks battery_info of battery %d: %v", bat, got[0]["data"])
				}
				u := e.do(t, http.MethodGet, "/api/v1/notifications?unread=true", tok, nil).want(t, http.StatusOK)
				if n := len(list(t, u.Body, "notifications")); n != len(tt.want) {
					t.Errorf("%d unread, want %d", n, len(tt.want))
				}
			})
		}
	})
}
