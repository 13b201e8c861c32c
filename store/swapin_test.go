package store_test

import (
	"sync"
	"testing"
	"time"

	"batteryswap/models"
	"batteryswap/store"
	"batteryswap/store/storetest"
)

// The swap-in on collect against everything else that moves a pack, on
// PostgreSQL, where these run at once: every station's last inventory_update
// matches its battery rows, a booking never holds a battery of another
// station, and a collision is a 409 at worst, never a raw database error.

// pausingClock is the fixture clock; once armed with n, the next n calls to
// Now wait until all n have arrived and release is closed.
type pausingClock struct {
	*clock
	mu      sync.Mutex
	armed   int
	arrived chan struct{}
	release chan struct{}
}

func (p *pausingClock) Now() time.Time {
	p.mu.Lock()
	if p.armed > 0 {
		p.armed--
		arrived, release := p.arrived, p.release
		p.mu.Unlock()
		arrived <- struct{}{}
		<-release
	} else {
		p.mu.Unlock()
	}
	return p.clock.Now()
}

func (p *pausingClock) arm(n int) {
	p.mu.Lock()
	p.armed, p.arrived, p.release = n, make(chan struct{}, n), make(chan struct{})
	p.mu.Unlock()
}

func pausingFixture(t *testing.T) (*fixture, *pausingClock) {
	p := &pausingClock{clock: newClock()}
	s := storetest.Open(t, "postgres", store.Options{Now: p.Now, BookingHold: 15 * time.Minute, BookingWarn: 3 * time.Minute})
	return &fixture{t: t, s: s, clock: p.clock, ctx: t.Context()}, p
}

// countsAgree fails the test unless each station's last inventory_update
// says what its battery rows say.
func (f *fixture) countsAgree(stations ...*models.Station) {
	f.t.Helper()
	for _, st := range stations {
		var said models.Inventory
		for _, e := range f.events(0, models.StationTopic(st.ID)) {
			if e.Type == models.EventInventoryUpdate {
				p := payload(f.t, e)
				said = models.Inventory{Available: int(p["available_batteries"].(float64)), Booked: int(p["booked_batteries"].(float64)),
					Charging: int(p["charging_batteries"].(float64)), Total: int(p["total_batteries"].(float64))}
			}
		}
		now, err := f.s.FindStationByID(f.ctx, st.ID)
		if err != nil {
			f.t.Fatal(err)
		}
		if said != now.Inventory {
			f.t.Errorf("station %s: last inventory_update says %+v, its rows %+v", st.Name, said, now.Inventory)
		}
	}
}

// collectedPack is a pack a rider took away: collected, at no station.
func (f *fixture) collectedPack(name string) *models.Battery {
	f.t.Helper()
	st, u := f.station(name, 100), f.user(name+"@example.com")
	b, _, err := f.s.CreateBooking(f.ctx, u.ID, st.ID, "")
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.s.CollectBooking(f.ctx, b.ID, u, nil); err != nil {
		f.t.Fatal(err)
	}
	bat, err := f.s.FindBatteryByID(f.ctx, b.BatteryID)
	if err != nil {
		f.t.Fatal(err)
	}
	return bat
}

// readyBooking books the one battery of a new station for a new rider.
func (f *fixture) readyBooking(name string, charges ...int) (*models.Station, *models.User, *models.Booking) {
	f.t.Helper()
	st, u := f.station(name, charges...), f.user(name+"@example.com")
	b, _, err := f.s.CreateBooking(f.ctx, u.ID, st.ID, "")
	if err != nil {
		f.t.Fatal(err)
	}
	return st, u, b
}

// collectBothBehind has both riders collect their bookings, each handing
// in serial, queued in that order behind a row lock on battery locked; it
// then lets them go and returns their errors.
func (f *fixture) collectBothBehind(locked int64, serial string, bookings [2]*models.Booking, riders [2]*models.User) []error {
	f.t.Helper()
	holder := f.s.DB().Begin()
	if err := holder.Exec("SELECT 1 FROM batteries WHERE id = ? FOR UPDATE", locked).Error; err != nil {
		f.t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() {
			_, errs[i] = f.s.CollectBooking(f.ctx, bookings[i].ID, riders[i], &models.ReturnPack{SerialNumber: serial, ChargePercent: 10})
		})
		f.waitForLockWaiters(int64(i + 1))
	}
	holder.Rollback()
	wg.Wait()
	return errs
}

func noInternal(t *testing.T, errs ...error) {
	t.Helper()
	for i, err := range errs {
		if err != nil && models.ErrorCode(err) != models.CodeConflict && models.ErrorCode(err) != models.CodeInvalidState {
			t.Errorf("change %d: %v (code %s), want success or a 409", i, err, models.ErrorCode(err))
		}
	}
}

