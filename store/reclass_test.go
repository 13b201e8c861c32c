package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"batteryswap/models"
	"batteryswap/store"
	"batteryswap/store/storetest"
)

// TestReclassByChargeAfterReadyChargeChanged: batteries change class only
// on telemetry, so after READY_CHARGE drops from 80 to 40 a pack at 50 %
// still says charging and a booking of a pack at 60 % still waits. The
// re-class at start makes them what telemetry would: the free pack
// available, the booking ready, with the same events; a second run finds
// nothing to do.
func TestReclassByChargeAfterReadyChargeChanged(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			before := &fixture{t: t, s: storetest.OpenURL(t, url, store.Options{ReadyCharge: 80}), clock: newClock(), ctx: context.Background()}
			st := before.station("Hill", 50, 60)
			rider := before.user("hill@example.com")
			b, _, err := before.s.CreateBooking(before.ctx, rider.ID, st.ID, "")
			if err != nil || b.Status != models.BookingConfirmed {
				t.Fatalf("booking: %+v, %v; want confirmed", b, err)
			}
			before.checkInventory(st.ID, models.Inventory{Booked: 1, Charging: 1, Total: 2})

			f := &fixture{t: t, s: storetest.OpenURL(t, url, store.Options{ReadyCharge: 40}), clock: before.clock, ctx: before.ctx}
			start := f.head()
			n, err := f.s.ReclassByCharge(f.ctx)
			if err != nil || n != 2 {
				t.Fatalf("ReclassByCharge = %d, %v; want 2", n, err)
			}
			f.checkInventory(st.ID, models.Inventory{Available: 1, Booked: 1, Total: 2})
			if got, _ := f.s.FindBookingByID(f.ctx, b.ID); got.Status != models.BookingReady {
				t.Fatalf("booking %s, want ready", got.Status)
			}
			evs := f.events(start, models.TopicStations, models.UserTopic(rider.ID))
			if got := strings.Join(types(evs), ","); got != "inventory_update,booking_ready" {
				t.Fatalf("events %s", got)
			}
			if a := payload(t, evs[0])["action"]; a != "charged" {
				t.Errorf("inventory_update action %v, want charged", a)
			}
			if n, err := f.s.ReclassByCharge(f.ctx); err != nil || n != 0 {
				t.Fatalf("second run: %d, %v; want 0", n, err)
			}
		})
	}
}

// TestReclassLeavesAnExpiredHoldToTheExpirer: a confirmed booking whose hold
// ran out while the server was down is not made ready by the re-class at
// start (its rider would be told to come for a battery about to go back).
func TestReclassLeavesAnExpiredHoldToTheExpirer(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			clock := newClock()
			opts := store.Options{Now: clock.Now, ReadyCharge: 80, BookingHold: 15 * time.Minute, BookingWarn: 3 * time.Minute}
			before := &fixture{t: t, s: storetest.OpenURL(t, url, opts), clock: clock, ctx: context.Background()}
			st := before.station("Dale", 60)
			rider := before.user("dale@example.com")
			b, _, err := before.s.CreateBooking(before.ctx, rider.ID, st.ID, "")
			if err != nil || b.Status != models.BookingConfirmed {
				t.Fatalf("booking: %+v, %v; want confirmed", b, err)
			}
			clock.Advance(time.Hour) // down past the hold

			opts.ReadyCharge = 40
			f := &fixture{t: t, s: storetest.OpenURL(t, url, opts), clock: clock, ctx: before.ctx}
			start := f.head()
			if n, err := f.s.ReclassByCharge(f.ctx); err != nil || n != 0 {
				t.Fatalf("ReclassByCharge = %d, %v; want 0", n, err)
			}
			if got, _ := f.s.FindBookingByID(f.ctx, b.ID); got.Status != models.BookingConfirmed {
				t.Fatalf("booking %s, want confirmed until the expirer takes it", got.Status)
			}
			if evs := f.events(start, models.TopicStations, models.UserTopic(rider.ID)); len(evs) != 0 {
				t.Fatalf("events %v, want none", types(evs))
			}
		})
	}
}

// TestReclassPutsAReadyBookingBackWhenReadyChargeRose: after READY_CHARGE
// rises from 40 to 80, a ready booking of a pack at 60 % goes back to
// confirmed at start, as telemetry of that charge would (charge_dropped).
func TestReclassPutsAReadyBookingBackWhenReadyChargeRose(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			url := storetest.URL(t, d)
			before := &fixture{t: t, s: storetest.OpenURL(t, url, store.Options{ReadyCharge: 40}), clock: newClock(), ctx: context.Background()}
			st := before.station("Rise", 60)
			rider := before.user("rise@example.com")
			b, _, err := before.s.CreateBooking(before.ctx, rider.ID, st.ID, "")
			if err != nil || b.Status != models.BookingReady {
				t.Fatalf("booking: %+v, %v; want ready", b, err)
			}
			f := &fixture{t: t, s: storetest.OpenURL(t, url, store.Options{ReadyCharge: 80}), clock: before.clock, ctx: before.ctx}
			start := f.head()
			if n, err := f.s.ReclassByCharge(f.ctx); err != nil || n != 1 {
				t.Fatalf("ReclassByCharge = %d, %v; want 1", n, err)
			}
			if got, _ := f.s.FindBookingByID(f.ctx, b.ID); got.Status != models.BookingConfirmed {
				t.Fatalf("booking %s, want confirmed", got.Status)
			}
			evs := f.events(start, models.TopicStations, models.UserTopic(rider.ID))
			if len(evs) != 1 || evs[0].Type != models.EventBookingConfirmed || payload(t, evs[0])["reason"] != "charge_dropped" {
				t.Fatalf("events %v, want booking_confirmed (charge_dropped)", types(evs))
			}
			if n, err := f.s.ReclassByCharge(f.ctx); err != nil || n != 0 {
				t.Fatalf("second run: %d, %v; want 0", n, err)
			}
		})
	}
}
