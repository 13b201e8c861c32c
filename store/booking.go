package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"batteryswap/models"
)

type bookingRow struct {
	ID             int64
	UserID         int64
	StationID      int64
	BatteryID      int64
	Status         string
	IdempotencyKey *string
	// IdempotencyResponse is the booking as first answered, as JSON.
	IdempotencyResponse *string
	ExpiresAt           time.Time
	WarnedAt            *time.Time
	ReadyAt             *time.Time
	CollectedAt         *time.Time
	CancelledAt         *time.Time
	ReturnedBatteryID   *int64
	CreatedAt           time.Time
	UpdatedAt           time.Time
}

func (bookingRow) TableName() string { return "bookings" }

func (r *bookingRow) model() *models.Booking {
	return &models.Booking{ID: r.ID, UserID: r.UserID, StationID: r.StationID, BatteryID: r.BatteryID, Status: models.BookingStatus(r.Status),
		ExpiresAt: r.ExpiresAt, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, ReadyAt: r.ReadyAt, CollectedAt: r.CollectedAt,
		CancelledAt: r.CancelledAt, ReturnedBatteryID: r.ReturnedBatteryID}
}

var activeStatuses = []string{string(models.BookingConfirmed), string(models.BookingReady)}

// CreateBooking books a battery at a station for a user, atomically: under
// the station's lock it takes the fullest available battery (the booking is
// ready at once) or, when none is, the fullest charging one (confirmed, ready
// when telemetry charges it). With an idempotency key, a repeat returns the
// first booking and replayed=true. Errors: not_found, station_unavailable,
// no_battery_available, active_booking_exists.
func (s *Store) CreateBooking(ctx context.Context, userID, stationID int64, idemKey string) (b *models.Booking, replayed bool, err error) {
	if idemKey != "" {
		if b, err := s.replay(ctx, userID, stationID, idemKey); err == nil {
			return b, true, nil
		} else if !models.IsCode(err, models.CodeNotFound) {
			return nil, false, err
		}
	}
	if s.dialect.pipelines() {
		b, err = s.createBookingPipelined(ctx, userID, stationID, idemKey)
	} else {
		b, err = s.createBookingTx(ctx, userID, stationID, idemKey)
	}
	if err != nil && idemKey != "" && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		// A concurrent request with the same key may have booked while this
		// one waited (it then found the battery taken, or hit the unique
		// index): the key answers with that booking, as it would have had
		// this one come a moment later.
		if b, ferr := s.replay(ctx, userID, stationID, idemKey); ferr == nil || models.IsCode(ferr, models.CodeIdempotencyMismatch) {
			return b, ferr == nil, ferr
		}
	}
	if err != nil && isUniqueViolation(err) {
		// The unique index on active bookings per user refused it.
		return nil, false, models.Errorf(models.CodeActiveBookingExists, "you already hold an active booking")
	}
	if models.IsCode(err, models.CodeNoBatteryAvailable) || models.IsCode(err, models.CodeStationUnavailable) {
		// The station refused before the index could: a rider who holds a
		// booking is told that, which is what stands in their way anywhere
		// (and what the dashboard reloads on). Only failures pay this read.
		var held int64
		if qerr := s.db.WithContext(ctx).Model(&bookingRow{}).
			Where("user_id = ? AND status IN ?", userID, activeStatuses).Count(&held).Error; qerr == nil && held > 0 {
			return nil, false, models.Errorf(models.CodeActiveBookingExists, "you already hold an active booking")
		}
	}
	if err != nil {
		return nil, false, translate(err, "station")
	}
	return b, false, nil
}

