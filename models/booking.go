package models

import (
	"strings"
	"time"
)

// BookingStatus is a booking's state.
type BookingStatus string

// The booking statuses. confirmed and ready are active; the rest are final.
const (
	BookingConfirmed BookingStatus = "confirmed"
	BookingReady     BookingStatus = "ready"
	BookingCollected BookingStatus = "collected"
	BookingCancelled BookingStatus = "cancelled"
	BookingExpired   BookingStatus = "expired"
)

// Active reports whether a booking in status s still holds its battery.
func (s BookingStatus) Active() bool { return s == BookingConfirmed || s == BookingReady }

// Valid reports whether s is a known booking status.
func (s BookingStatus) Valid() bool {
	switch s {
	case BookingConfirmed, BookingReady, BookingCollected, BookingCancelled, BookingExpired:
		return true
	}
	return false
}

// Default hold and warning times of a booking.
const (
	DefaultBookingHold = 15 * time.Minute
	DefaultBookingWarn = 3 * time.Minute
)

// Booking holds one battery at one station for one rider until it expires.
type Booking struct {
	ID                int64         `json:"id"`
	UserID            int64         `json:"user_id"`
	StationID         int64         `json:"station_id"`
	BatteryID         int64         `json:"battery_id"`
	Status            BookingStatus `json:"status"`
	ExpiresAt         time.Time     `json:"expires_at"`
	CreatedAt         time.Time     `json:"created_at"`
	UpdatedAt         time.Time     `json:"updated_at"`
	ReadyAt           *time.Time    `json:"ready_at"`
	CollectedAt       *time.Time    `json:"collected_at"`
	CancelledAt       *time.Time    `json:"cancelled_at"`
	ReturnedBatteryID *int64        `json:"returned_battery_id"`
}

// MaxIdempotencyKeyLength bounds the Idempotency-Key header, in bytes.
const MaxIdempotencyKeyLength = 200

// ReturnPack is the depleted pack a rider hands in when collecting.
type ReturnPack struct {
	SerialNumber  string
	ChargePercent int
}

// Validate checks a swap-in.
func (r *ReturnPack) Validate() error {
	f := map[string]string{}
	r.SerialNumber = strings.TrimSpace(r.SerialNumber)
	validateSerial(f, "return_serial_number", r.SerialNumber)
	if r.ChargePercent < 0 || r.ChargePercent > 100 {
		f["return_charge_percent"] = "must be between 0 and 100"
	}
	return ValidationError(f)
}

// BookingFilter selects bookings to list.
type BookingFilter struct {
	UserID *int64
	Page   Page
}
