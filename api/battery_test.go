package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestBatteryList(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, _ := e.newAdmin(t)
		sid := e.newStation(t, admin)
		other := e.newStation(t, admin)
		b1, _ := e.addBattery(t, admin, sid, 100)
		b2, _ := e.addBattery(t, admin, sid, 10)
		e.addBattery(t, admin, other, 50)
		empty := e.newStation(t, admin)

		tests := []struct {
			name  string
			given int64 // station
			when  string
			want  []int64 // nil: want 404
		}{
			{"in id order", sid, "", []int64{b1, b2}},
			{"first page", sid, "?limit=1", []int64{b1}},
			{"after cursor", sid, fmt.Sprintf("?cursor=%d", b1), []int64{b2}},
			{"no batteries", empty, "", []int64{}},
			{"unknown station", sid + 1000, "", nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := e.do(t, http.MethodGet, fmt.Sprintf("/api/v1/stations/%d/batteries%s", tt.given, tt.when), "", nil)
				if tt.want == nil {
					wantError(t, r, http.StatusNotFound, "not_found")
					return
				}
				r.want(t, http.StatusOK)
				got := list(t, r.Body, "batteries")
				if len(got) != len(tt.want) {
					t.Fatalf("%d batteries, want %d: %s", len(got), len(tt.want), r.Raw)
				}
				for i, b := range got {
					wantBattery(t, b)
					if id(t, b, "id") != tt.want[i] || id(t, b, "station_id") != tt.given {
						t.Errorf("batteries[%d] = %v, want id %d at station %d", i, b, tt.want[i], tt.given)
					}
				}
			})
		}
		t.Run("non-numeric station", func(t *testing.T) {
			wantError(t, e.do(t, http.MethodGet, "/api/v1/stations/x/batteries", "", nil), http.StatusNotFound, "not_found")
		})
		t.Run("bad cursor", func(t *testing.T) {
			wantError(t, e.do(t, http.MethodGet, fmt.Sprintf("/api/v1/stations/%d/batteries?cursor=z", sid), "", nil), http.StatusBadRequest, "invalid_cursor")
		})
	})
}

