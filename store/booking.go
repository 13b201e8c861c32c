package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
	b, err = s.createBookingTx(ctx, userID, stationID, idemKey)
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

// createBookingTx is CreateBooking's transaction: lock the station, claim
// a battery and insert the booking (the dialect's book), keep the first
// answer for the idempotency key, write the outbox rows.
func (s *Store) createBookingTx(ctx context.Context, userID, stationID int64, idemKey string) (b *models.Booking, err error) {
	var key *string
	if idemKey != "" {
		key = &idemKey
	}
	err = s.tx(ctx, func(tx *gorm.DB) error {
		st, err := s.lockStation(tx, stationID)
		if err != nil {
			return err
		}
		if err := stationTakesBookings(st); err != nil { // open and online (presence.go)
			return err
		}
		r, err := s.dialect.book(tx, bookArgs{station: st, userID: userID, key: key, now: s.now(), ready: s.opts.ReadyCharge, hold: s.opts.BookingHold})
		if err != nil {
			return err
		}
		if r == nil {
			return models.Errorf(models.CodeNoBatteryAvailable, "station %d has no battery ready to book", stationID)
		}
		row := &r.booking
		if key != nil {
			first, err := json.Marshal(row.model())
			if err != nil {
				return err
			}
			if err := tx.Model(&bookingRow{}).Where("id = ?", row.ID).Update("idempotency_response", string(first)).Error; err != nil {
				return err
			}
		}
		o := s.outbox(tx, row.CreatedAt)
		o.reserved = r.noteIDs
		bookedEvents(o, row, st, &r.battery, st.model(r.inv))
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

// bookArgs is what a dialect's book needs: the locked, open station, the
// rider, the idempotency key (or nil) and the clock's time; ready and hold
// are the booking rules.
type bookArgs struct {
	station *stationRow
	userID  int64
	key     *string
	now     time.Time
	ready   int
	hold    time.Duration
}

// bookResult is the booking inserted, the battery it claimed (id, serial,
// charge), the station's counts after the claim and, where the dialect
// reserves them, the ids of the booking's notifications.
type bookResult struct {
	booking bookingRow
	battery batteryRow
	inv     models.Inventory
	noteIDs []int64
}

// pgBooked is pgBook's row.
type pgBooked struct {
	ID            int64
	Status        string
	ExpiresAt     time.Time
	ReadyAt       *time.Time
	CreatedAt     time.Time
	BatteryID     int64
	SerialNumber  string
	ChargePercent int
	Was           string
	Available     int
	Booked        int
	Charging      int
	Total         int
	Note1         int64
	Note2         *int64
}

// book on PostgreSQL is one statement (pgBook) after the lock; it reserves
// the ids of the notifications, so that the outbox rows go in one more
// (postgresDialect.writeOutbox).
func (*postgresDialect) book(tx *gorm.DB, a bookArgs) (*bookResult, error) {
	var r pgBooked
	// Raw statements end in Find, not Scan: GORM's Scan renders every
	// statement with its arguments into text for a log, whether or not
	// anything logs (its trace recorder), on each call.
	res := tx.Raw(pgBook, map[string]any{"station": a.station.ID, "since": a.station.UpdatedAt, "now": a.now, "user": a.userID,
		"ready": a.ready, "key": a.key, "hold": a.hold.Microseconds()}).Find(&r)
	if res.Error != nil {
		return nil, res.Error
	}
	if res.RowsAffected == 0 {
		return nil, nil
	}
	out := &bookResult{
		booking: bookingRow{ID: r.ID, UserID: a.userID, StationID: a.station.ID, BatteryID: r.BatteryID, Status: r.Status, IdempotencyKey: a.key,
			ExpiresAt: r.ExpiresAt, ReadyAt: r.ReadyAt, CreatedAt: r.CreatedAt, UpdatedAt: r.CreatedAt},
		battery: batteryRow{ID: r.BatteryID, StationID: &a.station.ID, SerialNumber: r.SerialNumber, ChargePercent: r.ChargePercent, Status: string(models.BatteryBooked)},
		inv:     models.Inventory{Available: r.Available, Booked: r.Booked, Charging: r.Charging, Total: r.Total},
		noteIDs: []int64{r.Note1},
	}
	// The counts are the station's as the statement found it.
	shift(&out.inv, r.Was, string(models.BatteryBooked))
	if r.Note2 != nil {
		// In the order the notifications were made, whatever order the
		// select list's nextval calls ran in.
		out.noteIDs = append(out.noteIDs, *r.Note2)
		slices.Sort(out.noteIDs)
	}
	return out, nil
}

// pgBook claims the best free battery of the locked station, inserts the
// booking for it, counts the station's batteries and reserves the ids of
// the booking's notifications (the second only when it is ready at once),
// in one statement. It runs after the lock, so its snapshot sees every
// change that committed before. The count sees the station as it was when
// the statement began, so the caller moves the claimed battery from its old
// status (was) to booked. The booking's time is the stamp rule's (stamp):
// the clock (@now), or the station's last change (@since, its batteries'
// newest updated_at) if that is later; one scan of the station's batteries
// gives both that and the count.
const pgBook = `WITH inv AS (
	SELECT ` + inventoryColumns + `, GREATEST(CAST(@now AS timestamptz), CAST(@since AS timestamptz), max(updated_at)) AS at
	FROM batteries WHERE station_id = @station
), pick AS (
	SELECT id, status FROM batteries
	WHERE station_id = @station AND status IN ('available', 'charging')
	ORDER BY ` + bestBatteryFirst + ` LIMIT 1
), claimed AS (
	UPDATE batteries SET status = 'booked', updated_at = inv.at FROM pick, inv
	WHERE batteries.id = pick.id AND batteries.station_id = @station AND batteries.status IN ('available', 'charging')
	RETURNING batteries.id, batteries.serial_number, batteries.charge_percent, pick.status AS was, inv.at
), booked AS (
	INSERT INTO bookings (user_id, station_id, battery_id, status, idempotency_key, expires_at, ready_at, created_at, updated_at)
	SELECT @user, @station, id, CASE WHEN charge_percent >= @ready THEN 'ready' ELSE 'confirmed' END, @key,
		at + @hold * interval '1 microsecond', CASE WHEN charge_percent >= @ready THEN at END, at, at
	FROM claimed
	RETURNING id, battery_id, status, expires_at, ready_at, created_at
)
SELECT booked.id, booked.status, booked.expires_at, booked.ready_at, booked.created_at,
	claimed.id AS battery_id, claimed.serial_number, claimed.charge_percent, claimed.was,
	inv.available, inv.booked, inv.charging, inv.total,
	nextval('notifications_id_seq') AS note1, CASE booked.status WHEN 'ready' THEN nextval('notifications_id_seq') END AS note2
FROM booked JOIN claimed ON claimed.id = booked.battery_id CROSS JOIN inv`

// book on SQLite is a statement at a time (the one connection makes each
// cheap; SQLite has no data-modifying WITH): the stamp, the pick, the
// claim, the insert, the count.
func (*sqliteDialect) book(tx *gorm.DB, a bookArgs) (*bookResult, error) {
	at, err := stamp(tx, a.station, a.now)
	if err != nil {
		return nil, err
	}
	var bat batteryRow
	res := tx.Raw(`SELECT * FROM batteries WHERE station_id = ? AND status IN ('available', 'charging')
		ORDER BY `+bestBatteryFirst+` LIMIT 1`, a.station.ID).Find(&bat)
	if res.Error != nil || res.RowsAffected == 0 {
		return nil, res.Error
	}
	if res := tx.Exec(`UPDATE batteries SET status = 'booked', updated_at = ? WHERE id = ? AND status IN ('available', 'charging')`,
		at, bat.ID); res.Error != nil || res.RowsAffected == 0 {
		return nil, res.Error
	}
	bat.Status, bat.UpdatedAt = string(models.BatteryBooked), at
	row := bookingRow{UserID: a.userID, StationID: a.station.ID, BatteryID: bat.ID, Status: string(models.BookingConfirmed),
		IdempotencyKey: a.key, ExpiresAt: at.Add(a.hold), CreatedAt: at, UpdatedAt: at}
	if bat.ChargePercent >= a.ready {
		row.Status, row.ReadyAt = string(models.BookingReady), &at
	}
	if err := tx.Create(&row).Error; err != nil {
		return nil, err
	}
	inv, err := inventories(tx, []int64{a.station.ID})
	if err != nil {
		return nil, err
	}
	return &bookResult{booking: row, battery: bat, inv: inv[a.station.ID]}, nil
}

// shift moves one battery from one status to another in a station's counts.
func shift(inv *models.Inventory, from, to string) {
	for _, c := range []struct {
		status string
		d      int
	}{{from, -1}, {to, +1}} {
		switch models.BatteryStatus(c.status) {
		case models.BatteryAvailable:
			inv.Available += c.d
		case models.BatteryBooked:
			inv.Booked += c.d
		case models.BatteryCharging:
			inv.Charging += c.d
		}
	}
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
	st, err := s.lockStationOf(tx, id)
	if err != nil {
		return nil, nil, err
	}
	var b bookingRow
	if err := tx.Take(&b, id).Error; err != nil {
		return nil, nil, translate(err, "booking")
	}
	if actor != nil && !actor.IsAdmin() && b.UserID != actor.ID {
		return nil, nil, models.Errorf(models.CodeNotFound, "booking not found")
	}
	return &b, st, nil
}

// CollectBooking hands the booked battery to its holder (only the holder may
// collect) and, with a swap-in, takes the depleted pack into the station.
// Errors: not_found, battery_not_ready (still confirmed), invalid_state
// (finished or expired booking), battery_not_returnable (a swap-in of a
// known pack that is not out with a rider).
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
		// The clock decides whether the hold has run out; the change is
		// stamped by the rule every change under a station's lock follows.
		at, err := stamp(tx, st, now, b.UpdatedAt)
		if err != nil {
			return err
		}
		var bat batteryRow
		if err := tx.Take(&bat, b.BatteryID).Error; err != nil {
			return err
		}
		var returned *batteryRow
		if ret != nil {
			if returned, err = s.swapIn(tx, st, ret, at); err != nil {
				return err
			}
		}
		if err := tx.Model(&batteryRow{}).Where("id = ?", bat.ID).
			Updates(map[string]any{"status": models.BatteryCollected, "station_id": nil, "updated_at": at}).Error; err != nil {
			return err
		}
		upd := map[string]any{"status": models.BookingCollected, "collected_at": at, "updated_at": at}
		var returnedID any
		if returned != nil {
			upd["returned_battery_id"] = returned.ID
			b.ReturnedBatteryID, returnedID = &returned.ID, returned.ID
		}
		if err := tx.Model(&bookingRow{}).Where("id = ?", b.ID).Updates(upd).Error; err != nil {
			return err
		}
		b.Status, b.CollectedAt, b.UpdatedAt = string(models.BookingCollected), &at, at
		out = b.model()
		station, err := stationWithInventory(tx, st)
		if err != nil {
			return err
		}
		o := s.outbox(tx, at)
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

// swapIn takes a depleted pack into a station: an unknown serial joins the
// fleet here; a known one only when that pack is out with a rider
// (collected, at no station). A pack at any station (this one included),
// in maintenance or booked (the pack being collected too) is refused with
// battery_not_returnable, and the caller's transaction writes nothing.
//
// A collected pack is under no station's lock, so it is moved by a
// conditional update on it being collected still: if another swap-in took
// it meanwhile (its insert or update waits for that one to commit), it is
// read again, and now it is at a station.
func (s *Store) swapIn(tx *gorm.DB, st *stationRow, ret *models.ReturnPack, now time.Time) (*batteryRow, error) {
	status := string(models.ChargeStatus(ret.ChargePercent, s.opts.ReadyCharge))
	// An unknown serial is created; one created meanwhile by another
	// swap-in is a known pack.
	fresh := batteryRow{StationID: &st.ID, SerialNumber: ret.SerialNumber, ChargePercent: ret.ChargePercent, HealthPercent: 100,
		CapacityKwh: models.DefaultCapacityKWh, Status: status, CreatedAt: now, UpdatedAt: now}
	res := tx.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "serial_number"}}, DoNothing: true}).Create(&fresh)
	if res.Error != nil {
		return nil, res.Error
	}
	if res.RowsAffected == 1 {
		return &fresh, nil
	}
	var r batteryRow
	if err := tx.Where("serial_number = ?", ret.SerialNumber).Take(&r).Error; err != nil {
		return nil, err
	}
	if r.Status != string(models.BatteryCollected) || r.StationID != nil {
		where := "at a station"
		switch models.BatteryStatus(r.Status) {
		case models.BatteryBooked:
			where = "booked"
		case models.BatteryMaintenance:
			where = "in maintenance"
		}
		return nil, notReturnable(ret.SerialNumber, where)
	}
	res = asRead(tx, &r, r.Status).Updates(map[string]any{"station_id": st.ID, "charge_percent": ret.ChargePercent, "status": status, "updated_at": now})
	if res.Error != nil {
		return nil, res.Error
	}
	if res.RowsAffected == 0 {
		return nil, notReturnable(ret.SerialNumber, "handed in elsewhere meanwhile")
	}
	r.StationID, r.ChargePercent, r.Status, r.UpdatedAt = &st.ID, ret.ChargePercent, status, now
	return &r, nil
}

