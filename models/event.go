package models

import (
	"encoding/json"
	"strconv"
	"time"
)

// The event types of the public contract.
const (
	EventConnectionEstablished = "connection_established"
	EventSnapshot              = "snapshot"
	EventInventoryUpdate       = "inventory_update"
	EventBatteryBooked         = "battery_booked"
	EventBatteryCollected      = "battery_collected"
	EventBatteryAdded          = "battery_added"
	EventStationStatus         = "station_status"
	EventBookingConfirmed      = "booking_confirmed"
	EventBookingReady          = "booking_ready"
	EventBookingExpiring       = "booking_expiring"
	EventBookingCancelled      = "booking_cancelled"
	EventBookingExpired        = "booking_expired"
	EventBookingCollected      = "booking_collected"
	EventNotification          = "notification"
)

// The actions of an inventory_update.
const (
	ActionBooked    = "booked"
	ActionCollected = "collected"
	ActionAdded     = "added"
	ActionCancelled = "cancelled"
	ActionExpired   = "expired"
	ActionCharged   = "charged"
	ActionCreated   = "created"
	ActionUpdated   = "updated"
	ActionTest      = "test"
)

// ReasonChargeDropped is a booking_confirmed's reason when a ready booking
// went back to confirmed because its pack's charge fell under READY_CHARGE.
const ReasonChargeDropped = "charge_dropped"

// Event is one committed change as the streams carry it. Seq is the public
// id, given by the relay; it is 0 while the event waits in the outbox.
// Payload is the event's JSON object without its "id" field, which only the
// sequence decides; Data adds it.
type Event struct {
	Seq       int64
	Type      string
	Topic     Topic
	Payload   json.RawMessage
	CreatedAt time.Time
}

// ID is the event id as the wire carries it.
func (e *Event) ID() string { return strconv.FormatInt(e.Seq, 10) }

// Data returns the payload with "id" set to the event id: the exact JSON of
// an SSE data line, a WebSocket message or an NDJSON line.
func (e *Event) Data() []byte {
	id := e.ID()
	p := e.Payload
	out := make([]byte, 0, len(p)+len(id)+10)
	out = append(out, `{"id":"`...)
	out = append(out, id...)
	out = append(out, '"')
	if len(p) > 2 {
		out = append(out, ',')
		out = append(out, p[1:]...)
	} else {
		out = append(out, '}')
	}
	return out
}

// NewPayload builds an event payload: type, timestamp (RFC 3339 UTC) and the
// given fields. fields must not contain "id", "type" or "timestamp".
func NewPayload(typ string, at time.Time, fields map[string]any) json.RawMessage {
	m := make(map[string]any, len(fields)+2)
	for k, v := range fields {
		m[k] = v
	}
	m["type"] = typ
	m["timestamp"] = at.UTC().Format(time.RFC3339Nano)
	b, err := json.Marshal(m)
	if err != nil {
		// Payload fields are built from plain values; failing here is a programming error.
		panic("models: payload does not encode: " + err.Error())
	}
	return b
}