func TestBatteryCreate(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, _ := e.newAdmin(t)
		user, _ := e.newUser(t)
		sid := e.newStation(t, admin)
		_, taken := e.addBattery(t, admin, sid, 50)

		tests := []struct {
			name  string
			given string // token
			when  any
			want  func(t *testing.T, r response)
		}{
			{
				name: "charged is available", given: admin, when: map[string]any{"serial_number": "SN-A", "charge_percent": 80},
				want: func(t *testing.T, r response) { wantNewBattery(t, r, sid, "SN-A", 80, "available") },
			},
			{
				name: "full is available", given: admin, when: map[string]any{"serial_number": "SN-F", "charge_percent": 100, "capacity_kwh": 3.5},
				want: func(t *testing.T, r response) { wantNewBattery(t, r, sid, "SN-F", 100, "available") },
			},
			{
				name: "under ready is charging", given: admin, when: map[string]any{"serial_number": "SN-C", "charge_percent": 79},
				want: func(t *testing.T, r response) { wantNewBattery(t, r, sid, "SN-C", 79, "charging") },
			},
			{
				name: "empty is charging", given: admin, when: map[string]any{"serial_number": "SN-E", "charge_percent": 0},
				want: func(t *testing.T, r response) { wantNewBattery(t, r, sid, "SN-E", 0, "charging") },
			},
			{
				name: "serial taken", given: admin, when: map[string]any{"serial_number": taken, "charge_percent": 90},
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusConflict, "invalid_state") },
			},
			{
				name: "charge over 100", given: admin, when: map[string]any{"serial_number": "SN-X", "charge_percent": 101},
				want: func(t *testing.T, r response) { wantFields(t, r, "charge_percent") },
			},
			{
				name: "charge negative", given: admin, when: map[string]any{"serial_number": "SN-Y", "charge_percent": -1},
				want: func(t *testing.T, r response) { wantFields(t, r, "charge_percent") },
			},
			{
				name: "missing fields", given: admin, when: map[string]any{},
				want: func(t *testing.T, r response) { wantFields(t, r, "serial_number", "charge_percent") },
			},
			{
				name: "blank serial", given: admin, when: map[string]any{"serial_number": "  ", "charge_percent": 50},
				want: func(t *testing.T, r response) { wantFields(t, r, "serial_number") },
			},
			{
				name: "bad capacity", given: admin, when: map[string]any{"serial_number": "SN-Z", "charge_percent": 50, "capacity_kwh": 0},
				want: func(t *testing.T, r response) { wantFields(t, r, "capacity_kwh") },
			},
			{
				name: "fractional charge", given: admin, when: map[string]any{"serial_number": "SN-Q", "charge_percent": 50.5},
				want: func(t *testing.T, r response) {
					ev := wantError(t, r, http.StatusBadRequest, "invalid_request")
					if msg, _ := ev["message"].(string); !strings.Contains(msg, "whole number") {
						t.Errorf("message %q does not say a whole number is wanted", msg)
					}
				},
			},
			{
				name: "status cannot be set", given: admin, when: map[string]any{"serial_number": "SN-S", "charge_percent": 10, "status": "available"},
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusBadRequest, "invalid_request") },
			},
			{
				name: "user", given: user, when: map[string]any{"serial_number": "SN-U", "charge_percent": 50},
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusForbidden, "forbidden") },
			},
			{
				name: "anonymous", when: map[string]any{"serial_number": "SN-N", "charge_percent": 50},
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusUnauthorized, "unauthorized") },
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := e.counts(t, sid)
				r := e.do(t, http.MethodPost, fmt.Sprintf("/api/v1/stations/%d/batteries", sid), tt.given, tt.when)
				tt.want(t, r)
				after := e.counts(t, sid)
				if r.Status != http.StatusCreated && after != before {
					t.Errorf("a refused battery changed the counts: %+v -> %+v", before, after)
				}
				if r.Status == http.StatusCreated {
					wantDelta := counts{total: 1}
					if r.Body["status"] == "available" {
						wantDelta.available = 1
					} else {
						wantDelta.charging = 1
					}
					if got := after.minus(before); got != wantDelta {
						t.Errorf("counts moved by %+v, want %+v", got, wantDelta)
					}
				}
			})
		}
		t.Run("unknown station", func(t *testing.T) {
			r := e.do(t, http.MethodPost, "/api/v1/stations/987654/batteries", admin, map[string]any{"serial_number": e.serial(), "charge_percent": 50})
			wantError(t, r, http.StatusNotFound, "not_found")
		})
	})
}

func wantNewBattery(t *testing.T, r response, stationID int64, serial string, charge int64, status string) {
	t.Helper()
	r.want(t, http.StatusCreated)
	wantBattery(t, r.Body)
	if id(t, r.Body, "station_id") != stationID || r.Body["serial_number"] != serial ||
		integer(t, r.Body, "charge_percent") != charge || r.Body["status"] != status {
		t.Fatalf("battery %s, want %s at station %d, %d%%, %s", r.Raw, serial, stationID, charge, status)
	}
}

func (c counts) minus(o counts) counts {
	return counts{c.available - o.available, c.booked - o.booked, c.charging - o.charging, c.total - o.total}
}