func notReturnable(serial, where string) error {
	return models.Errorf(models.CodeBatteryNotReturnable, "battery %s is %s, not out with a rider: it cannot be handed in", serial, where)
}

// CancelBooking ends an active booking of actor (any booking for an admin)
// and puts its battery back at the station (not_found, invalid_state).
func (s *Store) CancelBooking(ctx context.Context, id int64, actor *models.User) (*models.Booking, error) {
	a := releaseArgs{bookingID: id, cancel: true, anyBooking: actor == nil || actor.IsAdmin()}
	if actor != nil {
		a.actorID = actor.ID
	}
	var out *models.Booking
	err := s.tx(ctx, func(tx *gorm.DB) error {
		var err error
		out, err = s.release(tx, a)
		if err == nil && out == nil {
			// No active booking of the actor's: say why, from the booking
			// as it is.
			var r bookingRow
			if err := tx.Select("user_id", "status").Take(&r, id).Error; err != nil {
				return translate(err, "booking")
			}
			if !a.anyBooking && r.UserID != a.actorID {
				return models.Errorf(models.CodeNotFound, "booking not found")
			}
			return models.Errorf(models.CodeInvalidState, "booking %d is %s", id, r.Status)
		}
		return err
	})
	return out, translate(err, "booking")
}

// release ends the active booking a names (under its station's lock) as
// cancelled, or as expired once its hold has run out: the battery goes back
// to the station and both the station and the holder are told. It returns
// nil, and writes nothing, when no booking matched.
func (s *Store) release(tx *gorm.DB, a releaseArgs) (*models.Booking, error) {
	st, err := s.lockStationOf(tx, a.bookingID)
	if err != nil {
		return nil, err
	}
	a.station, a.now, a.ready = st, s.now(), s.opts.ReadyCharge
	r, err := s.dialect.release(tx, a)
	if err != nil || r == nil {
		return nil, err
	}
	o := s.outbox(tx, r.booking.UpdatedAt)
	o.reserved = r.noteIDs
	releasedEvents(o, &r.booking, st, st.model(r.inv), r.booking.Status == string(models.BookingCancelled))
	return r.booking.model(), o.flush()
}

