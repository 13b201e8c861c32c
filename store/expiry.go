package store

import (
	"context"
	"fmt"

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
	n := 0
	for _, id := range ids {
		warned := false
		err := s.tx(ctx, func(tx *gorm.DB) error {
			b, st, err := s.lockBooking(tx, id, nil)
			if err != nil {
				return err
			}
			res := tx.Model(&bookingRow{}).Where("id = ? AND status IN ? AND warned_at IS NULL", id, activeStatuses).
				Updates(map[string]any{"warned_at": now, "updated_at": now})
			if res.Error != nil || res.RowsAffected == 0 {
				return res.Error
			}
			warned = true
			o := s.outbox(tx, now)
			left := b.ExpiresAt.Sub(now).Round(1e9)
			o.bookingEvent(b, st, models.EventBookingExpiring, "Booking expiring",
				fmt.Sprintf("Your booking at %s expires in %s.", st.Name, left), models.LevelWarning,
				map[string]any{"expires_at": b.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z07:00")})
			return o.flush()
		})
		if err != nil {
			return n, translate(err, "booking")
		}
		if warned {
			n++
		}
	}
	return n, nil
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
	n := 0
	for _, id := range ids {
		expired := false
		err := s.tx(ctx, func(tx *gorm.DB) error {
			b, st, err := s.lockBooking(tx, id, nil)
			if err != nil {
				return err
			}
			if !models.BookingStatus(b.Status).Active() || now.Before(b.ExpiresAt) {
				return nil // another expirer, a collect or a cancel came first
			}
			_, err = s.release(tx, b, st, models.BookingExpired)
			expired = err == nil
			return err
		})
		if err != nil && !models.IsCode(err, models.CodeInvalidState) {
			return n, translate(err, "booking")
		}
		if expired {
			n++
		}
	}
	return n, nil
}
