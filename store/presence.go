package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"batteryswap/models"
)

// Station presence: a station's controller reports in with a heartbeat or
// battery telemetry; one not heard from for STATION_STALE_AFTER is marked
// offline by MarkStaleStations and takes no bookings until it reports
// again. Each change of presence is a station_status event, committed with
// it.

// presenceBatch bounds the stations one sweep marks offline.
const presenceBatch = 200

// StationHeartbeat records that station id's controller reported in: its
// last_seen_at is now, and an offline station is online again (a
// station_status event). not_found for an unknown station.
func (s *Store) StationHeartbeat(ctx context.Context, id int64) error {
	now := s.now()
	// The common case, an online station, is one conditional update and no
	// event. One that is offline (or unknown) takes the locked path.
	res := s.db.WithContext(ctx).Model(&stationRow{}).
		Where("id = ? AND presence = ?", id, string(models.PresenceOnline)).
		UpdateColumn("last_seen_at", now) // not updated_at: the station did not change
	if res.Error != nil {
		return translate(res.Error, "station")
	}
	if res.RowsAffected > 0 {
		return nil
	}
	err := s.tx(ctx, func(tx *gorm.DB) error {
		st, err := s.lockStation(tx, id)
		if err != nil {
			return err
		}
		o := s.outbox(tx, now)
		if err := s.heardFrom(tx, o, st, now); err != nil {
			return err
		}
		return o.flush()
	})
	return translate(err, "station")
}

// heardFrom records, in the transaction that holds st's lock, that the
// station reported in at now; if it was offline, it is online again and o
// gets its station_status.
func (s *Store) heardFrom(tx *gorm.DB, o *outboxWriter, st *stationRow, now time.Time) error {
	if st.Presence == string(models.PresenceOnline) {
		st.LastSeenAt = now
		return tx.Model(&stationRow{}).Where("id = ?", st.ID).UpdateColumn("last_seen_at", now).Error
	}
	st.Presence, st.LastSeenAt, st.UpdatedAt = string(models.PresenceOnline), now, now
	if err := tx.Model(&stationRow{}).Where("id = ?", st.ID).
		Updates(map[string]any{"presence": st.Presence, "last_seen_at": now, "updated_at": now}).Error; err != nil {
		return err
	}
	station, err := stationWithInventory(tx, st)
	if err != nil {
		return err
	}
	o.stationStatus(station, station.Message)
	return nil
}

// MarkStaleStations marks offline every online station not heard from for
// staleAfter, each with its station_status event, and returns how many it
// marked. Several instances may run it at once: the conditional update lets
// exactly one mark each station (and announce it once).
func (s *Store) MarkStaleStations(ctx context.Context, staleAfter time.Duration) (int, error) {
	if staleAfter <= 0 {
		staleAfter = models.DefaultStationStaleAfter
	}
	now := s.now()
	cutoff := now.Add(-staleAfter)
	var ids []int64
	if err := s.db.WithContext(ctx).Model(&stationRow{}).
		Where("presence = ? AND last_seen_at < ?", string(models.PresenceOnline), cutoff).
		Order("last_seen_at").Limit(presenceBatch).Pluck("id", &ids).Error; err != nil {
		return 0, translate(err, "stations")
	}
	n := 0
	for _, id := range ids {
		marked := false
		err := s.tx(ctx, func(tx *gorm.DB) error {
			st, err := s.lockStation(tx, id)
			if err != nil {
				return err
			}
			if st.Presence != string(models.PresenceOnline) || !st.LastSeenAt.Before(cutoff) {
				return nil // it reported in, or another instance came first
			}
			res := tx.Model(&stationRow{}).
				Where("id = ? AND presence = ? AND last_seen_at < ?", id, string(models.PresenceOnline), cutoff).
				Updates(map[string]any{"presence": string(models.PresenceOffline), "updated_at": now})
			if res.Error != nil || res.RowsAffected == 0 {
				return res.Error
			}
			st.Presence, st.UpdatedAt = string(models.PresenceOffline), now
			station, err := stationWithInventory(tx, st)
			if err != nil {
				return err
			}
			o := s.outbox(tx, now)
			o.stationStatus(station, station.Message)
			marked = true
			return o.flush()
		})
		if err != nil {
			return n, translate(err, "station")
		}
		if marked {
			n++
		}
	}
	return n, nil
}

// stationTakesBookings refuses a booking at a locked station that is not
// open or not online (409 station_unavailable); the booking transactions
// call it under the station's lock.
func stationTakesBookings(st *stationRow) error {
	switch {
	case st.Status != string(models.StationOpen):
		return models.Errorf(models.CodeStationUnavailable, "station %d is %s", st.ID, st.Status)
	case st.Presence == string(models.PresenceOffline):
		return models.Errorf(models.CodeStationUnavailable, "station %d is offline: not heard from since %s", st.ID, st.LastSeenAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// pgStationBookable is stationTakesBookings in SQL, for the pipelined
// booking on PostgreSQL, whose claim runs in the round trip of the lock.
const pgStationBookable = `status = 'open' AND presence = 'online'`

// pgStationTakesBookings is stationTakesBookings for the pipelined booking,
// after its claim took nothing from an open station: it reads the locked
// station's presence, in the booking's transaction.
func pgStationTakesBookings(ctx context.Context, c *pgx.Conn, st *stationRow) error {
	if err := c.QueryRow(ctx, `SELECT presence, last_seen_at FROM stations WHERE id = $1`, st.ID).Scan(&st.Presence, &st.LastSeenAt); err != nil {
		return err
	}
	return stationTakesBookings(st)
}