// lockStationOf locks the station of a booking (not_found).
func (s *Store) lockStationOf(tx *gorm.DB, bookingID int64) (*stationRow, error) {
	var st stationRow
	q := s.dialect.lock(tx).Where("id = (SELECT station_id FROM bookings WHERE id = ?)", bookingID)
	if err := q.Take(&st).Error; err != nil {
		return nil, translate(err, "booking")
	}
	return &st, nil
}

// releasedEvents queues the events of a booking cancelled or expired.
func releasedEvents(o *outboxWriter, b *bookingRow, st *stationRow, station *models.Station, cancelled bool) {
	if cancelled {
		o.inventory(station, models.ActionCancelled)
		o.bookingEvent(b, st, models.EventBookingCancelled, "Booking cancelled",
			fmt.Sprintf("Your booking at %s was cancelled.", st.Name), models.LevelInfo, nil)
		return
	}
	o.inventory(station, models.ActionExpired)
	o.bookingEvent(b, st, models.EventBookingExpired, "Booking expired",
		fmt.Sprintf("Your booking at %s expired and its battery went back to the station.", st.Name), models.LevelWarning, nil)
}

// releaseArgs names the booking to end and how: cancelled (by actorID, or
// by anyone when anyBooking) or expired (only once its hold ran out by
// now); station is its locked station, ready the ready charge.
type releaseArgs struct {
	bookingID  int64
	cancel     bool
	anyBooking bool
	actorID    int64
	station    *stationRow
	now        time.Time
	ready      int
}

