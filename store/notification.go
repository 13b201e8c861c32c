package store

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"gorm.io/gorm"

	"batteryswap/models"
)

type notificationRow struct {
	ID        int64
	UserID    int64
	Type      string
	Title     string
	Message   string
	Level     string
	Data      string
	ReadAt    *time.Time
	CreatedAt time.Time
}

func (notificationRow) TableName() string { return "notifications" }

func (r *notificationRow) model() *models.Notification {
	data := json.RawMessage(r.Data)
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	return &models.Notification{ID: r.ID, UserID: r.UserID, Type: r.Type, Title: r.Title, Message: r.Message,
		Level: models.Level(r.Level), Data: data, ReadAt: r.ReadAt, CreatedAt: r.CreatedAt}
}

// ListNotifications returns a page of a user's notifications, newest first,
// only unread ones when unread is set.
func (s *Store) ListNotifications(ctx context.Context, userID int64, unread bool, p models.Page) ([]models.Notification, error) {
	q := s.db.WithContext(ctx).Where("user_id = ?", userID)
	if unread {
		q = q.Where("read_at IS NULL")
	}
	var rows []notificationRow
	if err := page(q, p, "id", true).Find(&rows).Error; err != nil {
		return nil, translate(err, "notifications")
	}
	return notificationModels(rows), nil
}

func notificationModels(rows []notificationRow) []models.Notification {
	out := make([]models.Notification, len(rows))
	for i := range rows {
		out[i] = *rows[i].model()
	}
	return out
}

// UnreadNotifications returns the newest limit of a user's unread
// notifications, oldest first, for stream snapshots.
func (s *Store) UnreadNotifications(ctx context.Context, userID int64, limit int) ([]models.Notification, error) {
	var rows []notificationRow
	if err := s.db.WithContext(ctx).Where("user_id = ? AND read_at IS NULL", userID).
		Order("id DESC").Limit(limit).Find(&rows).Error; err != nil {
		return nil, translate(err, "notifications")
	}
	slices.Reverse(rows)
	return notificationModels(rows), nil
}

// MarkNotificationRead marks one of the user's notifications read; another
// user's is not_found. Marking twice keeps the first read time.
func (s *Store) MarkNotificationRead(ctx context.Context, id, userID int64) (*models.Notification, error) {
	var out *models.Notification
	err := s.tx(ctx, func(tx *gorm.DB) error {
		now := s.now()
		if err := tx.Model(&notificationRow{}).Where("id = ? AND user_id = ? AND read_at IS NULL", id, userID).Update("read_at", now).Error; err != nil {
			return err
		}
		var r notificationRow
		if err := tx.Where("id = ? AND user_id = ?", id, userID).Take(&r).Error; err != nil {
			return err
		}
		out = r.model()
		return nil
	})
	return out, translate(err, "notification")
}

// CreateNotification sends an operator's message to a user: a notification
// row and a notification event on the user's stream (not_found for an
// unknown user).
func (s *Store) CreateNotification(ctx context.Context, in models.NotificationInput) (*models.Notification, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	var out *models.Notification
	err := s.tx(ctx, func(tx *gorm.DB) error {
		var u userRow
		if err := tx.Select("id").Take(&u, in.UserID).Error; err != nil {
			return translate(err, "user")
		}
		now := s.now()
		o := s.outbox(tx, now)
		o.user(in.UserID, models.EventNotification, in.Title, in.Level, map[string]any{"title": in.Title, "message": in.Message, "level": in.Level})
		if err := o.flush(); err != nil {
			return err
		}
		// The row just inserted, not the user's newest: under READ
		// COMMITTED another change's notification may have committed since.
		out = o.written[0].model()
		return nil
	})
	return out, translate(err, "notification")
}
