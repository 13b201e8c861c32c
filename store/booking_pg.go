package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"

	"batteryswap/models"
)

// Booking and cancelling are the hot path. Through GORM, half of the
// server's time for them went to GORM, database/sql and a round trip per
// statement (docs/BENCHMARKS.md). On PostgreSQL these two transactions
// therefore skip GORM and go through pgx in two round trips: BEGIN, the
// station lock and the change (which also counts the station's batteries
// and reserves the notification ids the events are built from); then the
// outbox rows with COMMIT. The rules are the same as in the GORM path, which
// SQLite uses: the station row lock serialises writers, the claim is a
// conditional update, the unique indexes refuse a second active booking,
// and the events commit with the change.
//
// The statements of one round trip run one after another, and every
// statement after the lock runs with a snapshot taken after the lock was
// granted (READ COMMITTED takes one per statement), so the change sees
// every change that committed before it.
//
// The change's time is the clock's, read before the request is sent, but
// never earlier than the last change at its station (the station row and
// its batteries) or of the booking it ends: one that waited for the lock is
// not stamped before a change that committed ahead of it — a booking does
// not begin before the previous holder of its battery let it go, nor before
// the station it books at reopened — and the timestamps of a station's
// events follow their order.

// pgGenericPlans keeps PostgreSQL from planning these statements again on
// every execution: their plans do not depend on the values (lookups by
// primary key or by station), and planning was a seventh of the database's
// time per booking.
const pgGenericPlans = `SET LOCAL plan_cache_mode = force_generic_plan`

// pgClaimAndBook claims the best free battery of an open, online station, inserts
// the booking for it, counts the station's batteries and reserves the ids of
// the booking's notifications (the second only when it is ready at once), in
// one statement. The count sees the station as it was when the statement
// began (after the lock), so the caller moves the claimed battery from its
// old status (was) to booked. The booking's time (at) is $2, or the
// station's last change if that is later; one scan of the station's
// batteries gives both that and the count.
// $1 station, $2 now, $3 user, $4 ready charge, $5 idempotency key (or
// NULL), $6 hold in microseconds.
const pgClaimAndBook = `WITH st AS (
	SELECT ` + pgStationBookable + ` AS bookable, updated_at FROM stations WHERE id = $1
), inv AS (
	SELECT ` + inventoryColumns + `, GREATEST($2::timestamptz, max(updated_at), (SELECT updated_at FROM st)) AS at
	FROM batteries WHERE station_id = $1
), pick AS (
	SELECT id, status FROM batteries
	WHERE station_id = $1 AND status IN ('available', 'charging') AND (SELECT bookable FROM st)
	ORDER BY ` + bestBatteryFirst + ` LIMIT 1
), claimed AS (
	UPDATE batteries SET status = 'booked', updated_at = inv.at FROM pick, inv
	WHERE batteries.id = pick.id AND batteries.station_id = $1 AND batteries.status IN ('available', 'charging')
	RETURNING batteries.id, batteries.serial_number, batteries.charge_percent, pick.status AS was, inv.at
), booked AS (
	INSERT INTO bookings (user_id, station_id, battery_id, status, idempotency_key, expires_at, ready_at, created_at, updated_at)
	SELECT $3, $1, id, CASE WHEN charge_percent >= $4 THEN 'ready' ELSE 'confirmed' END, $5,
		at + $6 * interval '1 microsecond', CASE WHEN charge_percent >= $4 THEN at END, at, at
	FROM claimed
	RETURNING id, battery_id, status, expires_at, ready_at, created_at
)
SELECT booked.id, booked.status, booked.expires_at, booked.ready_at, booked.created_at,
	claimed.id, claimed.serial_number, claimed.charge_percent, claimed.was,
	inv.available, inv.booked, inv.charging, inv.total,
	nextval('notifications_id_seq'), CASE booked.status WHEN 'ready' THEN nextval('notifications_id_seq') END
FROM booked JOIN claimed ON claimed.id = booked.battery_id CROSS JOIN inv`