// createBookingTx is CreateBooking's transaction through GORM, a statement
// at a time.
func (s *Store) createBookingTx(ctx context.Context, userID, stationID int64, idemKey string) (b *models.Booking, err error) {
	err = s.tx(ctx, func(tx *gorm.DB) error {
		st, err := s.lockStation(tx, stationID)
		if err != nil {
			return err
		}
		if err := stationTakesBookings(st); err != nil { // open and online (presence.go)
			return err
		}
		bat, err := s.claimBattery(tx, st.ID)
		if err != nil {
			return err
		}
		now := s.now()
		row := bookingRow{UserID: userID, StationID: st.ID, BatteryID: bat.ID, Status: string(models.BookingConfirmed),
			ExpiresAt: now.Add(s.opts.BookingHold), CreatedAt: now, UpdatedAt: now}
		ready := bat.ChargePercent >= s.opts.ReadyCharge
		if ready {
			row.Status, row.ReadyAt = string(models.BookingReady), &now
		}
		if err := tx.Create(&row).Error; err != nil {
			return err
		}
		if idemKey != "" {
			first, err := json.Marshal(row.model())
			if err != nil {
				return err
			}
			answer := string(first)
			row.IdempotencyKey, row.IdempotencyResponse = &idemKey, &answer
			if err := tx.Model(&bookingRow{}).Where("id = ?", row.ID).
				Updates(map[string]any{"idempotency_key": idemKey, "idempotency_response": answer}).Error; err != nil {
				return err
			}
		}
		station, err := stationWithInventory(tx, st)
		if err != nil {
			return err
		}
		o := s.outbox(tx, now)
		bookedEvents(o, &row, st, bat, station)
		b = row.model()
		return o.flush()
	})
	return b, err
}

// bookedEvents queues the events of a new booking.
func bookedEvents(o *outboxWriter, row *bookingRow, st *stationRow, bat *batteryRow, station *models.Station) {
	o.add(models.EventBatteryBooked, models.StationTopic(st.ID), map[string]any{
		"station_id": st.ID, "station_name": st.Name, "battery_id": bat.ID, "booking_id": row.ID,
		"available_batteries": station.Available, "booked_batteries": station.Booked,
	})
	o.inventory(station, models.ActionBooked)
	o.bookingEvent(row, st, models.EventBookingConfirmed, "Booking confirmed",
		fmt.Sprintf("Battery %s is held for you at %s until %s.", bat.SerialNumber, st.Name, row.ExpiresAt.Format(time.RFC3339)), models.LevelInfo,
		map[string]any{"battery_info": map[string]any{"id": bat.ID, "serial_number": bat.SerialNumber, "charge_percent": bat.ChargePercent}})
	if row.Status == string(models.BookingReady) {
		o.bookingEvent(row, st, models.EventBookingReady, "Battery ready",
			fmt.Sprintf("Your battery %s at %s is charged and ready to collect.", bat.SerialNumber, st.Name), models.LevelInfo, nil)
	}
}

// bestBatteryFirst orders a station's free batteries: the fullest available
// one first, else the fullest charging one.
const bestBatteryFirst = `CASE status WHEN 'available' THEN 0 ELSE 1 END, charge_percent DESC, id`

// backAtStation is models.ChargeStatus in SQL, so that a battery goes back
// to its station in one statement; %s is the ready charge's placeholder.
const backAtStation = `CASE WHEN batteries.charge_percent >= %s THEN 'available' ELSE 'charging' END`

// claimBattery marks the best free battery of a locked station booked, in
// one statement: the fullest available battery, else the fullest charging
// one. The update's own condition on status is the claim: were the station
// lock ever bypassed, a battery that is no longer free is not taken twice.
func (s *Store) claimBattery(tx *gorm.DB, stationID int64) (*batteryRow, error) {
	var bat batteryRow
	res := tx.Raw(`UPDATE batteries SET status = 'booked', updated_at = ?
		WHERE id = (SELECT id FROM batteries WHERE station_id = ? AND status IN ('available', 'charging')
			ORDER BY `+bestBatteryFirst+` LIMIT 1)
		AND station_id = ? AND status IN ('available', 'charging')
		RETURNING id, station_id, serial_number, charge_percent, health_percent, capacity_kwh, status, created_at, updated_at`,
		s.now(), stationID, stationID).Scan(&bat)
	if res.Error != nil {
		return nil, res.Error
	}
	if res.RowsAffected == 0 || bat.ID == 0 {
		return nil, models.Errorf(models.CodeNoBatteryAvailable, "station %d has no battery ready to book", stationID)
	}
	return &bat, nil
}

