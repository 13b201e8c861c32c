package store_test

import (
	"fmt"
	"maps"
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

// The same collected pack handed in at two stations at once: the first
// takes it in; for the second it is at a station by then, so that collect
// is refused (battery_not_returnable) and changes nothing; both stations'
// counts are announced as they are.
func TestSamePackHandedInAtTwoStations(t *testing.T) {
	f, _ := pausingFixture(t)
	pack := f.collectedPack("Away")
	a, ua, ba := f.readyBooking("A", 100)
	c, uc, bc := f.readyBooking("C", 100)
	errs := f.collectBothBehind(pack.ID, pack.SerialNumber, [2]*models.Booking{ba, bc}, [2]*models.User{ua, uc})
	if errs[0] != nil || models.ErrorCode(errs[1]) != models.CodeBatteryNotReturnable {
		t.Fatalf("collects: %v; %v, want success, then battery_not_returnable", errs[0], errs[1])
	}
	after, err := f.s.FindBatteryByID(f.ctx, pack.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after.StationID == nil || *after.StationID != a.ID {
		t.Errorf("the pack is at station %v, want %d", after.StationID, a.ID)
	}
	if b, err := f.s.FindBookingByID(f.ctx, bc.ID); err != nil || b.Status != models.BookingReady {
		t.Errorf("the refused collect's booking is %v (%v), want ready still", b, err)
	}
	f.countsAgree(a, c)
}

// Two collects hand in the same unknown serial at once: one creates the
// pack; the other finds it at that station and is refused, as it would be
// one after the other.
func TestNewSerialHandedInAtTwoStations(t *testing.T) {
	f, _ := pausingFixture(t)
	a, ua, ba := f.readyBooking("A", 100)
	c, uc, bc := f.readyBooking("C", 100)
	// The lock on the first collect's own battery holds it after its insert.
	errs := f.collectBothBehind(ba.BatteryID, "NEW-1", [2]*models.Booking{ba, bc}, [2]*models.User{ua, uc})
	if errs[0] != nil || models.ErrorCode(errs[1]) != models.CodeBatteryNotReturnable {
		t.Errorf("collects: %v; %v, want success, then battery_not_returnable", errs[0], errs[1])
	}
	f.countsAgree(a, c)
}

// A swap-in takes a known pack only when it is out with a rider: a pack at
// another station or at this one, in maintenance, booked by someone else,
// or the very pack being collected is refused with battery_not_returnable,
// and nothing changes: not the pack, not the booking, no event. A collected
// pack is taken in.
func TestSwapInTakesOnlyAPackOutWithARider(t *testing.T) {
	eachDialect(t, func(t *testing.T, f *fixture) {
		here, rider, b := f.readyBooking("Here", 100, 20)
		away := f.station("Away", 60)
		spare := f.station("Spare", 90, 90)
		spares, err := f.s.ListBatteries(f.ctx, spare.ID, models.Page{})
		if err != nil {
			t.Fatal(err)
		}
		maintenance := models.BatteryMaintenance
		if _, err := f.s.UpdateBattery(f.ctx, spares[1].ID, models.BatteryPatch{Status: &maintenance}); err != nil {
			t.Fatal(err)
		}
		_, _, other := f.readyBooking("Other", 100)
		otherPack, err := f.s.FindBatteryByID(f.ctx, other.BatteryID)
		if err != nil {
			t.Fatal(err)
		}
		collecting, err := f.s.FindBatteryByID(f.ctx, b.BatteryID)
		if err != nil {
			t.Fatal(err)
		}
		out := f.collectedPack("Out")
		snapshot := func() map[int64]string {
			m := map[int64]string{}
			put := func(x models.Battery) {
				var at int64
				if x.StationID != nil {
					at = *x.StationID
				}
				m[x.ID] = fmt.Sprintf("%s at %d, %s, %d%%, %s", x.SerialNumber, at, x.Status, x.ChargePercent, x.UpdatedAt)
			}
			for _, id := range []int64{here.ID, away.ID, spare.ID} {
				bats, err := f.s.ListBatteries(f.ctx, id, models.Page{Limit: 100})
				if err != nil {
					t.Fatal(err)
				}
				for _, x := range bats {
					put(x)
				}
			}
			for _, id := range []int64{otherPack.ID, out.ID} {
				x, err := f.s.FindBatteryByID(f.ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				put(*x)
			}
			return m
		}
		before, head := snapshot(), f.head()
		for name, serial := range map[string]string{
			"at another station":         "Away-0",
			"at this station":            "Here-1",
			"in maintenance":             spares[1].SerialNumber,
			"booked by another rider":    otherPack.SerialNumber,
			"the pack being collected":   collecting.SerialNumber,
			"at another station (spare)": spares[0].SerialNumber,
		} {
			_, err := f.s.CollectBooking(f.ctx, b.ID, rider, &models.ReturnPack{SerialNumber: serial, ChargePercent: 5})
			if models.ErrorCode(err) != models.CodeBatteryNotReturnable {
				t.Errorf("swap-in of a pack %s: %v, want battery_not_returnable", name, err)
			}
		}
		if got := snapshot(); !maps.Equal(got, before) {
			t.Errorf("refused swap-ins changed batteries:\n%v\nwant\n%v", got, before)
		}
		if bk, err := f.s.FindBookingByID(f.ctx, b.ID); err != nil || bk.Status != models.BookingReady {
			t.Fatalf("booking after refused swap-ins: %v %v, want ready", bk, err)
		}
		if after := f.head(); after != head {
			t.Errorf("refused swap-ins wrote %d events", after-head)
		}
		got, err := f.s.CollectBooking(f.ctx, b.ID, rider, &models.ReturnPack{SerialNumber: out.SerialNumber, ChargePercent: 5})
		if err != nil {
			t.Fatalf("swap-in of a pack out with a rider: %v", err)
		}
		back, err := f.s.FindBatteryByID(f.ctx, out.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.ReturnedBatteryID == nil || *got.ReturnedBatteryID != out.ID || back.StationID == nil || *back.StationID != here.ID ||
			back.Status != models.BatteryCharging || back.ChargePercent != 5 {
			t.Fatalf("returned %v; the pack is %+v, want it charging at 5%% at station %d", got.ReturnedBatteryID, back, here.ID)
		}
		f.checkInventory(here.ID, models.Inventory{Charging: 2, Total: 2})
	})
}
