package api_test

import (
	"fmt"
	"net/http"
	"testing"
)

func TestStationList(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, _ := e.newAdmin(t)
		empty := e.do(t, http.MethodGet, "/api/v1/stations", "", nil).want(t, http.StatusOK)
		if got := list(t, empty.Body, "stations"); len(got) != 0 {
			t.Fatalf("fresh database lists %d stations", len(got))
		}
		ids := make([]int64, 5)
		for i := range ids {
			ids[i] = e.newStation(t, admin)
		}
		e.addBattery(t, admin, ids[0], 90)
		e.addBattery(t, admin, ids[0], 20)

		t.Run("all in id order with counts", func(t *testing.T) {
			r := e.do(t, http.MethodGet, "/api/v1/stations", "", nil).want(t, http.StatusOK)
			got := list(t, r.Body, "stations")
			if len(got) != len(ids) {
				t.Fatalf("%d stations, want %d", len(got), len(ids))
			}
			for i, s := range got {
				wantStation(t, s)
				if id(t, s, "id") != ids[i] {
					t.Errorf("stations[%d].id = %v, want %d", i, s["id"], ids[i])
				}
			}
			if c := (counts{integer(t, got[0], "available_batteries"), integer(t, got[0], "booked_batteries"),
				integer(t, got[0], "charging_batteries"), integer(t, got[0], "total_batteries")}); c != (counts{1, 0, 1, 2}) {
				t.Errorf("counts %+v, want 1 available, 1 charging, 2 total", c)
			}
			if r.Body["next_cursor"] != nil {
				t.Errorf("next_cursor %v on the last page, want null", r.Body["next_cursor"])
			}
		})

		t.Run("pages", func(t *testing.T) {
			// 5 stations: pages of 1 and 5 end exactly full, and the last
			// page must still say so (null), not send the client to an
			// empty one.
			for _, limit := range []int{1, 2, 5} {
				var seen []int64
				path := fmt.Sprintf("/api/v1/stations?limit=%d", limit)
				pages := 0
				for ; ; pages++ {
					if pages > len(ids) {
						t.Fatalf("limit %d: pagination does not end; seen %v", limit, seen)
					}
					r := e.do(t, http.MethodGet, path, "", nil).want(t, http.StatusOK)
					got := list(t, r.Body, "stations")
					if len(got) == 0 || len(got) > limit {
						t.Fatalf("limit %d: page of %d", limit, len(got))
					}
					for _, s := range got {
						seen = append(seen, id(t, s, "id"))
					}
					cur, ok := r.Body["next_cursor"].(string)
					if !ok {
						if r.Body["next_cursor"] != nil {
							t.Fatalf("next_cursor %T %v, want a string or null", r.Body["next_cursor"], r.Body["next_cursor"])
						}
						break
					}
					path = fmt.Sprintf("/api/v1/stations?limit=%d&cursor=%s", limit, cur)
				}
				if fmt.Sprint(seen) != fmt.Sprint(ids) {
					t.Fatalf("limit %d: paged through %v, want %v", limit, seen, ids)
				}
				if want := (len(ids) + limit - 1) / limit; pages+1 != want {
					t.Errorf("limit %d: %d pages, want %d", limit, pages+1, want)
				}
			}
		})

		tests := []struct {
			name  string
			when  string
			wantS int
			wantC string
		}{
			{"limit zero", "?limit=0", http.StatusUnprocessableEntity, "validation_failed"},
			{"limit too big", "?limit=201", http.StatusUnprocessableEntity, "validation_failed"},
			{"limit not a number", "?limit=ten", http.StatusUnprocessableEntity, "validation_failed"},
			{"cursor not a number", "?cursor=abc", http.StatusBadRequest, "invalid_cursor"},
			{"cursor negative", "?cursor=-1", http.StatusBadRequest, "invalid_cursor"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ev := wantError(t, e.do(t, http.MethodGet, "/api/v1/stations"+tt.when, "", nil), tt.wantS, tt.wantC)
				if tt.wantC == "validation_failed" {
					if f, _ := ev["fields"].(map[string]any); f["limit"] == nil {
						t.Errorf("fields do not name limit: %v", ev)
					}
				}
			})
		}
	})
}

