package store_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"batteryswap/models"
	"batteryswap/store"
	"batteryswap/store/storetest"
)

// clock is an injected, settable clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type fixture struct {
	t     *testing.T
	s     *store.Store
	clock *clock
	ctx   context.Context
}

func eachDialect(t *testing.T, fn func(t *testing.T, f *fixture)) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			c := newClock()
			s := storetest.Open(t, d, store.Options{Now: c.Now, BookingHold: 15 * time.Minute, BookingWarn: 3 * time.Minute})
			fn(t, &fixture{t: t, s: s, clock: c, ctx: context.Background()})
		})
	}
}

func (f *fixture) user(email string) *models.User {
	f.t.Helper()
	u, err := f.s.CreateUser(f.ctx, email, "Rider "+email, "hash", models.RoleUser)
	if err != nil {
		f.t.Fatalf("create user: %v", err)
	}
	return u
}

func (f *fixture) station(name string, charges ...int) *models.Station {
	f.t.Helper()
	st, err := f.s.CreateStation(f.ctx, models.StationInput{Name: name, Address: "1 Main St", Latitude: 1, Longitude: 2})
	if err != nil {
		f.t.Fatalf("create station: %v", err)
	}
	for i, c := range charges {
		c := c
		if _, err := f.s.AddBattery(f.ctx, st.ID, models.BatteryInput{SerialNumber: fmt.Sprintf("%s-%d", name, i), ChargePercent: &c}); err != nil {
			f.t.Fatalf("add battery: %v", err)
		}
	}
	return st
}

// events sequences everything in the outbox and returns the events after cursor.
func (f *fixture) events(after int64, topics ...models.Topic) []models.Event {
	f.t.Helper()
	lease, err := f.s.AcquireRelay(f.ctx)
	if err != nil {
		f.t.Fatalf("acquire relay: %v", err)
	}
	defer lease.Release()
	for {
		evs, err := lease.Pending(f.ctx, 1000)
		if err != nil {
			f.t.Fatalf("pending: %v", err)
		}
		if len(evs) == 0 {
			break
		}
		if err := lease.MarkPublished(f.ctx, evs[len(evs)-1].Seq); err != nil {
			f.t.Fatal(err)
		}
	}
	if len(topics) == 0 {
		topics = []models.Topic{models.TopicStations}
	}
	evs, err := f.s.EventsAfter(f.ctx, after, topics, 10000)
	if err != nil {
		f.t.Fatalf("events after: %v", err)
	}
	return evs
}