// pgCancel ends an active booking of $4 (any booking when $3) as cancelled,
// puts its battery back, counts the station's batteries (as they were when
// the statement began) and reserves the id of the notification, in one
// statement. $1 booking, $2 now (or the last change of the booking or at its
// station if that is later), $5 ready charge.
var pgCancel = `WITH b AS (
	SELECT b.station_id, GREATEST($2::timestamptz, b.updated_at, s.updated_at) AS at
	FROM bookings AS b JOIN stations AS s ON s.id = b.station_id WHERE b.id = $1
), inv AS (
	SELECT ` + inventoryColumns + `, GREATEST(max(updated_at), (SELECT at FROM b)) AS at
	FROM batteries WHERE station_id = (SELECT station_id FROM b)
), ended AS (
	UPDATE bookings SET status = 'cancelled', cancelled_at = inv.at, updated_at = inv.at FROM inv
	WHERE bookings.id = $1 AND bookings.status IN ('confirmed', 'ready') AND ($3 OR bookings.user_id = $4)
	RETURNING bookings.id, bookings.user_id, bookings.station_id, bookings.battery_id, bookings.status,
		bookings.expires_at, bookings.ready_at, bookings.collected_at, bookings.cancelled_at,
		bookings.returned_battery_id, bookings.created_at, bookings.updated_at
), returned AS (
	UPDATE batteries SET status = ` + fmt.Sprintf(backAtStation, "$5") + `, updated_at = ended.updated_at
	FROM ended, batteries AS old
	WHERE batteries.id = ended.battery_id AND old.id = batteries.id
	RETURNING old.status AS was, batteries.status AS now
)
SELECT ended.*, returned.was, returned.now, inv.available, inv.booked, inv.charging, inv.total,
	nextval('notifications_id_seq')
FROM ended CROSS JOIN returned CROSS JOIN inv`

// pgWrite inserts a change's notifications (with their reserved ids) and
// its events in one statement.
const pgWrite = `WITH n AS (
	INSERT INTO notifications (id, user_id, type, title, message, level, data, created_at)
	SELECT id, user_id, type, title, message, level, data, $8
	FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
		AS n (id, user_id, type, title, message, level, data)
)
INSERT INTO events (type, topic, payload, created_at)
SELECT type, topic, payload, $8 FROM unnest($9::text[], $10::text[], $11::text[]) AS e (type, topic, payload)`

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

// createBookingPipelined is CreateBooking's transaction on PostgreSQL.
func (s *Store) createBookingPipelined(ctx context.Context, userID, stationID int64, idemKey string) (*models.Booking, error) {
	row := bookingRow{UserID: userID, StationID: stationID}
	var key *string
	if idemKey != "" {
		key = &idemKey
	}
	err := s.pgTx(ctx, func(c *pgx.Conn) error {
		var bat batteryRow
		var was string
		var inv models.Inventory
		var first int64
		var second *int64
		st, err := beginLocked(ctx, c, `SELECT id, name, status FROM stations WHERE id = $1 FOR UPDATE`, stationID,
			pgClaimAndBook, []any{stationID, s.now(), userID, s.opts.ReadyCharge, key, s.opts.BookingHold.Microseconds()},
			func(r pgx.Row) error {
				return r.Scan(&row.ID, &row.Status, &row.ExpiresAt, &row.ReadyAt, &row.CreatedAt,
					&bat.ID, &bat.SerialNumber, &bat.ChargePercent, &was,
					&inv.Available, &inv.Booked, &inv.Charging, &inv.Total, &first, &second)
			})
		switch {
		case errors.Is(err, errNoStation):
			return models.Errorf(models.CodeNotFound, "station not found")
		case err != nil && !errors.Is(err, pgx.ErrNoRows):
			return err
		case st.Status != string(models.StationOpen):
			// The claim took nothing from a station that is not open.
			return models.Errorf(models.CodeStationUnavailable, "station %d is %s", st.ID, st.Status)
		case err != nil:
			if err := pgStationTakesBookings(ctx, c, st); err != nil {
				return err // offline (presence.go)
			}
			return models.Errorf(models.CodeNoBatteryAvailable, "station %d has no battery ready to book", stationID)
		}
		shift(&inv, was, string(models.BatteryBooked))
		row.BatteryID, row.UpdatedAt = bat.ID, row.CreatedAt
		o := s.outbox(nil, row.CreatedAt)
		bookedEvents(o, &row, st, &bat, st.model(inv))
		ids := []int64{first}
		if second != nil {
			// In the order the notifications were made, whatever order
			// the select list's nextval calls ran in.
			ids = append(ids, *second)
			slices.Sort(ids)
		}
		b, err := o.pgBatch(ids)
		if err != nil {
			return err
		}
		if key != nil {
			answer, err := json.Marshal(row.model())
			if err != nil {
				return err
			}
			b.Queue(`UPDATE bookings SET idempotency_response = $2 WHERE id = $1`, row.ID, string(answer))
		}
		return commit(ctx, c, b)
	})
	if err != nil {
		return nil, err
	}
	return row.model(), nil
}