// replay returns the first answer to a request with this key, not_found
// when the key is new, or idempotency_key_reused when the key booked at
// another station.
func (s *Store) replay(ctx context.Context, userID, stationID int64, key string) (*models.Booking, error) {
	var r bookingRow
	if err := s.db.WithContext(ctx).Where("user_id = ? AND idempotency_key = ?", userID, key).Take(&r).Error; err != nil {
		return nil, translate(err, "booking")
	}
	if r.StationID != stationID {
		return nil, models.Errorf(models.CodeIdempotencyMismatch, "this Idempotency-Key was used to book at station %d", r.StationID)
	}
	var b models.Booking
	if r.IdempotencyResponse == nil || json.Unmarshal([]byte(*r.IdempotencyResponse), &b) != nil {
		return r.model(), nil
	}
	return &b, nil
}

// FindBookingByID returns one booking (not_found).
func (s *Store) FindBookingByID(ctx context.Context, id int64) (*models.Booking, error) {
	var r bookingRow
	if err := s.db.WithContext(ctx).Take(&r, id).Error; err != nil {
		return nil, translate(err, "booking")
	}
	return r.model(), nil
}

// ListBookings returns a page of bookings, newest first (a user's active
// booking, if any, is always their newest), one user's when the filter
// names one.
func (s *Store) ListBookings(ctx context.Context, f models.BookingFilter) ([]models.Booking, error) {
	q := s.db.WithContext(ctx)
	if f.UserID != nil {
		q = q.Where("user_id = ?", *f.UserID)
	}
	var rows []bookingRow
	if err := page(q, f.Page, "id", true).Find(&rows).Error; err != nil {
		return nil, translate(err, "bookings")
	}
	out := make([]models.Booking, len(rows))
	for i := range rows {
		out[i] = *rows[i].model()
	}
	return out, nil
}

// lockBooking locks the booking's station, then reads the booking. Only a
// booking of actor (or any booking for an admin; nil: the system) is found.
func (s *Store) lockBooking(tx *gorm.DB, id int64, actor *models.User) (*bookingRow, *stationRow, error) {
	var st stationRow
	q := s.dialect.lockStation(tx).Where("id = (SELECT station_id FROM bookings WHERE id = ?)", id)
	if err := q.Take(&st).Error; err != nil {
		return nil, nil, translate(err, "booking")
	}
	var b bookingRow
	if err := tx.Take(&b, id).Error; err != nil {
		return nil, nil, translate(err, "booking")
	}
	if actor != nil && !actor.IsAdmin() && b.UserID != actor.ID {
		return nil, nil, models.Errorf(models.CodeNotFound, "booking not found")
	}
	return &b, &st, nil
}

