package models

import (
	"strings"
	"time"
)

// BatteryStatus is where a battery stands in its life at a station.
type BatteryStatus string

// The battery statuses.
const (
	BatteryAvailable   BatteryStatus = "available"
	BatteryCharging    BatteryStatus = "charging"
	BatteryBooked      BatteryStatus = "booked"
	BatteryCollected   BatteryStatus = "collected"
	BatteryMaintenance BatteryStatus = "maintenance"
)

// Valid reports whether s is a known battery status.
func (s BatteryStatus) Valid() bool {
	switch s {
	case BatteryAvailable, BatteryCharging, BatteryBooked, BatteryCollected, BatteryMaintenance:
		return true
	}
	return false
}

// DefaultReadyCharge is the charge percent at or above which a battery is ready.
const DefaultReadyCharge = 80

// ChargeStatus is the status of a free battery at a station: available at or
// above ready percent, charging under it.
func ChargeStatus(charge, ready int) BatteryStatus {
	if charge >= ready {
		return BatteryAvailable
	}
	return BatteryCharging
}

// Battery is one swappable pack.
type Battery struct {
	ID            int64         `json:"id"`
	StationID     *int64        `json:"station_id"`
	SerialNumber  string        `json:"serial_number"`
	ChargePercent int           `json:"charge_percent"`
	HealthPercent int           `json:"health_percent"`
	CapacityKWh   float64       `json:"capacity_kwh"`
	Status        BatteryStatus `json:"status"`
	CreatedAt     time.Time     `json:"created_at"`
	UpdatedAt     time.Time     `json:"updated_at"`
}

// DefaultCapacityKWh is the capacity of a pack when none is given.
const DefaultCapacityKWh = 2.0

// BatteryInput is what an operator gives to add a battery to a station.
type BatteryInput struct {
	SerialNumber  string
	ChargePercent *int
	CapacityKWh   *float64
}

// Validate checks a new battery's fields.
func (in *BatteryInput) Validate() error {
	f := map[string]string{}
	in.SerialNumber = strings.TrimSpace(in.SerialNumber)
	validateSerial(f, "serial_number", in.SerialNumber)
	if in.ChargePercent == nil {
		f["charge_percent"] = "is required"
	} else if *in.ChargePercent < 0 || *in.ChargePercent > 100 {
		f["charge_percent"] = "must be between 0 and 100"
	}
	if in.CapacityKWh != nil && (*in.CapacityKWh <= 0 || *in.CapacityKWh > 1000) {
		f["capacity_kwh"] = "must be above 0 and at most 1000"
	}
	return ValidationError(f)
}

func validateSerial(f map[string]string, field, s string) {
	if s == "" {
		f[field] = "is required"
	} else if longer(s, 100) {
		f[field] = "must be at most 100 characters"
	} else if why := singleLineText(s); why != "" {
		f[field] = why
	}
}

// BatteryPatch is station telemetry: a new charge reading and/or a status.
type BatteryPatch struct {
	ChargePercent *int
	Status        *BatteryStatus
}

// Validate checks the telemetry. Only available, charging and maintenance may
// be set by hand; booked and collected belong to bookings.
func (p *BatteryPatch) Validate() error {
	f := map[string]string{}
	if p.ChargePercent == nil && p.Status == nil {
		f["charge_percent"] = "charge_percent or status is required"
	}
	if p.ChargePercent != nil && (*p.ChargePercent < 0 || *p.ChargePercent > 100) {
		f["charge_percent"] = "must be between 0 and 100"
	}
	if p.Status != nil {
		switch *p.Status {
		case BatteryAvailable, BatteryCharging, BatteryMaintenance:
		default:
			f["status"] = "must be available, charging or maintenance"
		}
	}
	return ValidationError(f)
}