// cancelBookingPipelined is CancelBooking's transaction on PostgreSQL.
func (s *Store) cancelBookingPipelined(ctx context.Context, id int64, actor *models.User) (*models.Booking, error) {
	anyBooking := actor == nil || actor.IsAdmin()
	var actorID int64
	if actor != nil {
		actorID = actor.ID
	}
	var b bookingRow
	err := s.pgTx(ctx, func(c *pgx.Conn) error {
		var was, back string
		var inv models.Inventory
		var nid int64
		st, err := beginLocked(ctx, c, `SELECT id, name, status FROM stations WHERE id = (SELECT station_id FROM bookings WHERE id = $1) FOR UPDATE`, id,
			pgCancel, []any{id, s.now(), anyBooking, actorID, s.opts.ReadyCharge},
			func(r pgx.Row) error {
				return r.Scan(&b.ID, &b.UserID, &b.StationID, &b.BatteryID, &b.Status, &b.ExpiresAt, &b.ReadyAt,
					&b.CollectedAt, &b.CancelledAt, &b.ReturnedBatteryID, &b.CreatedAt, &b.UpdatedAt, &was, &back,
					&inv.Available, &inv.Booked, &inv.Charging, &inv.Total, &nid)
			})
		if errors.Is(err, errNoStation) {
			err = pgx.ErrNoRows
		}
		if err != nil {
			return err
		}
		shift(&inv, was, back)
		o := s.outbox(nil, b.UpdatedAt)
		releasedEvents(o, &b, st, st.model(inv), models.BookingCancelled)
		second, err := o.pgBatch([]int64{nid})
		if err != nil {
			return err
		}
		return commit(ctx, c, second)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		// No station or no active booking of the actor's: nothing changed.
		// Say why, from the booking as it is now.
		var r bookingRow
		if err := s.db.WithContext(ctx).Select("user_id", "status").Take(&r, id).Error; err != nil {
			return nil, translate(err, "booking")
		}
		if !anyBooking && r.UserID != actorID {
			return nil, models.Errorf(models.CodeNotFound, "booking not found")
		}
		return nil, models.Errorf(models.CodeInvalidState, "booking %d is %s", id, r.Status)
	}
	if err != nil {
		return nil, translate(err, "booking")
	}
	return b.model(), nil
}

// errNoStation: beginLocked's lock found no station.
var errNoStation = errors.New("store: no station to lock")

// beginLocked begins the transaction, locks the station that lock (a
// SELECT … FOR UPDATE of id, name, status) names and runs the change, in
// one round trip. The change runs after the lock is granted, with a snapshot
// taken then; scan reads its one row. It returns the locked station, or
// errNoStation when lock found none; otherwise the error is the change's
// (pgx.ErrNoRows when it changed nothing).
func beginLocked(ctx context.Context, c *pgx.Conn, lock string, id int64, change string, args []any, scan func(pgx.Row) error) (*stationRow, error) {
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(pgGenericPlans)
	b.Queue(lock, id)
	b.Queue(change, args...)
	var st stationRow
	br := c.SendBatch(ctx, b)
	_, err := br.Exec()
	if err == nil {
		_, err = br.Exec()
	}
	if err == nil {
		err = br.QueryRow().Scan(&st.ID, &st.Name, &st.Status)
		if errors.Is(err, pgx.ErrNoRows) {
			err = errNoStation
		}
	}
	if err == nil {
		err = scan(br.QueryRow())
	}
	if cerr := br.Close(); cerr != nil && (err == nil || errors.Is(err, pgx.ErrNoRows) || errors.Is(err, errNoStation)) {
		err = cerr
	}
	return &st, err
}

// pgBatch queues the insert of the collected notifications (with the
// reserved ids) and events.
func (o *outboxWriter) pgBatch(ids []int64) (*pgx.Batch, error) {
	notes, err := o.notifications()
	if err != nil {
		return nil, err
	}
	if len(ids) != len(notes) {
		return nil, fmt.Errorf("store: %d notification ids reserved for %d notifications", len(ids), len(notes))
	}
	// FlatArray: pgx encodes it without reflection.
	nid, user := make(pgtype.FlatArray[int64], len(notes)), make(pgtype.FlatArray[int64], len(notes))
	typ, title, msg, level, data := make(pgtype.FlatArray[string], len(notes)), make(pgtype.FlatArray[string], len(notes)),
		make(pgtype.FlatArray[string], len(notes)), make(pgtype.FlatArray[string], len(notes)), make(pgtype.FlatArray[string], len(notes))
	for i := range notes {
		notes[i].ID = ids[i]
		n := &notes[i]
		nid[i], user[i], typ[i], title[i], msg[i], level[i], data[i] = n.ID, n.UserID, n.Type, n.Title, n.Message, n.Level, n.Data
	}
	evs := o.rows(notes)
	etyp, topic, payload := make(pgtype.FlatArray[string], len(evs)), make(pgtype.FlatArray[string], len(evs)), make(pgtype.FlatArray[string], len(evs))
	for i := range evs {
		etyp[i], topic[i], payload[i] = evs[i].Type, evs[i].Topic, evs[i].Payload
	}
	b := &pgx.Batch{}
	b.Queue(pgWrite, nid, user, typ, title, msg, level, data, o.now, etyp, topic, payload)
	return b, nil
}

// commit sends the batch's statements and COMMIT in one round trip.
func commit(ctx context.Context, c *pgx.Conn, b *pgx.Batch) error {
	b.Queue("COMMIT")
	br := c.SendBatch(ctx, b)
	var tag string
	var err error
	for range b.Len() {
		t, e := br.Exec()
		if e != nil {
			err = e
			break
		}
		tag = t.String()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil && tag != "COMMIT" {
		err = fmt.Errorf("store: transaction ended with %q", tag)
	}
	return err
}

// pgTx runs fn on one pooled connection's pgx.Conn. fn begins and commits
// its own transaction; when it fails, whatever it left open is rolled back.
// A commit wakes the relay, as Store.tx does.
func (s *Store) pgTx(ctx context.Context, fn func(c *pgx.Conn) error) error {
	if err := s.pgSlots.enter(ctx); err != nil {
		return err
	}
	defer s.pgSlots.leave()
	conn, err := s.sqlDB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		c := dc.(*stdlib.Conn).Conn()
		err := fn(c)
		if err != nil && !c.IsClosed() && c.PgConn().TxStatus() != 'I' {
			// Not ctx: a cancelled request still leaves a clean connection
			// (or, failing that, a closed one, which the pool drops).
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = c.Exec(rctx, "ROLLBACK")
			cancel()
		}
		return err
	})
	if err == nil {
		s.signal()
	}
	return err
}
