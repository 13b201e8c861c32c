package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"
)

// TestStationsNear: ?near= orders by distance and adds distance_m,
// radius_m limits, available=true keeps bookable stations with a ready
// pack, pages walk the list by cursor, and bad input is 422.
func TestStationsNear(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, _ := e.newAdmin(t)
		// Around Berlin's Alexanderplatz (52.5219, 13.4132), at known
		// distances north of it: 0.1°, 0.01°, 0.05°, 1° of latitude.
		at := func(name string, dlat float64) int64 {
			r := e.do(t, http.MethodPost, "/api/v1/stations", admin, map[string]any{
				"name": name, "address": "Berlin", "latitude": 52.5219 + dlat, "longitude": 13.4132,
			}).want(t, http.StatusCreated)
			return id(t, r.Body, "id")
		}
		far, near, mid, away := at("far", 0.1), at("near", 0.01), at("mid", 0.05), at("away", 1)
		e.addBattery(t, admin, near, 20) // charging only
		e.addBattery(t, admin, mid, 95)
		e.addBattery(t, admin, far, 95)
		closed := "closed"
		e.do(t, http.MethodPatch, fmt.Sprintf("/api/v1/stations/%d", far), admin, map[string]any{"status": closed}).want(t, http.StatusOK)

		ids := func(path string) ([]int64, []float64, any) {
			r := e.do(t, http.MethodGet, path, "", nil).want(t, http.StatusOK)
			var out []int64
			var dist []float64
			for _, s := range list(t, r.Body, "stations") {
				wantStation(t, s)
				out = append(out, id(t, s, "id"))
				d, err := strconv.ParseFloat(fmt.Sprint(s["distance_m"]), 64)
				if err != nil {
					t.Fatalf("%s: distance_m %v", path, s["distance_m"])
				}
				dist = append(dist, d)
			}
			return out, dist, r.Body["next_cursor"]
		}
		got, dist, next := ids("/api/v1/stations?near=52.5219,13.4132")
		if fmt.Sprint(got) != fmt.Sprint([]int64{near, mid, far, away}) || next != nil {
			t.Fatalf("near: %v (next %v), want %v", got, next, []int64{near, mid, far, away})
		}
		// 0.01° of latitude is 1,112 m.
		if dist[0] < 1100 || dist[0] > 1125 || dist[3] < 110_000 || dist[3] > 112_000 {
			t.Fatalf("distances %v", dist)
		}
		if got, _, _ := ids("/api/v1/stations?near=52.5219,13.4132&radius_m=6000"); fmt.Sprint(got) != fmt.Sprint([]int64{near, mid}) {
			t.Fatalf("radius 6 km: %v, want %v", got, []int64{near, mid})
		}
		if got, _, _ := ids("/api/v1/stations?near=52.5219,13.4132&available=true"); fmt.Sprint(got) != fmt.Sprint([]int64{mid}) {
			t.Fatalf("available: %v, want only %d (open with a ready pack)", got, mid)
		}
		// Without near, available=true filters the id-ordered list.
		r := e.do(t, http.MethodGet, "/api/v1/stations?available=true", "", nil).want(t, http.StatusOK)
		if l := list(t, r.Body, "stations"); len(l) != 1 || id(t, l[0], "id") != mid {
			t.Fatalf("available without near: %s", r.Raw)
		} else if _, has := l[0]["distance_m"]; has {
			t.Fatalf("distance_m without near: %s", r.Raw)
		}

		// Pages of one walk the same order.
		var walked []int64
		path := "/api/v1/stations?near=52.5219,13.4132&limit=1"
		for i := 0; ; i++ {
			if i > 5 {
				t.Fatal("pages do not end")
			}
			page, _, next := ids(path)
			walked = append(walked, page...)
			if next == nil {
				break
			}
			path = "/api/v1/stations?near=52.5219,13.4132&limit=1&cursor=" + url.QueryEscape(next.(string))
		}
		if fmt.Sprint(walked) != fmt.Sprint([]int64{near, mid, far, away}) {
			t.Fatalf("paged: %v", walked)
		}

		for _, tc := range []struct {
			query  string
			fields []string
		}{
			{"near=91,0", []string{"near"}},
			{"near=0,181", []string{"near"}},
			{"near=52.5", []string{"near"}},
			{"near=abc,def", []string{"near"}},
			{"near=NaN,0", []string{"near"}},
			{"near=", []string{"near"}},
			{"near=1,2&radius_m=0", []string{"radius_m"}},
			{"near=1,2&radius_m=-5", []string{"radius_m"}},
			{"near=1,2&radius_m=lots", []string{"radius_m"}},
			{"near=1,2&radius_m=1e9", []string{"radius_m"}},
			{"radius_m=100", []string{"radius_m"}},
			{"near=1,2&available=maybe", []string{"available"}},
		} {
			wantFields(t, e.do(t, http.MethodGet, "/api/v1/stations?"+tc.query, "", nil), tc.fields...)
		}
		wantError(t, e.do(t, http.MethodGet, "/api/v1/stations?near=1,2&cursor=99999", "", nil), http.StatusBadRequest, "invalid_cursor")
	})
}