func (f *fixture) head() int64 {
	f.t.Helper()
	f.events(0, models.TopicStations)
	last, _, err := f.s.Head(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	return last
}

func types(evs []models.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

func payload(t *testing.T, e models.Event) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(e.Data(), &m); err != nil {
		t.Fatalf("payload of %s: %v", e.Type, err)
	}
	return m
}

func wantCode(t *testing.T, err error, code models.Code) {
	t.Helper()
	if got := models.ErrorCode(err); got != code {
		t.Fatalf("error = %v (code %s), want code %s", err, got, code)
	}
}

func (f *fixture) checkInventory(stationID int64, want models.Inventory) {
	f.t.Helper()
	st, err := f.s.FindStationByID(f.ctx, stationID)
	if err != nil {
		f.t.Fatal(err)
	}
	if st.Inventory != want {
		f.t.Fatalf("inventory = %+v, want %+v", st.Inventory, want)
	}
	bats, err := f.s.ListBatteries(f.ctx, stationID, models.Page{Limit: 200})
	if err != nil {
		f.t.Fatal(err)
	}
	var got models.Inventory
	for _, b := range bats {
		got.Total++
		switch b.Status {
		case models.BatteryAvailable:
			got.Available++
		case models.BatteryBooked:
			got.Booked++
		case models.BatteryCharging:
			got.Charging++
		}
	}
	if got != want {
		f.t.Fatalf("battery rows say %+v, want %+v", got, want)
	}
}

func TestBookingLifecycle(t *testing.T) {
	eachDialect(t, func(t *testing.T, f *fixture) {
		rider := f.user("rider@example.com")
		st := f.station("Alpha", 95, 50)
		f.checkInventory(st.ID, models.Inventory{Available: 1, Charging: 1, Total: 2})
		start := f.head()

		b, replayed, err := f.s.CreateBooking(f.ctx, rider.ID, st.ID, "")
		if err != nil || replayed {
			t.Fatalf("book: %v %v", err, replayed)
		}
		if b.Status != models.BookingReady || !b.ExpiresAt.Equal(f.clock.Now().Add(15*time.Minute)) {
			t.Fatalf("booking = %+v", b)
		}
		f.checkInventory(st.ID, models.Inventory{Booked: 1, Charging: 1, Total: 2})
		stEvents := f.events(start, models.TopicStations)
		if got := strings.Join(types(stEvents), ","); got != "battery_booked,inventory_update" {
			t.Fatalf("station events = %s", got)
		}
		inv := payload(t, stEvents[1])
		if inv["action"] != "booked" || inv["available_batteries"] != 0.0 || inv["booked_batteries"] != 1.0 || inv["total_batteries"] != 2.0 {
			t.Fatalf("inventory_update = %v", inv)
		}
		userEvents := f.events(start, models.UserTopic(rider.ID))
		if got := strings.Join(types(userEvents), ","); got != "booking_confirmed,booking_ready" {
			t.Fatalf("user events = %s", got)
		}
		conf := payload(t, userEvents[0])
		info, _ := conf["battery_info"].(map[string]any)
		if conf["booking_id"] != float64(b.ID) || info["serial_number"] != "Alpha-0" || info["charge_percent"] != 95.0 {
			t.Fatalf("booking_confirmed = %v", conf)
		}

		// One active booking per user; the failed attempt writes nothing.
		mid := f.head()
		_, _, err = f.s.CreateBooking(f.ctx, rider.ID, st.ID, "")
		wantCode(t, err, models.CodeActiveBookingExists)
		if evs := f.events(mid, models.TopicStations, models.UserTopic(rider.ID)); len(evs) != 0 {
			t.Fatalf("a refused booking wrote events: %v", types(evs))
		}
		// Also where nothing is left to book, or the station is closed: the
		// booking the rider holds is the answer, not the station's state.
		empty := f.station("Empty")
		for _, status := range []models.StationStatus{models.StationOpen, models.StationClosed} {
			if _, err := f.s.UpdateStation(f.ctx, empty.ID, models.StationPatch{Status: &status}); err != nil {
				t.Fatal(err)
			}
			mid = f.head()
			_, _, err = f.s.CreateBooking(f.ctx, rider.ID, empty.ID, "")
			wantCode(t, err, models.CodeActiveBookingExists)
			if evs := f.events(mid, models.TopicStations, models.UserTopic(rider.ID)); len(evs) != 0 {
				t.Fatalf("a refused booking at a %s station wrote events: %v", status, types(evs))
			}
		}

		// Collect, handing in an unknown depleted pack.
		got, err := f.s.CollectBooking(f.ctx, b.ID, rider, &models.ReturnPack{SerialNumber: "OLD-1", ChargePercent: 12})
		if err != nil {
			t.Fatalf("collect: %v", err)
		}
		if got.Status != models.BookingCollected || got.ReturnedBatteryID == nil {
			t.Fatalf("collected booking = %+v", got)
		}
		f.checkInventory(st.ID, models.Inventory{Charging: 2, Total: 2})
		evs := f.events(mid, models.TopicStations, models.UserTopic(rider.ID))
		if got := strings.Join(types(evs), ","); got != "battery_collected,inventory_update,booking_collected" {
			t.Fatalf("collect events = %s", got)
		}
		col := payload(t, evs[0])
		if col["returned_battery_id"] != float64(*got.ReturnedBatteryID) || col["charging_batteries"] != 2.0 {
			t.Fatalf("battery_collected = %v", col)
		}
		bat, err := f.s.FindBatteryByID(f.ctx, b.BatteryID)
		if err != nil || bat.Status != models.BatteryCollected || bat.StationID != nil {
			t.Fatalf("collected battery = %+v %v", bat, err)
		}
		_, err = f.s.CollectBooking(f.ctx, b.ID, rider, nil)
		wantCode(t, err, models.CodeInvalidState)
	})
}

func TestChargingBookingTurnsReadyByTelemetry(t *testing.T) {
	eachDialect(t, func(t *testing.T, f *fixture) {
		rider := f.user("r@example.com")
		st := f.station("Beta", 40, 60)
		b, _, err := f.s.CreateBooking(f.ctx, rider.ID, st.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		if b.Status != models.BookingConfirmed {
			t.Fatalf("status = %s, want confirmed", b.Status)
		}
		bat, _ := f.s.FindBatteryByID(f.ctx, b.BatteryID)
		if bat.ChargePercent != 60 {
			t.Fatalf("booked the %d%% battery, want the fullest (60%%)", bat.ChargePercent)
		}
		_, err = f.s.CollectBooking(f.ctx, b.ID, rider, nil)
		wantCode(t, err, models.CodeBatteryNotReady)

		mid := f.head()
		c := 85
		if _, err := f.s.UpdateBattery(f.ctx, b.BatteryID, models.BatteryPatch{ChargePercent: &c}); err != nil {
			t.Fatal(err)
		}
		got, _ := f.s.FindBookingByID(f.ctx, b.ID)
		if got.Status != models.BookingReady {
			t.Fatalf("status after charge = %s", got.Status)
		}
		evs := f.events(mid, models.TopicStations, models.UserTopic(rider.ID))
		if got := strings.Join(types(evs), ","); got != "booking_ready" {
			t.Fatalf("events = %s", got)
		}
		// Telemetry on a free battery moves it between charging and available.
		other := f.otherBattery(st.ID, b.BatteryID)
		c = 90
		mid = f.head()
		if bt, err := f.s.UpdateBattery(f.ctx, other, models.BatteryPatch{ChargePercent: &c}); err != nil || bt.Status != models.BatteryAvailable {
			t.Fatalf("telemetry: %+v %v", bt, err)
		}
		evs = f.events(mid)
		if len(evs) != 1 || payload(t, evs[0])["action"] != "charged" {
			t.Fatalf("events = %v", types(evs))
		}
		booked := models.BatteryBooked
		_, err = f.s.UpdateBattery(f.ctx, other, models.BatteryPatch{Status: &booked})
		wantCode(t, err, models.CodeValidationFailed)
	})
}

// Telemetry that drops a ready booking's pack under READY_CHARGE puts the
// booking back to confirmed (it cannot be collected) and tells the rider
// with booking_confirmed, reason charge_dropped; charged again, it is ready
// again. A reading that stays over the threshold changes nothing.
func TestChargeDropPutsAReadyBookingBackToConfirmed(t *testing.T) {
	eachDialect(t, func(t *testing.T, f *fixture) {
		rider := f.user("drop@example.com")
		st := f.station("Dip", 95)
		b, _, err := f.s.CreateBooking(f.ctx, rider.ID, st.ID, "")
		if err != nil || b.Status != models.BookingReady {
			t.Fatalf("book: %+v %v, want ready", b, err)
		}
		c := 85
		mid := f.head()
		if _, err := f.s.UpdateBattery(f.ctx, b.BatteryID, models.BatteryPatch{ChargePercent: &c}); err != nil {
			t.Fatal(err)
		}
		if evs := f.events(mid, models.UserTopic(rider.ID)); len(evs) != 0 {
			t.Fatalf("a reading over the threshold sent %v", types(evs))
		}
		c = 40
		if _, err := f.s.UpdateBattery(f.ctx, b.BatteryID, models.BatteryPatch{ChargePercent: &c}); err != nil {
			t.Fatal(err)
		}
		got, err := f.s.FindBookingByID(f.ctx, b.ID)
		if err != nil || got.Status != models.BookingConfirmed || got.ReadyAt != nil {
			t.Fatalf("booking after the drop: %+v %v, want confirmed, not ready", got, err)
		}
		evs := f.events(mid, models.TopicStations, models.UserTopic(rider.ID))
		if got := strings.Join(types(evs), ","); got != "booking_confirmed" {
			t.Fatalf("events %s, want booking_confirmed", got)
		}
		p := payload(t, evs[0])
		info, _ := p["battery_info"].(map[string]any)
		if p["reason"] != "charge_dropped" || p["booking_id"] != float64(b.ID) || p["station_id"] != float64(st.ID) ||
			p["station_name"] != "Dip" || info["charge_percent"] != 40.0 || info["id"] != float64(b.BatteryID) || p["message"] == "" {
			t.Fatalf("booking_confirmed = %v", p)
		}
		notes, err := f.s.ListNotifications(f.ctx, rider.ID, true, models.Page{Limit: 10})
		if err != nil || len(notes) == 0 || notes[0].Type != models.EventBookingConfirmed {
			t.Fatalf("notifications %+v %v, want the booking_confirmed kept", notes, err)
		}
		_, err = f.s.CollectBooking(f.ctx, b.ID, rider, nil)
		wantCode(t, err, models.CodeBatteryNotReady)
		f.checkInventory(st.ID, models.Inventory{Booked: 1, Total: 1})

		c = 90
		mid = f.head()
		if _, err := f.s.UpdateBattery(f.ctx, b.BatteryID, models.BatteryPatch{ChargePercent: &c}); err != nil {
			t.Fatal(err)
		}
		if got, _ := f.s.FindBookingByID(f.ctx, b.ID); got.Status != models.BookingReady || got.ReadyAt == nil {
			t.Fatalf("booking after charging again: %+v, want ready", got)
		}
		if evs := f.events(mid, models.UserTopic(rider.ID)); strings.Join(types(evs), ",") != "booking_ready" {
			t.Fatalf("events %v, want booking_ready", types(evs))
		}
	})
}

func (f *fixture) otherBattery(stationID, not int64) int64 {
	bats, _ := f.s.ListBatteries(f.ctx, stationID, models.Page{})
	for _, b := range bats {
		if b.ID != not {
			return b.ID
		}
	}
	f.t.Fatal("no other battery")
	return 0
}

func TestCancelAndIdempotency(t *testing.T) {
	eachDialect(t, func(t *testing.T, f *fixture) {
		rider, other := f.user("a@example.com"), f.user("b@example.com")
		st := f.station("Gamma", 90)
		b1, replayed, err := f.s.CreateBooking(f.ctx, rider.ID, st.ID, "key-1")
		if err != nil || replayed {
			t.Fatal(err)
		}
		b2, replayed, err := f.s.CreateBooking(f.ctx, rider.ID, st.ID, "key-1")
		if err != nil || !replayed || b2.ID != b1.ID {
			t.Fatalf("replay = %+v %v %v", b2, replayed, err)
		}
		_, err = f.s.CancelBooking(f.ctx, b1.ID, other)
		wantCode(t, err, models.CodeNotFound)
		mid := f.head()
		c, err := f.s.CancelBooking(f.ctx, b1.ID, rider)
		if err != nil || c.Status != models.BookingCancelled {
			t.Fatalf("cancel: %+v %v", c, err)
		}
		f.checkInventory(st.ID, models.Inventory{Available: 1, Total: 1})
		if got := strings.Join(types(f.events(mid, models.TopicStations, models.UserTopic(rider.ID))), ","); got != "inventory_update,booking_cancelled" {
			t.Fatalf("events = %s", got)
		}
		_, err = f.s.CancelBooking(f.ctx, b1.ID, rider)
		wantCode(t, err, models.CodeInvalidState)
		// The key returns the first answer, as it was, even now.
		b3, replayed, err := f.s.CreateBooking(f.ctx, rider.ID, st.ID, "key-1")
		if err != nil || !replayed || b3.ID != b1.ID || b3.Status != models.BookingReady {
			t.Fatalf("replay after cancel = %+v %v %v", b3, replayed, err)
		}
		other2 := f.station("Gamma-2", 90)
		_, _, err = f.s.CreateBooking(f.ctx, rider.ID, other2.ID, "key-1")
		wantCode(t, err, models.CodeIdempotencyMismatch)
		// The other rider can book the battery now; a closed station refuses.
		held, _, err := f.s.CreateBooking(f.ctx, other.ID, st.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		closed := models.StationClosed
		if _, err := f.s.UpdateStation(f.ctx, st.ID, models.StationPatch{Status: &closed}); err != nil {
			t.Fatal(err)
		}
		mid = f.head()
		_, _, err = f.s.CreateBooking(f.ctx, rider.ID, st.ID, "")
		wantCode(t, err, models.CodeStationUnavailable)
		_, _, err = f.s.CreateBooking(f.ctx, rider.ID, 9999, "")
		wantCode(t, err, models.CodeNotFound)
		if evs := f.events(mid, models.TopicStations, models.UserTopic(rider.ID)); len(evs) != 0 {
			t.Fatalf("refused bookings wrote %v", types(evs))
		}
		// A booking at a station that has closed since can still be cancelled.
		if c, err := f.s.CancelBooking(f.ctx, held.ID, other); err != nil || c.Status != models.BookingCancelled {
			t.Fatalf("cancel at a closed station = %+v, %v", c, err)
		}
	})
}

func TestBookLastBatteryRace(t *testing.T) {
	eachDialect(t, func(t *testing.T, f *fixture) {
		const n = 50
		st := f.station("Race", 100)
		users := make([]*models.User, n)
		for i := range users {
			users[i] = f.user(fmt.Sprintf("u%d@example.com", i))
		}
		start := f.head()
		var wg sync.WaitGroup
		gate := make(chan struct{})
		errs := make([]error, n)
		for i := range users {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-gate
				_, _, errs[i] = f.s.CreateBooking(f.ctx, users[i].ID, st.ID, "")
			}(i)
		}
		close(gate)
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case models.IsCode(err, models.CodeNoBatteryAvailable):
			default:
				t.Fatalf("unexpected error: %v", err)
			}
		}
		if won != 1 {
			t.Fatalf("%d bookings won the last battery, want exactly 1", won)
		}
		f.checkInventory(st.ID, models.Inventory{Booked: 1, Total: 1})
		booked := 0
		for _, e := range f.events(start) {
			if e.Type == models.EventBatteryBooked {
				booked++
			}
		}
		if booked != 1 {
			t.Fatalf("%d battery_booked events, want 1", booked)
		}
	})
}