func TestStationGet(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, _ := e.newAdmin(t)
		sid := e.newStation(t, admin)
		user, _ := e.newUser(t)

		tests := []struct {
			name  string
			given string // token
			when  string
			want  int
		}{
			{"anonymous", "", fmt.Sprint(sid), http.StatusOK},
			{"user", user, fmt.Sprint(sid), http.StatusOK},
			{"unknown", "", fmt.Sprint(sid + 1000), http.StatusNotFound},
			{"non-numeric", "", "abc", http.StatusNotFound},
			{"zero", "", "0", http.StatusNotFound},
			{"negative", "", "-1", http.StatusNotFound},
			{"too large", "", "99999999999999999999", http.StatusNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := e.do(t, http.MethodGet, "/api/v1/stations/"+tt.when, tt.given, nil)
				if tt.want != http.StatusOK {
					wantError(t, r, tt.want, "not_found")
					return
				}
				r.want(t, http.StatusOK)
				wantStation(t, r.Body)
				if id(t, r.Body, "id") != sid {
					t.Fatalf("id %v, want %d", r.Body["id"], sid)
				}
			})
		}
	})
}

func TestStationCreate(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, _ := e.newAdmin(t)
		user, _ := e.newUser(t)
		valid := map[string]any{"name": "Central", "address": "1 Main St", "latitude": 52.52, "longitude": 13.405}
		with := func(k string, v any) map[string]any {
			m := map[string]any{}
			for k, v := range valid {
				m[k] = v
			}
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
			return m
		}

		tests := []struct {
			name  string
			given string // token
			when  any
			want  func(t *testing.T, r response)
		}{
			{
				name: "created open", given: admin, when: valid,
				want: func(t *testing.T, r response) {
					r.want(t, http.StatusCreated)
					wantStation(t, r.Body)
					if r.Body["name"] != "Central" || r.Body["address"] != "1 Main St" || r.Body["status"] != "open" {
						t.Errorf("station %s", r.Raw)
					}
					if r.Body["latitude"].(interface{ String() string }).String() != "52.52" {
						t.Errorf("latitude %v", r.Body["latitude"])
					}
					if integer(t, r.Body, "total_batteries") != 0 {
						t.Errorf("new station has batteries: %s", r.Raw)
					}
					got := e.station(t, id(t, r.Body, "id"))
					if got["name"] != "Central" {
						t.Errorf("GET after create: %v", got)
					}
				},
			},
			{
				name: "created closed", given: admin, when: with("status", "closed"),
				want: func(t *testing.T, r response) {
					r.want(t, http.StatusCreated)
					if r.Body["status"] != "closed" {
						t.Errorf("status %v, want closed", r.Body["status"])
					}
				},
			},
			{
				name: "without address", given: admin, when: with("address", nil),
				want: func(t *testing.T, r response) { wantFields(t, r, "address") },
			},
			{
				name: "blank address", given: admin, when: with("address", "  "),
				want: func(t *testing.T, r response) { wantFields(t, r, "address") },
			},
			{
				name: "user", given: user, when: valid,
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusForbidden, "forbidden") },
			},
			{
				name: "anonymous", when: valid,
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusUnauthorized, "unauthorized") },
			},
			{
				name: "missing fields", given: admin, when: map[string]any{},
				want: func(t *testing.T, r response) { wantFields(t, r, "name", "address", "latitude", "longitude") },
			},
			{
				name: "blank name", given: admin, when: with("name", "   "),
				want: func(t *testing.T, r response) { wantFields(t, r, "name") },
			},
			{
				name: "coordinates out of range", given: admin, when: with("latitude", 91.0),
				want: func(t *testing.T, r response) { wantFields(t, r, "latitude") },
			},
			{
				name: "longitude out of range", given: admin, when: with("longitude", -180.5),
				want: func(t *testing.T, r response) { wantFields(t, r, "longitude") },
			},
			{
				name: "bad status", given: admin, when: with("status", "broken"),
				want: func(t *testing.T, r response) { wantFields(t, r, "status") },
			},
			{
				name: "empty status", given: admin, when: with("status", ""),
				want: func(t *testing.T, r response) { wantFields(t, r, "status") },
			},
			{
				name: "latitude as a string", given: admin, when: with("latitude", "52.5"),
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusBadRequest, "invalid_request") },
			},
			{
				name: "unknown field", given: admin, when: with("capacity", 10),
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusBadRequest, "invalid_request") },
			},
			{
				name: "a field given twice", given: admin,
				when: `{"name":"A","address":"1 Main St","latitude":1,"longitude":2,"name":"B"}`,
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusBadRequest, "invalid_request") },
			},
			{
				// encoding/json alone would read NAME as name.
				name: "a field name in another case", given: admin,
				when: map[string]any{"NAME": "Upper", "address": "1 Main St", "latitude": 1, "longitude": 2},
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusBadRequest, "invalid_request") },
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tt.want(t, e.do(t, http.MethodPost, "/api/v1/stations", tt.given, tt.when))
			})
		}
	})
}