// TestStationPresence: a new station is online, seen at creation; one the
// sweep finds stale is offline and refuses bookings (409
// station_unavailable); a heartbeat (admin only) or battery telemetry
// brings it back online.
func TestStationPresence(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		admin, stationID, batteryID := e.readyStation(t)
		rider, _ := e.newUser(t)
		st := e.station(t, stationID)
		if st["presence"] != "online" {
			t.Fatalf("new station %v", st)
		}
		created, _ := time.Parse(time.RFC3339Nano, str(t, st, "last_seen_at"))
		if d := time.Since(created); d < 0 || d > time.Minute {
			t.Fatalf("last_seen_at %v, want its creation", created)
		}
		hb := fmt.Sprintf("/api/v1/stations/%d/heartbeat", stationID)
		wantError(t, e.do(t, http.MethodPost, hb, "", nil), http.StatusUnauthorized, "unauthorized")
		wantError(t, e.do(t, http.MethodPost, hb, rider, nil), http.StatusForbidden, "forbidden")
		wantError(t, e.do(t, http.MethodPost, "/api/v1/stations/99999/heartbeat", admin, nil), http.StatusNotFound, "not_found")
		e.do(t, http.MethodPost, hb, admin, nil).want(t, http.StatusNoContent)
		beat, _ := time.Parse(time.RFC3339Nano, str(t, e.station(t, stationID), "last_seen_at"))
		if !beat.After(created) {
			t.Fatalf("heartbeat left last_seen_at at %v", beat)
		}

		goOffline := func() {
			t.Helper()
			// Not heard from for a nanosecond: every station is stale.
			if n, err := e.store.MarkStaleStations(context.Background(), time.Nanosecond); err != nil || n != 1 {
				t.Fatalf("sweep marked %d, %v", n, err)
			}
			if p := e.station(t, stationID)["presence"]; p != "offline" {
				t.Fatalf("after the sweep presence %v", p)
			}
			wantError(t, e.do(t, http.MethodPost, "/api/v1/bookings", rider, map[string]any{"station_id": stationID}),
				http.StatusConflict, "station_unavailable")
		}
		goOffline()
		e.do(t, http.MethodPost, hb, admin, nil).want(t, http.StatusNoContent)
		if p := e.station(t, stationID)["presence"]; p != "online" {
			t.Fatalf("after a heartbeat presence %v", p)
		}
		goOffline()
		// Telemetry counts as hearing from the station.
		e.do(t, http.MethodPatch, fmt.Sprintf("/api/v1/batteries/%d", batteryID), admin, map[string]any{"charge_percent": 96}).
			want(t, http.StatusOK)
		if p := e.station(t, stationID)["presence"]; p != "online" {
			t.Fatalf("after telemetry presence %v", p)
		}
		e.book(t, rider, stationID)
	})
}