func TestExpiryWarnsOnceAndExpiresOnceWithRacingExpirers(t *testing.T) {
	eachDialect(t, func(t *testing.T, f *fixture) {
		rider := f.user("late@example.com")
		st := f.station("Delta", 90)
		f.clock.Advance(123456 * time.Microsecond) // a hold that ends mid-second
		b, _, err := f.s.CreateBooking(f.ctx, rider.ID, st.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		start := f.head()
		race := func(fn func(context.Context) (int, error)) int {
			var wg sync.WaitGroup
			var total atomic.Int64
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					n, err := fn(f.ctx)
					if err != nil {
						t.Errorf("sweep: %v", err)
					}
					total.Add(int64(n))
				}()
			}
			wg.Wait()
			return int(total.Load())
		}
		if n := race(f.s.WarnExpiring); n != 0 {
			t.Fatalf("warned %d bookings 12 minutes early", n)
		}
		f.clock.Advance(12*time.Minute + time.Second)
		if n := race(f.s.WarnExpiring); n != 1 {
			t.Fatalf("warned %d times, want 1", n)
		}
		if n := race(f.s.ExpireDue); n != 0 {
			t.Fatalf("expired %d bookings early", n)
		}
		f.clock.Advance(3 * time.Minute)
		if n := race(f.s.ExpireDue); n != 1 {
			t.Fatalf("expired %d times, want 1", n)
		}
		got, _ := f.s.FindBookingByID(f.ctx, b.ID)
		if got.Status != models.BookingExpired {
			t.Fatalf("status = %s", got.Status)
		}
		f.checkInventory(st.ID, models.Inventory{Available: 1, Total: 1})
		evs := f.events(start, models.TopicStations, models.UserTopic(rider.ID))
		if got := strings.Join(types(evs), ","); got != "booking_expiring,inventory_update,booking_expired" {
			t.Fatalf("events = %s", got)
		}
		// The same instant as the booking's own expires_at, as JSON gives it.
		if payload(t, evs[0])["expires_at"] != got.ExpiresAt.UTC().Format(time.RFC3339Nano) {
			t.Fatalf("booking_expiring = %v", payload(t, evs[0]))
		}
	})
}