// CollectBooking hands the booked battery to its holder (only the holder may
// collect) and, with a swap-in, takes the depleted pack into the station.
// Errors: not_found, battery_not_ready (still confirmed), invalid_state
// (finished or expired booking; a swap-in serial that another booking holds).
func (s *Store) CollectBooking(ctx context.Context, id int64, user *models.User, ret *models.ReturnPack) (*models.Booking, error) {
	if ret != nil {
		if err := ret.Validate(); err != nil {
			return nil, err
		}
	}
	var out *models.Booking
	err := s.tx(ctx, func(tx *gorm.DB) error {
		b, st, err := s.lockBooking(tx, id, &models.User{ID: user.ID, Role: models.RoleUser})
		if err != nil {
			return err
		}
		now := s.now()
		switch {
		case b.Status == string(models.BookingConfirmed) && now.Before(b.ExpiresAt):
			return models.Errorf(models.CodeBatteryNotReady, "booking %d: the battery is still charging", b.ID)
		case b.Status != string(models.BookingReady):
			return models.Errorf(models.CodeInvalidState, "booking %d is %s", b.ID, b.Status)
		case !now.Before(b.ExpiresAt):
			return models.Errorf(models.CodeInvalidState, "booking %d has expired", b.ID)
		}
		var bat batteryRow
		if err := tx.Take(&bat, b.BatteryID).Error; err != nil {
			return err
		}
		var returned *batteryRow
		if ret != nil {
			if returned, err = s.swapIn(tx, st, &bat, ret, now); err != nil {
				return err
			}
		}
		if err := tx.Model(&batteryRow{}).Where("id = ?", bat.ID).
			Updates(map[string]any{"status": models.BatteryCollected, "station_id": nil, "updated_at": now}).Error; err != nil {
			return err
		}
		upd := map[string]any{"status": models.BookingCollected, "collected_at": now, "updated_at": now}
		var returnedID any
		if returned != nil {
			upd["returned_battery_id"] = returned.ID
			b.ReturnedBatteryID, returnedID = &returned.ID, returned.ID
		}
		if err := tx.Model(&bookingRow{}).Where("id = ?", b.ID).Updates(upd).Error; err != nil {
			return err
		}
		b.Status, b.CollectedAt, b.UpdatedAt = string(models.BookingCollected), &now, now
		out = b.model()
		station, err := stationWithInventory(tx, st)
		if err != nil {
			return err
		}
		o := s.outbox(tx, now)
		o.add(models.EventBatteryCollected, models.StationTopic(st.ID), map[string]any{
			"station_id": st.ID, "station_name": st.Name, "battery_id": bat.ID, "returned_battery_id": returnedID,
			"available_batteries": station.Available, "booked_batteries": station.Booked, "charging_batteries": station.Charging,
		})
		o.inventory(station, models.ActionCollected)
		o.bookingEvent(b, st, models.EventBookingCollected, "Battery collected",
			fmt.Sprintf("You collected battery %s at %s.", bat.SerialNumber, st.Name), models.LevelInfo, nil)
		return o.flush()
	})
	return out, translate(err, "booking")
}

// swapIn takes a depleted pack into a station: a known serial moves here
// (announcing the inventory of the station it left), an unknown one is
// created; a serial that a booking holds, or the pack being collected, is
// refused.
//
// A known pack is moved by a conditional update, under the lock of the
// station it is at (when that is another one): if it moved or changed
// between the read and the update (another swap-in, telemetry), nothing is
// written and it is read again. So a pack never leaves a station without
// that station's lock, and every station it leaves is announced.
func (s *Store) swapIn(tx *gorm.DB, st *stationRow, collecting *batteryRow, ret *models.ReturnPack, now time.Time) (*batteryRow, error) {
	status := string(models.ChargeStatus(ret.ChargePercent, s.opts.ReadyCharge))
	held := models.Errorf(models.CodeInvalidState, "battery %s is held by a booking and cannot be handed in", ret.SerialNumber)
	// An unknown serial is created; one created meanwhile by another
	// swap-in (its insert waits for that one to commit) is a known pack.
	fresh := batteryRow{StationID: &st.ID, SerialNumber: ret.SerialNumber, ChargePercent: ret.ChargePercent, HealthPercent: 100,
		CapacityKwh: models.DefaultCapacityKWh, Status: status, CreatedAt: now, UpdatedAt: now}
	res := tx.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "serial_number"}}, DoNothing: true}).Create(&fresh)
	if res.Error != nil {
		return nil, res.Error
	}
	if res.RowsAffected == 1 {
		return &fresh, nil
	}
	for attempt := 0; ; attempt++ {
		var r batteryRow
		if err := tx.Where("serial_number = ?", ret.SerialNumber).Take(&r).Error; err != nil {
			return nil, err
		}
		if r.ID == collecting.ID || r.Status == string(models.BatteryBooked) {
			return nil, held
		}
		var from *stationRow
		if r.StationID != nil && *r.StationID != st.ID {
			var err error
			if from, err = s.lockStation(tx, *r.StationID); err != nil {
				return nil, err
			}
		}
		res := asRead(tx, &r, r.Status).Updates(map[string]any{"station_id": st.ID, "charge_percent": ret.ChargePercent, "status": status, "updated_at": now})
		if res.Error != nil {
			return nil, res.Error
		}
		if res.RowsAffected == 0 {
			if attempt == 2 {
				return nil, models.Errorf(models.CodeConflict, "battery %s keeps changing; try again", ret.SerialNumber)
			}
			continue // it moved or changed since it was read
		}
		if from != nil {
			station, err := stationWithInventory(tx, from)
			if err != nil {
				return nil, err
			}
			o := s.outbox(tx, now)
			o.inventory(station, models.ActionUpdated)
			if err := o.flush(); err != nil {
				return nil, err
			}
		}
		r.StationID, r.ChargePercent, r.Status = &st.ID, ret.ChargePercent, status
		return &r, nil
	}
}