// Telemetry for a collected pack, read just before a collect hands that
// pack in, does not undo the swap-in.
func TestSwapInAgainstTelemetry(t *testing.T) {
	f, clock := pausingFixture(t)
	pack := f.collectedPack("Away")
	st, u, b := f.readyBooking("Home", 100)
	clock.arm(1)
	done := make(chan error)
	go func() {
		c := 21
		_, err := f.s.UpdateBattery(f.ctx, pack.ID, models.BatteryPatch{ChargePercent: &c})
		done <- err
	}()
	<-clock.arrived // telemetry has read the pack (at no station)
	if _, err := f.s.CollectBooking(f.ctx, b.ID, u, &models.ReturnPack{SerialNumber: pack.SerialNumber, ChargePercent: 20}); err != nil {
		t.Fatal(err)
	}
	close(clock.release)
	if err := <-done; models.ErrorCode(err) != models.CodeConflict {
		t.Errorf("telemetry on a pack that moved meanwhile: %v, want conflict", err)
	}
	after, err := f.s.FindBatteryByID(f.ctx, pack.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after.StationID == nil || *after.StationID != st.ID || after.ChargePercent != 20 {
		t.Fatalf("the handed-in pack is at station %v with %d%%, want station %d with 20%%", after.StationID, after.ChargePercent, st.ID)
	}
	f.countsAgree(st)
}

// The same collected pack handed in at two stations at once: it ends at one
// of them, and both stations' counts are announced as they are.
func TestSamePackHandedInAtTwoStations(t *testing.T) {
	f, _ := pausingFixture(t)
	pack := f.collectedPack("Away")
	a, ua, ba := f.readyBooking("A", 100)
	c, uc, bc := f.readyBooking("C", 100)
	noInternal(t, f.collectBothBehind(pack.ID, pack.SerialNumber, [2]*models.Booking{ba, bc}, [2]*models.User{ua, uc})...)
	f.countsAgree(a, c)
}

// Two collects hand in the same unknown serial at once: one creates the
// pack, the other finds it and moves it, as it would one after the other.
func TestNewSerialHandedInAtTwoStations(t *testing.T) {
	f, _ := pausingFixture(t)
	a, ua, ba := f.readyBooking("A", 100)
	c, uc, bc := f.readyBooking("C", 100)
	// The lock on the first collect's own battery holds it after its insert.
	errs := f.collectBothBehind(ba.BatteryID, "NEW-1", [2]*models.Booking{ba, bc}, [2]*models.User{ua, uc})
	for i, err := range errs {
		if err != nil {
			t.Errorf("collect %d: %v", i, err)
		}
	}
	f.countsAgree(a, c)
}

// Two swaps, each handing in a pack registered at the other's station, lock
// the two stations in opposite orders: one gives way with a 409.
func TestCrossedSwapInsGiveWay(t *testing.T) {
	f, clock := pausingFixture(t)
	a, ua, ba := f.readyBooking("A", 100, 10)
	c, uc, bc := f.readyBooking("C", 100, 10)
	clock.arm(2) // both collects hold their own station's lock, then go on together
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() {
		_, errs[0] = f.s.CollectBooking(f.ctx, ba.ID, ua, &models.ReturnPack{SerialNumber: "C-1", ChargePercent: 10})
	})
	wg.Go(func() {
		_, errs[1] = f.s.CollectBooking(f.ctx, bc.ID, uc, &models.ReturnPack{SerialNumber: "A-1", ChargePercent: 10})
	})
	<-clock.arrived
	<-clock.arrived
	close(clock.release)
	wg.Wait()
	noInternal(t, errs...)
	f.countsAgree(a, c)
}

// A pack at station B handed in at A and at C at once, with a booking at A
// between them: the second swap finds the pack moved to A and takes A's
// lock to move it on, so the booking at A never gets a battery that is at C.
func TestPackMovedOnWhileABookingWaits(t *testing.T) {
	f, _ := pausingFixture(t)
	b := f.station("B", 10)
	bats, err := f.s.ListBatteries(f.ctx, b.ID, models.Page{})
	if err != nil {
		t.Fatal(err)
	}
	x := bats[0]
	a, ua, ba := f.readyBooking("A", 100)
	c, uc, bc := f.readyBooking("C", 100)
	rider := f.user("third@example.com")
	holdB := f.s.DB().Begin()
	if err := holdB.Exec("SELECT 1 FROM stations WHERE id = ? FOR UPDATE", b.ID).Error; err != nil {
		t.Fatal(err)
	}
	holdC := f.s.DB().Begin() // keeps the second swap from committing once it moved the pack
	if err := holdC.Exec("SELECT 1 FROM batteries WHERE id = ? FOR UPDATE", bc.BatteryID).Error; err != nil {
		t.Fatal(err)
	}
	var first, second, booking sync.WaitGroup
	errs := make([]error, 2)
	first.Go(func() {
		_, errs[0] = f.s.CollectBooking(f.ctx, ba.ID, ua, &models.ReturnPack{SerialNumber: x.SerialNumber, ChargePercent: 10})
	})
	f.waitForLockWaiters(1)
	second.Go(func() {
		_, errs[1] = f.s.CollectBooking(f.ctx, bc.ID, uc, &models.ReturnPack{SerialNumber: x.SerialNumber, ChargePercent: 10})
	})
	f.waitForLockWaiters(2)
	holdB.Rollback()
	first.Wait() // X moved from B to A
	// The second swap moved X on and waits for holdC. Counted by who blocks
	// it: a bare count of waiters also matches the moment just before, the
	// second swap still queued for B's lock, and a booking started then
	// could take X first.
	f.waitForBlockedBy(holdC, 1)
	var bk *models.Booking
	var bkErr error
	booking.Go(func() { bk, _, bkErr = f.s.CreateBooking(f.ctx, rider.ID, a.ID, "") })
	f.waitForLockWaiters(2)
	holdC.Rollback()
	second.Wait()
	booking.Wait()
	noInternal(t, errs...)
	after, err := f.s.FindBatteryByID(f.ctx, x.ID)
	if err != nil {
		t.Fatal(err)
	}
	if bkErr == nil && bk.BatteryID == x.ID && (after.StationID == nil || *after.StationID != a.ID) {
		t.Errorf("a booking at station %d holds battery %d, which is not there", a.ID, x.ID)
	}
	f.countsAgree(a, b, c)
}
