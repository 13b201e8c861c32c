package main

import (
	"fmt"
	"strconv"
	"testing"

	"batteryswap/sseclient"
	"batteryswap/store/storetest"
	"batteryswap/stream/redistest"
)

// TestRedisRestartLosesNothing: two instances on one PostgreSQL and a Redis
// that is killed and restarted. Changes committed while Redis is down reach
// a subscriber that stayed connected to the other instance, and one that
// resumes with its cursor, exactly once and in order; live delivery goes on.
func TestRedisRestartLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-instance test")
	}
	rd := redistest.Start(t)
	db := storetest.URL(t, "postgres")
	a := startInstance(t, testConfig(t, db, rd.URL()))
	b := startInstance(t, testConfig(t, db, rd.URL()))
	w := setup(t, a, a.app.store)
	stay := subscribeSSE(t, b.url+"/stream/stations", sseclient.Options{})
	next(t, stay)
	cursor := next(t, stay).ID

	rd.Kill(t)
	charges := []int{40, 90, 30, 85}
	for _, c := range charges {
		if code := call(t, "PATCH", a.url+fmt.Sprintf("/api/v1/batteries/%d", w.battery), w.admin, map[string]int{"charge_percent": c}, nil); code != 200 {
			t.Fatalf("telemetry while Redis is down: %d", code)
		}
	}
	rd.Restart(t)

	for i := range charges {
		if e := next(t, stay); e.ID != cursor+int64(i)+1 || e.Type != "inventory_update" {
			t.Fatalf("after the restart the connected subscriber got %+v, want id %d", e, cursor+int64(i)+1)
		}
	}
	resumed := subscribeSSE(t, b.url+"/stream/stations", sseclient.Options{LastEventID: strconv.FormatInt(cursor, 10)})
	for i := range charges {
		if e := next(t, resumed); e.ID != cursor+int64(i)+1 {
			t.Fatalf("resumed subscriber got %+v, want id %d", e, cursor+int64(i)+1)
		}
	}
	call(t, "PATCH", a.url+fmt.Sprintf("/api/v1/batteries/%d", w.battery), w.admin, map[string]int{"charge_percent": 20}, nil)
	want := cursor + int64(len(charges)) + 1
	for _, ch := range []<-chan ev{stay, resumed} {
		if e := next(t, ch); e.ID != want {
			t.Fatalf("live after the restart: %+v, want id %d", e, want)
		}
	}
}