func TestBatteryTelemetry(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, _ := e.newAdmin(t)
		user, _ := e.newUser(t)

		tests := []struct {
			name   string
			given  int // charge of a new battery at a new station
			token  string
			when   any
			status int
			want   string // battery status afterwards ("" for an error)
			code   string
		}{
			{name: "charged", given: 50, token: admin, when: map[string]any{"charge_percent": 80}, status: http.StatusOK, want: "available"},
			{name: "still charging", given: 50, token: admin, when: map[string]any{"charge_percent": 79}, status: http.StatusOK, want: "charging"},
			{name: "drained", given: 90, token: admin, when: map[string]any{"charge_percent": 30}, status: http.StatusOK, want: "charging"},
			{name: "maintenance", given: 90, token: admin, when: map[string]any{"status": "maintenance"}, status: http.StatusOK, want: "maintenance"},
			{name: "charge out of range", given: 50, token: admin, when: map[string]any{"charge_percent": 150}, status: http.StatusUnprocessableEntity, code: "validation_failed"},
			{name: "empty", given: 50, token: admin, when: map[string]any{}, status: http.StatusUnprocessableEntity, code: "validation_failed"},
			{name: "booked cannot be set", given: 50, token: admin, when: map[string]any{"status": "booked"}, status: http.StatusUnprocessableEntity, code: "validation_failed"},
			{name: "unknown status", given: 50, token: admin, when: map[string]any{"status": "lost"}, status: http.StatusUnprocessableEntity, code: "validation_failed"},
			{name: "user", given: 50, token: user, when: map[string]any{"charge_percent": 90}, status: http.StatusForbidden, code: "forbidden"},
			{name: "anonymous", given: 50, when: map[string]any{"charge_percent": 90}, status: http.StatusUnauthorized, code: "unauthorized"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				sid := e.newStation(t, admin)
				bid, _ := e.addBattery(t, admin, sid, tt.given)
				before := e.battery(t, sid, bid)
				r := e.do(t, http.MethodPatch, fmt.Sprintf("/api/v1/batteries/%d", bid), tt.token, tt.when)
				after := e.battery(t, sid, bid)
				if tt.code != "" {
					wantError(t, r, tt.status, tt.code)
					if fmt.Sprint(after) != fmt.Sprint(before) {
						t.Errorf("a refused patch changed the battery: %v -> %v", before, after)
					}
					return
				}
				r.want(t, tt.status)
				wantBattery(t, r.Body)
				if r.Body["status"] != tt.want || after["status"] != tt.want {
					t.Errorf("status %v (then %v), want %s", r.Body["status"], after["status"], tt.want)
				}
				if c, ok := tt.when.(map[string]any)["charge_percent"]; ok && integer(t, r.Body, "charge_percent") != int64(c.(int)) {
					t.Errorf("charge %v, want %v", r.Body["charge_percent"], c)
				}
				st := e.station(t, sid)
				wantCount := map[string]string{"available": "available_batteries", "charging": "charging_batteries"}
				for s, field := range wantCount {
					n := integer(t, st, field)
					if (s == tt.want) != (n == 1) {
						t.Errorf("station %s = %d with the battery %s", field, n, tt.want)
					}
				}
			})
		}

		t.Run("maintenance stays through charge readings", func(t *testing.T) {
			sid := e.newStation(t, admin)
			bid, _ := e.addBattery(t, admin, sid, 50)
			e.do(t, http.MethodPatch, fmt.Sprintf("/api/v1/batteries/%d", bid), admin, map[string]any{"status": "maintenance"}).want(t, http.StatusOK)
			r := e.do(t, http.MethodPatch, fmt.Sprintf("/api/v1/batteries/%d", bid), admin, map[string]any{"charge_percent": 95}).want(t, http.StatusOK)
			if r.Body["status"] != "maintenance" {
				t.Fatalf("status %v after a reading, want maintenance kept", r.Body["status"])
			}
			r = e.do(t, http.MethodPatch, fmt.Sprintf("/api/v1/batteries/%d", bid), admin, map[string]any{"status": "available"}).want(t, http.StatusOK)
			if r.Body["status"] != "available" {
				t.Fatalf("status %v, want available back from maintenance at 95%%", r.Body["status"])
			}
		})

		t.Run("unknown battery", func(t *testing.T) {
			wantError(t, e.do(t, http.MethodPatch, "/api/v1/batteries/987654", admin, map[string]any{"charge_percent": 90}), http.StatusNotFound, "not_found")
			wantError(t, e.do(t, http.MethodPatch, "/api/v1/batteries/abc", admin, map[string]any{"charge_percent": 90}), http.StatusNotFound, "not_found")
		})
	})
}
