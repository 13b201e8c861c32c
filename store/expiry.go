package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"batteryswap/models"
)

// expiryBatch bounds the bookings one sweep handles.
const expiryBatch = 200

// WarnExpiring sends booking_expiring, once, to the holder of every active
// booking that expires within the warning time. Several instances may run it
// at once: the conditional update on warned_at lets exactly one warn.
func (s *Store) WarnExpiring(ctx context.Context) (int, error) {
	now := s.now()
	var ids []int64
	if err := s.db.WithContext(ctx).Model(&bookingRow{}).
		Where("status IN ? AND warned_at IS NULL AND expires_at <= ? AND expires_at > ?", activeStatuses, now.Add(s.opts.BookingWarn), now).
		Order("expires_at").Limit(expiryBatch).Pluck("id", &ids).Error; err != nil {
		return 0, translate(err, "bookings")
	}
	return s.sweep(ctx, ids, func(tx *gorm.DB, id int64) (bool, error) {
		b, st, err := s.lockBooking(tx, id, nil)
		if err != nil {
			return false, err
		}
		res := tx.Model(&bookingRow{}).Where("id = ? AND status IN ? AND warned_at IS NULL", b.ID, activeStatuses).
			Updates(map[string]any{"warned_at": now, "updated_at": now})
		if res.Error != nil || res.RowsAffected == 0 {
			return false, res.Error
		}
		o := s.outbox(tx, now)
		left := b.ExpiresAt.Sub(now).Round(time.Second)
		o.bookingEvent(b, st, models.EventBookingExpiring, "Booking expiring",
			fmt.Sprintf("Your booking at %s expires in %s.", st.Name, left), models.LevelWarning,
			map[string]any{"expires_at": b.ExpiresAt.UTC()}) // as precise as the booking's own
		return true, o.flush()
	})
}

// ExpireDue expires every active booking whose hold has run out and puts its
// battery back. Several instances may run it at once: the conditional status
// update lets exactly one expire each booking.
func (s *Store) ExpireDue(ctx context.Context) (int, error) {
	now := s.now()
	var ids []int64
	if err := s.db.WithContext(ctx).Model(&bookingRow{}).
		Where("status IN ? AND expires_at <= ?", activeStatuses, now).
		Order("expires_at").Limit(expiryBatch).Pluck("id", &ids).Error; err != nil {
		return 0, translate(err, "bookings")
	}
	return s.sweep(ctx, ids, func(tx *gorm.DB, id int64) (bool, error) {
		// Nothing matches when another expirer, a collect or a cancel came
		// first: then nothing is written.
		b, err := s.release(tx, releaseArgs{bookingID: id, anyBooking: true})
		return b != nil, err
	})
}

// sweep runs change on each booking, each in its own transaction (change
// takes the booking's station lock), and counts the bookings it changed.
func (s *Store) sweep(ctx context.Context, ids []int64, change func(tx *gorm.DB, id int64) (bool, error)) (int, error) {
	n := 0
	for _, id := range ids {
		changed := false
		err := s.tx(ctx, func(tx *gorm.DB) error {
			var err error
			changed, err = change(tx, id)
			return err
		})
		if err != nil {
			return n, translate(err, "booking")
		}
		if changed {
			n++
		}
	}
	return n, nil
}