// releaseResult is the booking ended, the station's counts after its
// battery went back and, where the dialect reserves it, the id of the
// holder's notification.
type releaseResult struct {
	booking bookingRow
	inv     models.Inventory
	noteIDs []int64
}

// pgReleased is pgRelease's row.
type pgReleased struct {
	Booking   bookingRow `gorm:"embedded"` // the idempotency columns stay empty
	Was       string
	Back      string
	Available int
	Booked    int
	Charging  int
	Total     int
	Note1     int64
}

// release on PostgreSQL is one statement (pgRelease) after the lock.
func (*postgresDialect) release(tx *gorm.DB, a releaseArgs) (*releaseResult, error) {
	var r pgReleased
	res := tx.Raw(pgRelease, map[string]any{"id": a.bookingID, "since": a.station.UpdatedAt, "now": a.now, "cancel": a.cancel,
		"any": a.anyBooking, "actor": a.actorID, "ready": a.ready}).Find(&r)
	if res.Error != nil || res.RowsAffected == 0 {
		return nil, res.Error
	}
	out := &releaseResult{booking: r.Booking, inv: models.Inventory{Available: r.Available, Booked: r.Booked, Charging: r.Charging, Total: r.Total},
		noteIDs: []int64{r.Note1}}
	shift(&out.inv, r.Was, r.Back)
	return out, nil
}

