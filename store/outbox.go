package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"batteryswap/models"
)

type eventRow struct {
	ID        int64
	Seq       *int64
	Type      string
	Topic     string
	Payload   string
	CreatedAt time.Time
}

func (eventRow) TableName() string { return "events" }

func (r *eventRow) model() models.Event {
	var seq int64
	if r.Seq != nil {
		seq = *r.Seq
	}
	return models.Event{Seq: seq, Type: r.Type, Topic: models.Topic(r.Topic), Payload: json.RawMessage(r.Payload), CreatedAt: r.CreatedAt}
}

// userEvent is a private event that is also kept as a notification.
type userEvent struct {
	userID int64
	typ    string
	title  string
	level  models.Level
	fields map[string]any
}

// outboxWriter collects a change's events and writes them in its transaction.
type outboxWriter struct {
	s      *Store
	tx     *gorm.DB
	now    time.Time
	events []eventRow
	users  []userEvent
	// reserved holds the ids the change reserved for its notifications
	// (dialect.book and release on PostgreSQL), if it did.
	reserved []int64
	// written holds the notifications flush inserted, with their ids.
	written []notificationRow
}

func (s *Store) outbox(tx *gorm.DB, now time.Time) *outboxWriter {
	return &outboxWriter{s: s, tx: tx, now: now}
}

func (o *outboxWriter) add(typ string, topic models.Topic, fields map[string]any) {
	o.events = append(o.events, eventRow{Type: typ, Topic: string(topic), Payload: string(models.NewPayload(typ, o.now, fields)), CreatedAt: o.now})
}

// station events never carry a user's identity: only station and battery facts.
func (o *outboxWriter) stationStatus(st *models.Station, message string) {
	o.add(models.EventStationStatus, models.StationTopic(st.ID), map[string]any{
		"station_id": st.ID, "station_name": st.Name, "status": st.Status, "presence": st.Presence, "message": message,
	})
}

func (o *outboxWriter) inventory(st *models.Station, action string) {
	o.add(models.EventInventoryUpdate, models.StationTopic(st.ID), inventoryFields(st, action))
}

func inventoryFields(st *models.Station, action string) map[string]any {
	return map[string]any{
		"station_id": st.ID, "station_name": st.Name,
		"available_batteries": st.Available, "booked_batteries": st.Booked,
		"charging_batteries": st.Charging, "total_batteries": st.Total, "action": action,
	}
}

// user queues a private event for one user; flush keeps it as a notification too.
func (o *outboxWriter) user(userID int64, typ, title string, level models.Level, fields map[string]any) {
	o.users = append(o.users, userEvent{userID: userID, typ: typ, title: title, level: level, fields: fields})
}

// bookingEvent queues one of the booking_* events for the booking's holder.
func (o *outboxWriter) bookingEvent(b *bookingRow, st *stationRow, typ, title, message string, level models.Level, extra map[string]any) {
	f := map[string]any{"booking_id": b.ID, "station_id": st.ID, "station_name": st.Name, "message": message}
	for k, v := range extra {
		f[k] = v
	}
	o.user(b.UserID, typ, title, level, f)
}

// flush writes the queued events (and notifications) in the change's
// transaction; Store.tx wakes the relays once it commits. Notifications
// whose ids were reserved go in with the events through the dialect's
// writeOutbox (one statement on PostgreSQL); others are inserted first, for
// the ids their events name.
func (o *outboxWriter) flush() error {
	notes, err := o.notifications()
	if err != nil {
		return err
	}
	if o.reserved != nil {
		if len(o.reserved) != len(notes) {
			return fmt.Errorf("store: %d notification ids reserved for %d notifications", len(o.reserved), len(notes))
		}
		for i := range notes {
			notes[i].ID = o.reserved[i]
		}
		o.written = notes
		return o.s.dialect.writeOutbox(o.tx, notes, o.rows(notes))
	}
	if len(notes) > 0 {
		// One multi-row insert; the ids come back in row order.
		if err := o.tx.Create(&notes).Error; err != nil {
			return err
		}
		o.written = notes
	}
	if evs := o.rows(notes); len(evs) > 0 {
		return o.tx.Create(&evs).Error
	}
	return nil
}

// notifications returns the rows that keep the queued user events, one per
// event in order, without ids.
func (o *outboxWriter) notifications() ([]notificationRow, error) {
	notes := make([]notificationRow, len(o.users))
	for i, u := range o.users {
		msg, _ := u.fields["message"].(string)
		data, err := json.Marshal(u.fields)
		if err != nil {
			return nil, err
		}
		notes[i] = notificationRow{UserID: u.userID, Type: u.typ, Title: u.title, Message: msg, Level: string(u.level), Data: string(data), CreatedAt: o.now}
	}
	return notes, nil
}

// rows returns every event row to insert: the queued public ones, then each
// user event naming its notification (notes[i], with its id, keeps users[i]).
func (o *outboxWriter) rows(notes []notificationRow) []eventRow {
	for i, u := range o.users {
		f := make(map[string]any, len(u.fields)+1)
		for k, v := range u.fields {
			f[k] = v
		}
		f["notification_id"] = notes[i].ID
		o.add(u.typ, models.UserTopic(u.userID), f)
	}
	o.users = nil
	return o.events
}

// writeOutbox on PostgreSQL inserts the notifications, with their reserved
// ids, and the events in one statement.
func (*postgresDialect) writeOutbox(tx *gorm.DB, notes []notificationRow, evs []eventRow) error {
	var q strings.Builder
	args := make([]any, 0, 8*len(notes)+4*len(evs))
	both := len(notes) > 0 && len(evs) > 0
	if both {
		q.WriteString("WITH n AS (") // two inserts in one statement
	}
	if len(notes) > 0 {
		insertValues(&q, "notifications (id, user_id, type, title, message, level, data, created_at)", len(notes), "(?, ?, ?, ?, ?, ?, ?, ?)")
		for _, n := range notes {
			args = append(args, n.ID, n.UserID, n.Type, n.Title, n.Message, n.Level, n.Data, n.CreatedAt)
		}
	}
	if both {
		q.WriteString(") ")
	}
	if len(evs) > 0 {
		insertValues(&q, "events (type, topic, payload, created_at)", len(evs), "(?, ?, ?, ?)")
		for _, e := range evs {
			args = append(args, e.Type, e.Topic, e.Payload, e.CreatedAt)
		}
	}
	if len(args) == 0 {
		return nil
	}
	return tx.Exec(q.String(), args...).Error
}

// insertValues writes "INSERT INTO into VALUES row, row, ..." with n rows.
func insertValues(q *strings.Builder, into string, n int, row string) {
	q.WriteString("INSERT INTO " + into + " VALUES ")
	for i := range n {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(row)
	}
}

// writeOutbox on SQLite inserts the notifications, then the events.
func (*sqliteDialect) writeOutbox(tx *gorm.DB, notes []notificationRow, evs []eventRow) error {
	if len(notes) > 0 {
		if err := tx.Create(&notes).Error; err != nil {
			return err
		}
	}
	if len(evs) > 0 {
		return tx.Create(&evs).Error
	}
	return nil
}
