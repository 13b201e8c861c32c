package store_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"batteryswap/models"
)

// TestStationPresence: a new station is online, seen at creation; the
// sweep marks it offline once it has not been heard from for the stale
// time (not before), with one station_status carrying presence even when
// sweeps race; bookings are then refused; a heartbeat or telemetry brings
// it back online with another station_status, and plain heartbeats of an
// online station announce nothing.
func TestStationPresence(t *testing.T) {
	eachDialect(t, func(t *testing.T, f *fixture) {
		const stale = 2 * time.Minute
		st := f.station("Dock", 95, 95)
		other := f.station("Quay", 95)
		if st.Presence != models.PresenceOnline || !st.LastSeenAt.Equal(f.clock.Now()) {
			t.Fatalf("new station: presence %q, last seen %v", st.Presence, st.LastSeenAt)
		}
		rider := f.user("presence@example.com")
		mark := f.head()

		f.clock.Advance(stale - time.Second)
		if err := f.s.StationHeartbeat(f.ctx, other.ID); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(time.Second)
		if n, err := f.s.MarkStaleStations(f.ctx, stale); err != nil || n != 0 {
			t.Fatalf("at exactly the stale time: marked %d, %v", n, err)
		}
		f.clock.Advance(time.Millisecond)
		var wg sync.WaitGroup
		marked := make([]int, 4)
		for i := range marked {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := f.s.MarkStaleStations(f.ctx, stale)
				if err != nil {
					t.Error(err)
				}
				marked[i] = n
			}()
		}
		wg.Wait()
		if total := marked[0] + marked[1] + marked[2] + marked[3]; total != 1 {
			t.Fatalf("racing sweeps marked %v, want one station once", marked)
		}
		got, _ := f.s.FindStationByID(f.ctx, st.ID)
		if got.Presence != models.PresenceOffline || got.Available != 2 {
			t.Fatalf("stale station %+v", got)
		}
		if o, _ := f.s.FindStationByID(f.ctx, other.ID); o.Presence != models.PresenceOnline {
			t.Fatalf("the station heard from went %s", o.Presence)
		}
		_, _, err := f.s.CreateBooking(f.ctx, rider.ID, st.ID, "")
		wantCode(t, err, models.CodeStationUnavailable)

		if err := f.s.StationHeartbeat(f.ctx, st.ID); err != nil {
			t.Fatal(err)
		}
		if err := f.s.StationHeartbeat(f.ctx, st.ID); err != nil { // online already: no event
			t.Fatal(err)
		}
		f.clock.Advance(stale + time.Second)
		if n, _ := f.s.MarkStaleStations(f.ctx, stale); n != 2 {
			t.Fatalf("both silent: marked %d", n)
		}
		// Telemetry is hearing from the station too.
		charge := 50
		bats, _ := f.s.ListBatteries(f.ctx, st.ID, models.Page{Limit: 10})
		if _, err := f.s.UpdateBattery(f.ctx, bats[0].ID, models.BatteryPatch{ChargePercent: &charge}); err != nil {
			t.Fatal(err)
		}
		if b, _, err := f.s.CreateBooking(f.ctx, rider.ID, st.ID, ""); err != nil || b.Status != models.BookingReady {
			t.Fatalf("booking after telemetry: %+v, %v", b, err)
		}
		wantCode(t, f.s.StationHeartbeat(f.ctx, 9999), models.CodeNotFound)

		var seen []string
		for _, e := range f.events(mark, models.StationTopic(st.ID)) {
			if e.Type != models.EventStationStatus {
				continue
			}
			var p map[string]any
			if err := json.Unmarshal(e.Payload, &p); err != nil {
				t.Fatal(err)
			}
			if p["status"] != "open" || p["station_name"] != "Dock" {
				t.Fatalf("station_status %v", p)
			}
			seen = append(seen, p["presence"].(string))
		}
		if want := "[offline online offline online]"; fmt.Sprint(seen) != want {
			t.Fatalf("station_status presences %v, want %s", seen, want)
		}
	})
}

// TestHeartbeatIsNotAChange: a heartbeat of an online station moves
// last_seen_at only; the station's updated_at stays that of its last
// change.
func TestHeartbeatIsNotAChange(t *testing.T) {
	eachDialect(t, func(t *testing.T, f *fixture) {
		st := f.station("Still")
		f.clock.Advance(time.Minute)
		if err := f.s.StationHeartbeat(f.ctx, st.ID); err != nil {
			t.Fatal(err)
		}
		got, err := f.s.FindStationByID(f.ctx, st.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !got.UpdatedAt.Equal(st.UpdatedAt) || !got.LastSeenAt.Equal(f.clock.Now()) {
			t.Fatalf("after a heartbeat: updated_at %v (was %v), last_seen_at %v (now %v)", got.UpdatedAt, st.UpdatedAt, got.LastSeenAt, f.clock.Now())
		}
	})
}