// pgRelease ends an active booking (of @actor unless @any; only once it is
// due unless @cancel) as cancelled or expired, puts its battery back, counts
// the station's batteries (as they were when the statement began) and
// reserves the id of the notification, in one statement. Its time is the
// stamp rule's: the clock, or the last change of the booking, of the station
// (@since) or of its batteries, if that is later.
var pgRelease = `WITH b AS (
	SELECT station_id, GREATEST(CAST(@now AS timestamptz), CAST(@since AS timestamptz), updated_at) AS at FROM bookings WHERE id = @id
), inv AS (
	SELECT ` + inventoryColumns + `, GREATEST(max(updated_at), (SELECT at FROM b)) AS at
	FROM batteries WHERE station_id = (SELECT station_id FROM b)
), ended AS (
	UPDATE bookings SET status = CASE WHEN @cancel THEN 'cancelled' ELSE 'expired' END,
		cancelled_at = CASE WHEN @cancel THEN inv.at END, updated_at = inv.at FROM inv
	WHERE bookings.id = @id AND bookings.status IN ('confirmed', 'ready') AND (@any OR bookings.user_id = @actor)
		AND (@cancel OR bookings.expires_at <= CAST(@now AS timestamptz))
	RETURNING bookings.id, bookings.user_id, bookings.station_id, bookings.battery_id, bookings.status,
		bookings.expires_at, bookings.warned_at, bookings.ready_at, bookings.collected_at, bookings.cancelled_at,
		bookings.returned_battery_id, bookings.created_at, bookings.updated_at
), returned AS (
	UPDATE batteries SET status = ` + fmt.Sprintf(backAtStation, "@ready") + `, updated_at = ended.updated_at
	FROM ended, batteries AS old
	WHERE batteries.id = ended.battery_id AND old.id = batteries.id
	RETURNING old.status AS was, batteries.status AS back
)
SELECT ended.*, returned.was, returned.back, inv.available, inv.booked, inv.charging, inv.total,
	nextval('notifications_id_seq') AS note1
FROM ended CROSS JOIN returned CROSS JOIN inv`