func TestStationEventsCarryNoUserIdentity(t *testing.T) {
	eachDialect(t, func(t *testing.T, f *fixture) {
		rider := f.user("secret.rider@example.com")
		st := f.station("Epsilon", 90, 10)
		b, _, err := f.s.CreateBooking(f.ctx, rider.ID, st.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.s.CollectBooking(f.ctx, b.ID, rider, &models.ReturnPack{SerialNumber: "X-1", ChargePercent: 5}); err != nil {
			t.Fatal(err)
		}
		evs := f.events(0)
		if len(evs) < 6 {
			t.Fatalf("only %d station events", len(evs))
		}
		for _, e := range evs {
			data := string(e.Data())
			m := payload(t, e)
			if _, ok := m["user_id"]; ok || strings.Contains(data, "secret.rider") || strings.Contains(data, "Rider ") {
				t.Fatalf("station event %s leaks the user: %s", e.Type, data)
			}
			if m["id"] != e.ID() || m["type"] != e.Type || m["timestamp"] == nil {
				t.Fatalf("event %s lacks id/type/timestamp: %s", e.Type, data)
			}
		}
	})
}

func TestRelaySequenceAndRetention(t *testing.T) {
	eachDialect(t, func(t *testing.T, f *fixture) {
		one := f.station("One", 90)
		f.station("Two")
		evs := f.events(0)
		for i, e := range evs {
			if e.Seq != int64(i+1) {
				t.Fatalf("seq %d at %d: not contiguous", e.Seq, i)
			}
		}
		if got := strings.Join(types(f.events(0, models.StationTopic(one.ID))), ","); got != "station_status,inventory_update,battery_added,inventory_update" {
			t.Fatalf("station one's events = %s", got)
		}
		f.clock.Advance(48 * time.Hour)
		f.station("Three")
		f.events(0)
		n, err := f.s.TrimBefore(f.ctx, f.clock.Now().Add(-24*time.Hour))
		if err != nil || n != int64(len(evs)) {
			t.Fatalf("trimmed %d (%v), want %d", n, err, len(evs))
		}
		last, trimmed, err := f.s.Head(f.ctx)
		if err != nil || trimmed != int64(len(evs)) || last != trimmed+2 {
			t.Fatalf("head = %d, trimmed = %d, %v", last, trimmed, err)
		}
		rest := f.events(0)
		if len(rest) != 2 || rest[0].Seq != trimmed+1 {
			t.Fatalf("after trim: %v", types(rest))
		}
	})
}

// Pending numbers what committed and returns what is not yet published:
// the events an earlier call numbered (a publish that failed) first, then
// the ones it numbers now, in sequence order, at most limit of them; the
// numbers run on without a gap or a repeat, and the head follows them.
func TestPendingReturnsTheUnpublishedBacklog(t *testing.T) {
	eachDialect(t, func(t *testing.T, f *fixture) {
		start := f.head() // everything so far numbered and published
		lease, err := f.s.AcquireRelay(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer lease.Release()
		f.station("Backlog") // station_status, inventory_update
		first, err := lease.Pending(f.ctx, 100)
		if err != nil || len(first) != 2 || first[0].Seq != start+1 || first[1].Seq != start+2 {
			t.Fatalf("first Pending = %v (%v), want seqs %d, %d", first, err, start+1, start+2)
		}
		// Not marked published: the next call returns them again, then the
		// new ones, numbered after them.
		f.station("More")
		again, err := lease.Pending(f.ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int64
		for _, e := range again {
			seqs = append(seqs, e.Seq)
		}
		if want := []int64{start + 1, start + 2, start + 3, start + 4}; !slices.Equal(seqs, want) {
			t.Fatalf("second Pending seqs %v, want %v", seqs, want)
		}
		if again[0].Type != first[0].Type || !bytes.Equal(again[1].Payload, first[1].Payload) || again[2].Type != models.EventStationStatus {
			t.Fatalf("second Pending = %v", again)
		}
		limited, err := lease.Pending(f.ctx, 3)
		if err != nil || len(limited) != 3 || limited[2].Seq != start+3 {
			t.Fatalf("Pending(3) = %v (%v)", limited, err)
		}
		if err := lease.MarkPublished(f.ctx, start+4); err != nil {
			t.Fatal(err)
		}
		if rest, err := lease.Pending(f.ctx, 100); err != nil || len(rest) != 0 {
			t.Fatalf("after publishing: %v (%v), want nothing", rest, err)
		}
		if last, _, err := f.s.Head(f.ctx); err != nil || last != start+4 {
			t.Fatalf("head %d (%v), want %d", last, err, start+4)
		}
	})
}

func TestUnreadSnapshotHoldsTheNewest(t *testing.T) {
	eachDialect(t, func(t *testing.T, f *fixture) {
		u := f.user("many@example.com")
		for i := range 5 {
			if _, err := f.s.CreateNotification(f.ctx, models.NotificationInput{UserID: u.ID, Title: fmt.Sprintf("n%d", i), Message: "m", Level: models.LevelInfo}); err != nil {
				t.Fatal(err)
			}
		}
		got, err := f.s.UnreadNotifications(f.ctx, u.ID, 3)
		if err != nil || len(got) != 3 || got[0].Title != "n2" || got[2].Title != "n4" {
			t.Fatalf("snapshot = %+v, %v; want n2, n3, n4", got, err)
		}
	})
}

// The instance that holds the relay lease wakes its own relay and sends no
// NOTIFY: no other relay is active to hear it. Without the lease, every
// commit asks for one.
func TestCommitsAnnounceOnlyWithoutTheLease(t *testing.T) {
	f := &fixture{t: t, s: storetest.Open(t, "postgres", store.Options{}), clock: newClock(), ctx: context.Background()}
	f.station("Before")
	before := f.s.Announces()
	if before == 0 {
		t.Fatal("a commit without the lease asked for no NOTIFY")
	}
	lease, err := f.s.AcquireRelay(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.station("Held")
	if got := f.s.Announces(); got != before {
		t.Fatalf("with the lease held, announces went from %d to %d", before, got)
	}
	if err := lease.Release(); err != nil {
		t.Fatal(err)
	}
	f.station("After")
	if got := f.s.Announces(); got <= before {
		t.Fatalf("after release, announces stayed at %d", got)
	}
}

// Times follow the station lock: on the real clock, the bookings of one
// contended battery never overlap — each begins at or after the moment the
// previous one was cancelled — however many riders race for it.
func TestContendedBookingsDoNotOverlapInTime(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			f := &fixture{t: t, s: storetest.Open(t, d, store.Options{}), clock: newClock(), ctx: context.Background()}
			st := f.station("Contended", 100)
			riders := make([]*models.User, 16)
			for i := range riders {
				riders[i] = f.user(fmt.Sprintf("racer%d@example.com", i))
			}
			start := make(chan struct{})
			var wg sync.WaitGroup
			for _, u := range riders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					for range 10 {
						b, _, err := f.s.CreateBooking(f.ctx, u.ID, st.ID, "")
						if models.IsCode(err, models.CodeNoBatteryAvailable) {
							continue
						}
						if err != nil {
							t.Error(err)
							return
						}
						if _, err := f.s.CancelBooking(f.ctx, b.ID, u); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			close(start)
			wg.Wait()
			all, err := f.s.ListBookings(f.ctx, models.BookingFilter{Page: models.Page{Limit: models.MaxPageLimit}})
			if err != nil {
				t.Fatal(err)
			}
			if len(all) < 2 {
				t.Fatalf("%d bookings won; the race needs at least 2", len(all))
			}
			// Ids are drawn after the lock, so they break ties in lock order.
			slices.SortFunc(all, func(a, b models.Booking) int {
				return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
			})
			for i := 1; i < len(all); i++ {
				prev, cur := all[i-1], all[i]
				if prev.CancelledAt == nil || cur.CreatedAt.Before(*prev.CancelledAt) {
					t.Fatalf("booking %d began at %s, before booking %d of the same battery ended (%v)",
						cur.ID, cur.CreatedAt.Format(time.RFC3339Nano), prev.ID, prev.CancelledAt)
				}
			}
		})
	}
}

// A booking whose request ends while it waits for the station lock writes
// nothing and leaves no transaction behind: the same station and the whole
// pool go on working.
func TestBookingCancelledWhileWaitingForTheLock(t *testing.T) {
	for _, d := range storetest.Dialects {
		if d != "postgres" {
			continue // SQLite has one connection: a held lock would block the test itself
		}
		t.Run(d, func(t *testing.T) {
			f := &fixture{t: t, s: storetest.Open(t, d, store.Options{}), clock: newClock(), ctx: context.Background()}
			st := f.station("Held", 100, 100)
			u := f.user("waiter@example.com")
			holder := f.s.DB().Begin()
			if err := holder.Exec("SELECT 1 FROM stations WHERE id = ? FOR UPDATE", st.ID).Error; err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(f.ctx, 200*time.Millisecond)
			_, _, err := f.s.CreateBooking(ctx, u.ID, st.ID, "")
			cancel()
			if err == nil {
				t.Fatal("booked while another transaction held the station")
			}
			if err := holder.Rollback().Error; err != nil {
				t.Fatal(err)
			}
			if got, _ := f.s.ListBookings(f.ctx, models.BookingFilter{}); len(got) != 0 {
				t.Fatalf("the abandoned booking left %d rows", len(got))
			}
			f.checkInventory(st.ID, models.Inventory{Available: 2, Total: 2})
			// More bookings than the pool has connections: none may find a
			// connection with a transaction still open.
			for i := range 40 {
				b, _, err := f.s.CreateBooking(f.ctx, u.ID, st.ID, "")
				if err != nil {
					t.Fatalf("booking %d after the abandoned one: %v", i, err)
				}
				if _, err := f.s.CancelBooking(f.ctx, b.ID, u); err != nil {
					t.Fatalf("cancel %d: %v", i, err)
				}
			}
		})
	}
}

// Two requests with one Idempotency-Key race for a station's last battery:
// both answer with the one booking (the later one as a replay); neither says
// the battery is gone.
func TestSameKeyRaceForTheLastBatteryReplays(t *testing.T) {
	f := &fixture{t: t, s: storetest.Open(t, "postgres", store.Options{}), clock: newClock(), ctx: context.Background()}
	st := f.station("Last", 100)
	u := f.user("twice@example.com")
	holder := f.s.DB().Begin()
	if err := holder.Exec("SELECT 1 FROM stations WHERE id = ? FOR UPDATE", st.ID).Error; err != nil {
		t.Fatal(err)
	}
	type result struct {
		b        *models.Booking
		replayed bool
		err      error
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			b, replayed, err := f.s.CreateBooking(f.ctx, u.ID, st.ID, "same-key")
			results <- result{b, replayed, err}
		}()
	}
	// Both requests are past their first look for the key once both wait
	// for the station's lock.
	f.waitForLockWaiters(2)
	if err := holder.Rollback().Error; err != nil {
		t.Fatal(err)
	}
	a, b := <-results, <-results
	if a.err != nil || b.err != nil {
		t.Fatalf("errors: %v, %v", a.err, b.err)
	}
	if a.b.ID != b.b.ID || a.replayed == b.replayed {
		t.Fatalf("bookings %d (replayed %v) and %d (replayed %v), want one booking, one replay", a.b.ID, a.replayed, b.b.ID, b.replayed)
	}
}

// waitForLockWaiters returns once n sessions of the test's PostgreSQL
// database wait for a lock, observed in pg_stat_activity.
func (f *fixture) waitForLockWaiters(n int64) {
	f.t.Helper()
	f.waitForWaiters(n, "a lock", "")
}

// waitForWaiters waits until n sessions of the test's database wait for a
// lock and match the extra condition and; what names the lock in the failure.
func (f *fixture) waitForWaiters(n int64, what, and string, args ...any) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int64
		if err := f.s.DB().Raw(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`+and, args...).Scan(&waiting).Error; err != nil {
			f.t.Fatal(err)
		}
		if waiting == n {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%d sessions wait for %s, want %d", waiting, what, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// behindLock runs first and then second while another transaction holds the
// station's lock, each queued behind it (first ahead of second), lets the
// clock move on, and releases the lock: both then run, in that order. A
// failure in either ends the test.
func (f *fixture) behindLock(stationID int64, first, second func()) {
	f.t.Helper()
	holder := f.s.DB().Begin()
	if err := holder.Exec("SELECT 1 FROM stations WHERE id = ? FOR UPDATE", stationID).Error; err != nil {
		f.t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(first)
	f.waitForLockWaiters(1)
	wg.Go(second)
	f.waitForLockWaiters(2)
	f.clock.Advance(time.Minute) // as long as they waited
	if err := holder.Rollback().Error; err != nil {
		f.t.Fatal(err)
	}
	wg.Wait()
	if f.t.Failed() {
		f.t.FailNow()
	}
}

// A booking or cancel that waited for the station lock behind a station
// change is not stamped before that change, though it read the clock before
// it waited; so a station's events keep their timestamps in order.
func TestChangesThatWaitedAreStampedAfterTheChangeAhead(t *testing.T) {
	c := newClock()
	f := &fixture{t: t, s: storetest.Open(t, "postgres", store.Options{Now: c.Now}), clock: c, ctx: context.Background()}
	st := f.station("Queue", 100, 90)
	u := f.user("queued@example.com")
	closed, open := models.StationClosed, models.StationOpen
	if _, err := f.s.UpdateStation(f.ctx, st.ID, models.StationPatch{Status: &closed}); err != nil {
		t.Fatal(err)
	}
	mid := f.head()
	var reopened *models.Station
	var b *models.Booking
	f.behindLock(st.ID, func() {
		var err error
		if reopened, err = f.s.UpdateStation(f.ctx, st.ID, models.StationPatch{Status: &open}); err != nil {
			t.Error(err)
		}
	}, func() {
		var err error
		if b, _, err = f.s.CreateBooking(f.ctx, u.ID, st.ID, ""); err != nil {
			t.Error(err)
		}
	})
	if b.CreatedAt.Before(reopened.UpdatedAt) {
		t.Fatalf("booking stamped %s, before its station reopened at %s", b.CreatedAt.Format(time.RFC3339Nano), reopened.UpdatedAt.Format(time.RFC3339Nano))
	}
	// Behind a change to another battery of the station, which leaves the
	// station row as it was.
	other, err := f.s.ListBatteries(f.ctx, st.ID, models.Page{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	charge := 95
	var touched *models.Battery
	var first *models.Booking
	f.behindLock(st.ID, func() {
		var err error
		for _, o := range other {
			if o.ID != b.BatteryID {
				if touched, err = f.s.UpdateBattery(f.ctx, o.ID, models.BatteryPatch{ChargePercent: &charge}); err != nil {
					t.Error(err)
				}
			}
		}
	}, func() {
		var err error
		if first, err = f.s.CancelBooking(f.ctx, b.ID, u); err != nil {
			t.Error(err)
		}
	})
	if touched == nil || first.CancelledAt.Before(touched.UpdatedAt) {
		t.Fatalf("cancel stamped %v, before the battery change ahead of it (%v)", first.CancelledAt, touched)
	}
	if b, _, err = f.s.CreateBooking(f.ctx, u.ID, st.ID, ""); err != nil {
		t.Fatal(err)
	}
	maintenance := models.StationMaintenance
	var cancelled *models.Booking
	f.behindLock(st.ID, func() {
		if _, err := f.s.UpdateStation(f.ctx, st.ID, models.StationPatch{Status: &maintenance}); err != nil {
			t.Error(err)
		}
	}, func() {
		var err error
		if cancelled, err = f.s.CancelBooking(f.ctx, b.ID, u); err != nil {
			t.Error(err)
		}
	})
	var last time.Time
	for _, e := range f.events(mid, models.StationTopic(st.ID)) {
		if e.CreatedAt.Before(last) {
			t.Fatalf("event %d (%s) stamped %s, before the one ahead of it (%s)", e.Seq, e.Type, e.CreatedAt.Format(time.RFC3339Nano), last.Format(time.RFC3339Nano))
		}
		last = e.CreatedAt
	}
	if cancelled.CancelledAt == nil || !cancelled.CancelledAt.Equal(last) {
		t.Fatalf("cancelled at %v, want the time of the station's last event, %s", cancelled.CancelledAt, last.Format(time.RFC3339Nano))
	}
}

// A station's message explains its status: a new status without a message
// of its own clears the old one, in the station and in its station_status
// event; the same status keeps it.
func TestStationMessageFollowsStatus(t *testing.T) {
	eachDialect(t, func(t *testing.T, f *fixture) {
		st := f.station("Pier")
		maintenance, open := models.StationMaintenance, models.StationOpen
		broken, other := "pump broken", "Pier Two"
		mid := f.head()
		for _, tc := range []struct {
			patch models.StationPatch
			want  string
		}{
			{models.StationPatch{Status: &maintenance, Message: &broken}, broken},
			{models.StationPatch{Status: &maintenance}, broken}, // same status: kept
			{models.StationPatch{Name: &other}, broken},
			{models.StationPatch{Status: &open}, ""},
		} {
			got, err := f.s.UpdateStation(f.ctx, st.ID, tc.patch)
			if err != nil {
				t.Fatal(err)
			}
			if got.Message != tc.want {
				t.Fatalf("after %+v: message %q, want %q", tc.patch, got.Message, tc.want)
			}
		}
		var last map[string]any
		for _, e := range f.events(mid, models.StationTopic(st.ID)) {
			if e.Type == models.EventStationStatus {
				if err := json.Unmarshal(e.Payload, &last); err != nil {
					t.Fatal(err)
				}
			}
		}
		if last["status"] != "open" || last["message"] != "" {
			t.Fatalf("last station_status %v, want open with no message", last)
		}
	})
}

// A station's updated_at is its last change, its packs' included: a
// station whose battery was booked a moment ago was updated a moment ago,
// in every read (one station, the list, the stream snapshot).
func TestStationUpdatedAtFollowsItsBatteries(t *testing.T) {
	eachDialect(t, func(t *testing.T, f *fixture) {
		rider := f.user("fresh@example.com")
		st := f.station("Quay", 90)
		created, err := f.s.FindStationByID(f.ctx, st.ID)
		if err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(10 * time.Minute)
		b, _, err := f.s.CreateBooking(f.ctx, rider.ID, st.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		if !b.CreatedAt.After(created.UpdatedAt) {
			t.Fatalf("booking at %v, station created at %v", b.CreatedAt, created.UpdatedAt)
		}
		one, err := f.s.FindStationByID(f.ctx, st.ID)
		if err != nil {
			t.Fatal(err)
		}
		list, err := f.s.ListStations(f.ctx, models.StationFilter{})
		if err != nil {
			t.Fatal(err)
		}
		all, err := f.s.AllStations(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for name, got := range map[string][]models.Station{"find": {*one}, "list": list, "all": all} {
			i := slices.IndexFunc(got, func(s models.Station) bool { return s.ID == st.ID })
			if i < 0 || !got[i].UpdatedAt.Equal(b.CreatedAt) {
				t.Fatalf("%s: station %+v, want updated_at %v (the booking's)", name, got, b.CreatedAt)
			}
		}
	})
}

// A station's own change is never stamped before the last change of its
// batteries, even when this instance's clock is behind the one that made
// it: its events keep their order in time.
func TestStationChangeIsStampedAfterItsBatteries(t *testing.T) {
	eachDialect(t, func(t *testing.T, f *fixture) {
		rider := f.user("order@example.com")
		st := f.station("Order", 90)
		f.clock.Advance(10 * time.Minute)
		b, _, err := f.s.CreateBooking(f.ctx, rider.ID, st.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(-5 * time.Minute) // another instance, its clock behind
		mid := f.head()
		note := "back soon"
		if _, err := f.s.UpdateStation(f.ctx, st.ID, models.StationPatch{Message: &note}); err != nil {
			t.Fatal(err)
		}
		evs := f.events(mid, models.StationTopic(st.ID))
		if len(evs) != 1 || evs[0].Type != models.EventStationStatus {
			t.Fatalf("events after the change: %v, want one station_status", types(evs))
		}
		if evs[0].CreatedAt.Before(b.CreatedAt) {
			t.Fatalf("station_status stamped %v, before its battery's booking at %v", evs[0].CreatedAt, b.CreatedAt)
		}
	})
}

// The lease's connection check never runs between the lease's own
// statements: pgx refuses a ping while a result is being read, and
// database/sql then closes the connection, which lost the lease several
// times a minute. Checked here every millisecond while Pending reads.
func TestLeaseCheckDoesNotBreakTheLeaseQueries(t *testing.T) {
	store.SetLeaseTimings(t, time.Millisecond, 10*time.Second)
	f := &fixture{t: t, s: storetest.Open(t, "postgres", store.Options{}), clock: newClock(), ctx: context.Background()}
	for i := range 20 {
		f.station(fmt.Sprintf("S%d", i), 90, 50)
	}
	lease, err := f.s.AcquireRelay(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()
	for i := range 300 {
		evs, err := lease.Pending(f.ctx, 500)
		if err != nil {
			t.Fatalf("Pending, round %d: %v", i, err)
		}
		if len(evs) == 0 {
			t.Fatal("no events to read")
		}
	}
	select {
	case <-lease.Lost():
		t.Fatal("the lease was lost")
	default:
	}
}

// A relay holder that goes silent (a frozen process, a host cut off behind
// a connection that stays open) loses the lease within the idle limit, and
// another instance takes it over; the frozen one finds its lease lost.
func TestSilentLeaseHolderGivesWay(t *testing.T) {
	for _, inTx := range []bool{false, true} {
		t.Run(fmt.Sprintf("in a transaction %v", inTx), func(t *testing.T) { testSilentLeaseHolderGivesWay(t, inTx) })
	}
}

func testSilentLeaseHolderGivesWay(t *testing.T, inTx bool) {
	store.SetLeaseTimings(t, time.Hour, 500*time.Millisecond) // no checks: the holder is frozen
	url := storetest.URL(t, "postgres")
	frozen, other := storetest.OpenURL(t, url, store.Options{}), storetest.OpenURL(t, url, store.Options{})
	ctx := context.Background()
	held, err := frozen.AcquireRelay(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	if inTx {
		if err := store.FreezeInTransaction(held); err != nil {
			t.Fatal(err)
		}
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	taken, err := other.AcquireRelay(actx)
	if err != nil {
		t.Fatalf("the other instance never got the lease: %v", err)
	}
	defer taken.Release()
	if _, err := held.Pending(ctx, 10); err == nil {
		t.Fatal("the frozen holder's lease still works")
	}
	select {
	case <-held.Lost():
	case <-actx.Done():
		t.Fatal("the frozen holder never saw its lease lost")
	}
}

// CreateNotification answers the notification it made, not the user's
// newest: here another notification for the same user commits between its
// insert and its answer (its outbox insert waits on a lock meanwhile).
func TestCreateNotificationAnswersItsOwnRow(t *testing.T) {
	f := &fixture{t: t, s: storetest.Open(t, "postgres", store.Options{}), clock: newClock(), ctx: context.Background()}
	u := f.user("noted@example.com")
	holder := f.s.DB().Begin()
	if err := holder.Exec("LOCK TABLE events IN EXCLUSIVE MODE").Error; err != nil {
		t.Fatal(err)
	}
	var got *models.Notification
	var err error
	var wg sync.WaitGroup
	wg.Go(func() {
		got, err = f.s.CreateNotification(f.ctx, models.NotificationInput{UserID: u.ID, Title: "Mine", Message: "m", Level: models.LevelInfo})
	})
	f.waitForLockWaiters(1) // its notification is in; its events wait
	if err := f.s.DB().Exec(`INSERT INTO notifications (user_id, type, title, message, level, data, created_at)
		VALUES (?, 'notification', 'Theirs', 'm', 'info', '{}', now())`, u.ID).Error; err != nil {
		t.Fatal(err)
	}
	holder.Rollback()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got.Title != "Mine" {
		t.Fatalf("answered notification %d %q, want the one it made", got.ID, got.Title)
	}
}
