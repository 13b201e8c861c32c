package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"batteryswap/models"
)

type batteryRow struct {
	ID            int64
	StationID     *int64
	SerialNumber  string
	ChargePercent int
	HealthPercent int
	CapacityKwh   float64 `gorm:"column:capacity_kwh"`
	Status        string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

func (batteryRow) TableName() string { return "batteries" }

func (r *batteryRow) model() *models.Battery {
	return &models.Battery{ID: r.ID, StationID: r.StationID, SerialNumber: r.SerialNumber, ChargePercent: r.ChargePercent,
		HealthPercent: r.HealthPercent, CapacityKWh: r.CapacityKwh, Status: models.BatteryStatus(r.Status), CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

// ListBatteries returns a station's batteries in id order (not_found for an
// unknown station).
func (s *Store) ListBatteries(ctx context.Context, stationID int64, p models.Page) ([]models.Battery, error) {
	if ok, err := s.StationExists(ctx, stationID); err != nil {
		return nil, err
	} else if !ok {
		return nil, models.Errorf(models.CodeNotFound, "station %d not found", stationID)
	}
	var rows []batteryRow
	if err := page(s.db.WithContext(ctx).Where("station_id = ?", stationID), p, "id", false).Find(&rows).Error; err != nil {
		return nil, translate(err, "batteries")
	}
	out := make([]models.Battery, len(rows))
	for i := range rows {
		out[i] = *rows[i].model()
	}
	return out, nil
}

// FindBatteryByID returns one battery (not_found).
func (s *Store) FindBatteryByID(ctx context.Context, id int64) (*models.Battery, error) {
	var r batteryRow
	if err := s.db.WithContext(ctx).Take(&r, id).Error; err != nil {
		return nil, translate(err, "battery")
	}
	return r.model(), nil
}

// AddBattery puts a new battery at a station: available at or above the ready
// charge, charging under it. A serial number that exists is invalid_state.
func (s *Store) AddBattery(ctx context.Context, stationID int64, in models.BatteryInput) (*models.Battery, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	var out *models.Battery
	err := s.tx(ctx, func(tx *gorm.DB) error {
		st, err := s.lockStation(tx, stationID)
		if err != nil {
			return err
		}
		now := s.now()
		capacity := models.DefaultCapacityKWh
		if in.CapacityKWh != nil {
			capacity = *in.CapacityKWh
		}
		r := batteryRow{StationID: &st.ID, SerialNumber: in.SerialNumber, ChargePercent: *in.ChargePercent, HealthPercent: 100,
			CapacityKwh: capacity, Status: string(models.ChargeStatus(*in.ChargePercent, s.opts.ReadyCharge)), CreatedAt: now, UpdatedAt: now}
		if err := tx.Create(&r).Error; err != nil {
			if isUniqueViolation(err) {
				return models.Errorf(models.CodeInvalidState, "a battery with serial number %q already exists", in.SerialNumber)
			}
			return err
		}
		out = r.model()
		station, err := stationWithInventory(tx, st)
		if err != nil {
			return err
		}
		o := s.outbox(tx, now)
		o.add(models.EventBatteryAdded, models.StationTopic(st.ID), map[string]any{
			"station_id": st.ID, "station_name": st.Name, "battery_id": r.ID,
			"available_batteries": station.Available, "total_batteries": station.Total,
		})
		o.inventory(station, models.ActionAdded)
		return o.flush()
	})
	return out, translate(err, "station")
}

// UpdateBattery applies station telemetry. A free battery's status follows
// its charge (available at or above the ready charge, charging under it)
// unless it is put into or kept in maintenance; booked and collected
// batteries only take the charge reading. A booked battery that reaches the
// ready charge makes its confirmed booking ready.
func (s *Store) UpdateBattery(ctx context.Context, id int64, p models.BatteryPatch) (*models.Battery, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b, _, err := s.updateBattery(ctx, id, p)
	return b, err
}

// updateBattery is UpdateBattery unchecked, and reports whether it changed
// anything. An empty patch re-classes the battery by the charge it has; if
// that changes nothing (the battery is in line, or its booking is ready
// already), nothing is written.
func (s *Store) updateBattery(ctx context.Context, id int64, p models.BatteryPatch) (*models.Battery, bool, error) {
	var out *models.Battery
	changed := false
	err := s.tx(ctx, func(tx *gorm.DB) error {
		var peek batteryRow
		if err := tx.Select("station_id").Take(&peek, id).Error; err != nil {
			return translate(err, "battery")
		}
		var st *stationRow
		if peek.StationID != nil {
			var err error
			if st, err = s.lockStation(tx, *peek.StationID); err != nil {
				return err
			}
		}
		var b batteryRow
		if err := tx.Take(&b, id).Error; err != nil {
			return translate(err, "battery")
		}
		if st == nil && b.StationID != nil || st != nil && (b.StationID == nil || *b.StationID != st.ID) {
			// The battery moved between the peek and the lock; the caller may retry.
			return models.Errorf(models.CodeConflict, "battery %d changed concurrently; try again", id)
		}
		before := b.Status
		if p.ChargePercent != nil {
			b.ChargePercent = *p.ChargePercent
		}
		free := b.Status == string(models.BatteryAvailable) || b.Status == string(models.BatteryCharging) || b.Status == string(models.BatteryMaintenance)
		switch {
		case p.Status != nil && !free:
			return models.Errorf(models.CodeInvalidState, "battery %d is %s; its status belongs to its booking", id, b.Status)
		case p.Status != nil && *p.Status == models.BatteryMaintenance:
			b.Status = string(models.BatteryMaintenance)
		case p.Status != nil:
			want := models.ChargeStatus(b.ChargePercent, s.opts.ReadyCharge)
			if *p.Status != want {
				return models.ValidationError(map[string]string{"status": fmt.Sprintf("a battery at %d%% is %s (ready at %d%%)", b.ChargePercent, want, s.opts.ReadyCharge)})
			}
			b.Status = string(want)
		case b.Status != string(models.BatteryMaintenance) && free:
			b.Status = string(models.ChargeStatus(b.ChargePercent, s.opts.ReadyCharge))
		}
		now := s.now()
		out = b.model()
		reclass := p == (models.BatteryPatch{})
		if !reclass || b.Status != before {
			b.UpdatedAt = now
			// Conditional: a battery with no station (a collected pack) is
			// not under any station lock, and a swap-in may have taken it
			// into a station since it was read; that change stands.
			res := asRead(tx, &b, before).Updates(map[string]any{"charge_percent": b.ChargePercent, "status": b.Status, "updated_at": now})
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected == 0 {
				return models.Errorf(models.CodeConflict, "battery %d changed concurrently; try again", id)
			}
			out, changed = b.model(), true
		}
		if st == nil {
			return nil
		}
		o := s.outbox(tx, now)
		if !reclass {
			// Telemetry is the station's controller reporting in (presence.go).
			if err := s.heardFrom(tx, o, st, now); err != nil {
				return err
			}
		}
		if b.Status != before {
			station, err := stationWithInventory(tx, st)
			if err != nil {
				return err
			}
			action := models.ActionUpdated
			if b.Status == string(models.BatteryAvailable) && before == string(models.BatteryCharging) {
				action = models.ActionCharged
			}
			o.inventory(station, action)
		}
		if b.Status == string(models.BatteryBooked) && b.ChargePercent >= s.opts.ReadyCharge {
			readied, err := s.readyBookingOf(tx, o, &b, st, now)
			if err != nil {
				return err
			}
			changed = changed || readied
		}
		return o.flush()
	})
	return out, changed, translate(err, "battery")
}

// asRead narrows an update to battery b as it was read: at the same station
// (or none) and with status read. A battery that moved or changed since
// (another swap-in, telemetry) is left alone: the update changes no row.
func asRead(tx *gorm.DB, b *batteryRow, read string) *gorm.DB {
	q := tx.Model(&batteryRow{}).Where("id = ? AND status = ?", b.ID, read)
	if b.StationID == nil {
		return q.Where("station_id IS NULL")
	}
	return q.Where("station_id = ?", *b.StationID)
}

// readyBookingOf turns the confirmed booking that holds b ready and tells its holder.
func (s *Store) readyBookingOf(tx *gorm.DB, o *outboxWriter, b *batteryRow, st *stationRow, now time.Time) (bool, error) {
	var bk bookingRow
	// A booking whose hold has run out is the expirer's, not ready: its
	// rider is not told to come for a battery that is about to go back.
	err := tx.Where("battery_id = ? AND status = ? AND expires_at > ?", b.ID, models.BookingConfirmed, now).Take(&bk).Error
	if err == gorm.ErrRecordNotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	res := tx.Model(&bookingRow{}).Where("id = ? AND status = ?", bk.ID, models.BookingConfirmed).
		Updates(map[string]any{"status": models.BookingReady, "ready_at": now, "updated_at": now})
	if res.Error != nil || res.RowsAffected == 0 {
		return false, res.Error
	}
	o.bookingEvent(&bk, st, models.EventBookingReady, "Battery ready",
		fmt.Sprintf("Your battery %s at %s is charged and ready to collect.", b.SerialNumber, st.Name), models.LevelInfo, nil)
	return true, nil
}

// ReclassByCharge brings every battery at a station in line with
// READY_CHARGE, as telemetry of its own charge would: a free battery is
// available at or over it and charging under it, and a booking (within its
// hold) whose battery is over it is ready. Batteries only change class on
// telemetry, so after READY_CHARGE changed, stored ones keep the old
// threshold until this runs (serve runs it at start and every minute). It
// writes the same events telemetry does and reports how many batteries it
// changed. Safe to run on several instances at once: each battery is
// re-read under its station's lock, and one already in line is left alone.
// A battery it cannot re-class now (a concurrent change, a deadlock) is
// left for the next run, and reported in err after the others are done.
func (s *Store) ReclassByCharge(ctx context.Context) (n int, err error) {
	ready := s.opts.ReadyCharge
	var ids []int64
	if err := s.db.WithContext(ctx).Model(&batteryRow{}).
		Where("station_id IS NOT NULL AND ("+
			"(status = ? AND charge_percent < ?) OR (status = ? AND charge_percent >= ?) OR "+
			"(status = ? AND charge_percent >= ? AND id IN (SELECT battery_id FROM bookings WHERE status = ? AND expires_at > ?)))",
			models.BatteryAvailable, ready, models.BatteryCharging, ready,
			models.BatteryBooked, ready, models.BookingConfirmed, s.now()).
		Order("id").Pluck("id", &ids).Error; err != nil {
		return 0, translate(err, "batteries")
	}
	var failed []error
	for _, id := range ids {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		_, changed, err := s.updateBattery(ctx, id, models.BatteryPatch{}) // its charge as it is under the lock
		switch {
		case models.IsCode(err, models.CodeConflict), models.IsCode(err, models.CodeNotFound):
			// Moved or changed meanwhile: whoever changed it classed it.
		case err != nil:
			failed = append(failed, fmt.Errorf("battery %d: %w", id, err))
		case changed:
			n++
		}
	}
	return n, errors.Join(failed...)
}