// release on SQLite is a statement at a time.
func (*sqliteDialect) release(tx *gorm.DB, a releaseArgs) (*releaseResult, error) {
	var b bookingRow
	if err := tx.Take(&b, a.bookingID).Error; errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	if !models.BookingStatus(b.Status).Active() || !a.anyBooking && b.UserID != a.actorID || !a.cancel && a.now.Before(b.ExpiresAt) {
		return nil, nil
	}
	at, err := stamp(tx, a.station, a.now, b.UpdatedAt)
	if err != nil {
		return nil, err
	}
	upd := map[string]any{"status": models.BookingExpired, "updated_at": at}
	b.Status, b.UpdatedAt = string(models.BookingExpired), at
	if a.cancel {
		upd["status"], upd["cancelled_at"] = models.BookingCancelled, at
		b.Status, b.CancelledAt = string(models.BookingCancelled), &at
	}
	res := tx.Model(&bookingRow{}).Where("id = ? AND status IN ?", b.ID, activeStatuses).Updates(upd)
	if res.Error != nil || res.RowsAffected == 0 {
		return nil, res.Error
	}
	if err := tx.Exec(`UPDATE batteries SET status = `+fmt.Sprintf(backAtStation, "?")+`, updated_at = ? WHERE id = ?`,
		a.ready, at, b.BatteryID).Error; err != nil {
		return nil, err
	}
	inv, err := inventories(tx, []int64{a.station.ID})
	if err != nil {
		return nil, err
	}
	return &releaseResult{booking: b, inv: inv[a.station.ID]}, nil
}

// stamp is the time of a change under a station's lock: the clock's (now),
// but never earlier than the last change of the station, of its batteries
// or of the other rows it changes (also). A change that waited for the lock
// is so never stamped before one that committed ahead of it, whatever the
// clocks of the instances say, and a station's events keep their order in
// time. pgBook and pgRelease apply the same rule in SQL.
func stamp(tx *gorm.DB, st *stationRow, now time.Time, also ...time.Time) (time.Time, error) {
	var last []time.Time
	if err := tx.Model(&batteryRow{}).Where("station_id = ?", st.ID).Order("updated_at DESC").Limit(1).Pluck("updated_at", &last).Error; err != nil {
		return time.Time{}, err
	}
	return latest(now, append(append(last, st.UpdatedAt), also...)...), nil
}

// latest is the stamp rule once the times are known: now, or the latest
// of ts if that is later, in UTC.
func latest(now time.Time, ts ...time.Time) time.Time {
	at := now
	for _, t := range ts {
		if t.After(at) {
			at = t
		}
	}
	return at.UTC()
}