// CancelBooking ends an active booking of actor (any booking for an admin)
// and puts its battery back at the station (not_found, invalid_state).
func (s *Store) CancelBooking(ctx context.Context, id int64, actor *models.User) (*models.Booking, error) {
	if s.dialect.pipelines() {
		return s.cancelBookingPipelined(ctx, id, actor)
	}
	var out *models.Booking
	err := s.tx(ctx, func(tx *gorm.DB) error {
		b, st, err := s.lockBooking(tx, id, actor)
		if err != nil {
			return err
		}
		if !models.BookingStatus(b.Status).Active() {
			return models.Errorf(models.CodeInvalidState, "booking %d is %s", b.ID, b.Status)
		}
		out, err = s.release(tx, b, st, models.BookingCancelled)
		return err
	})
	return out, translate(err, "booking")
}

// release ends an active booking as cancelled or expired: the battery goes
// back to the station and both the station and the holder are told.
func (s *Store) release(tx *gorm.DB, b *bookingRow, st *stationRow, to models.BookingStatus) (*models.Booking, error) {
	now := s.now()
	upd := map[string]any{"status": to, "updated_at": now}
	if to == models.BookingCancelled {
		upd["cancelled_at"] = now
	}
	res := tx.Model(&bookingRow{}).Where("id = ? AND status IN ?", b.ID, activeStatuses).Updates(upd)
	if res.Error != nil {
		return nil, res.Error
	}
	if res.RowsAffected == 0 {
		return nil, models.Errorf(models.CodeInvalidState, "booking %d is no longer active", b.ID)
	}
	if err := tx.Exec(`UPDATE batteries SET status = `+fmt.Sprintf(backAtStation, "?")+`, updated_at = ?
		WHERE id = ?`, s.opts.ReadyCharge, now, b.BatteryID).Error; err != nil {
		return nil, err
	}
	b.Status, b.UpdatedAt = string(to), now
	if to == models.BookingCancelled {
		b.CancelledAt = &now
	}
	station, err := stationWithInventory(tx, st)
	if err != nil {
		return nil, err
	}
	o := s.outbox(tx, now)
	releasedEvents(o, b, st, station, to)
	return b.model(), o.flush()
}

// releasedEvents queues the events of a booking cancelled or expired.
func releasedEvents(o *outboxWriter, b *bookingRow, st *stationRow, station *models.Station, to models.BookingStatus) {
	if to == models.BookingCancelled {
		o.inventory(station, models.ActionCancelled)
		o.bookingEvent(b, st, models.EventBookingCancelled, "Booking cancelled",
			fmt.Sprintf("Your booking at %s was cancelled.", st.Name), models.LevelInfo, nil)
		return
	}
	o.inventory(station, models.ActionExpired)
	o.bookingEvent(b, st, models.EventBookingExpired, "Booking expired",
		fmt.Sprintf("Your booking at %s expired and its battery went back to the station.", st.Name), models.LevelWarning, nil)
}