func TestStationUpdate(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, _ := e.newAdmin(t)
		user, _ := e.newUser(t)

		tests := []struct {
			name  string
			given string // token
			when  any
			want  func(t *testing.T, before, after map[string]any, r response)
		}{
			{
				name: "name", given: admin, when: map[string]any{"name": "Renamed"},
				want: func(t *testing.T, before, after map[string]any, r response) {
					r.want(t, http.StatusOK)
					wantStation(t, r.Body)
					if r.Body["name"] != "Renamed" || after["name"] != "Renamed" {
						t.Errorf("name not changed: %s", r.Raw)
					}
					if r.Body["address"] != before["address"] || r.Body["status"] != before["status"] {
						t.Errorf("other fields changed: %v -> %s", before, r.Raw)
					}
				},
			},
			{
				name: "address and coordinates", given: admin, when: map[string]any{"address": "2 Side St", "latitude": -33.9, "longitude": 151.2},
				want: func(t *testing.T, before, after map[string]any, r response) {
					r.want(t, http.StatusOK)
					if after["address"] != "2 Side St" || fmt.Sprint(after["latitude"]) != "-33.9" || fmt.Sprint(after["longitude"]) != "151.2" {
						t.Errorf("not changed: %v", after)
					}
					if after["name"] != before["name"] {
						t.Errorf("name changed: %v", after["name"])
					}
				},
			},
			{
				name: "status and message", given: admin, when: map[string]any{"status": "maintenance", "message": "back at noon"},
				want: func(t *testing.T, before, after map[string]any, r response) {
					r.want(t, http.StatusOK)
					if after["status"] != "maintenance" {
						t.Errorf("status %v, want maintenance", after["status"])
					}
					if m, ok := after["message"]; ok && m != "back at noon" {
						t.Errorf("message %v", m)
					}
				},
			},
			{
				name: "closed", given: admin, when: map[string]any{"status": "closed"},
				want: func(t *testing.T, before, after map[string]any, r response) {
					r.want(t, http.StatusOK)
					if after["status"] != "closed" {
						t.Errorf("status %v, want closed", after["status"])
					}
				},
			},
			{
				name: "bad status", given: admin, when: map[string]any{"status": "gone"},
				want: func(t *testing.T, before, after map[string]any, r response) {
					wantFields(t, r, "status")
					if after["status"] != before["status"] {
						t.Errorf("a refused patch changed the status")
					}
				},
			},
			{
				name: "empty name", given: admin, when: map[string]any{"name": " "},
				want: func(t *testing.T, before, after map[string]any, r response) { wantFields(t, r, "name") },
			},
			{
				name: "empty address", given: admin, when: map[string]any{"address": ""},
				want: func(t *testing.T, before, after map[string]any, r response) { wantFields(t, r, "address") },
			},
			{
				name: "nothing to change", given: admin, when: map[string]any{},
				want: func(t *testing.T, before, after map[string]any, r response) {
					wantError(t, r, http.StatusUnprocessableEntity, "validation_failed")
					if after["updated_at"] != before["updated_at"] {
						t.Errorf("an empty patch touched the station: updated_at %v -> %v", before["updated_at"], after["updated_at"])
					}
				},
			},
			{
				name: "latitude out of range", given: admin, when: map[string]any{"latitude": 100},
				want: func(t *testing.T, before, after map[string]any, r response) { wantFields(t, r, "latitude") },
			},
			{
				name: "unknown field", given: admin, when: map[string]any{"total_batteries": 10},
				want: func(t *testing.T, before, after map[string]any, r response) {
					wantError(t, r, http.StatusBadRequest, "invalid_request")
				},
			},
			{
				name: "user", given: user, when: map[string]any{"name": "Mine"},
				want: func(t *testing.T, before, after map[string]any, r response) {
					wantError(t, r, http.StatusForbidden, "forbidden")
					if after["name"] != before["name"] {
						t.Errorf("a user renamed the station")
					}
				},
			},
			{
				name: "anonymous", when: map[string]any{"name": "Mine"},
				want: func(t *testing.T, before, after map[string]any, r response) {
					wantError(t, r, http.StatusUnauthorized, "unauthorized")
				},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				sid := e.newStation(t, admin)
				before := e.station(t, sid)
				r := e.do(t, http.MethodPatch, fmt.Sprintf("/api/v1/stations/%d", sid), tt.given, tt.when)
				tt.want(t, before, e.station(t, sid), r)
			})
		}

		t.Run("unknown station", func(t *testing.T) {
			wantError(t, e.do(t, http.MethodPatch, "/api/v1/stations/987654", admin, map[string]any{"name": "X"}), http.StatusNotFound, "not_found")
			wantError(t, e.do(t, http.MethodPatch, "/api/v1/stations/abc", admin, map[string]any{"name": "X"}), http.StatusNotFound, "not_found")
		})
	})
}
