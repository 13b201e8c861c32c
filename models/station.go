package models

import (
	"fmt"
	"strings"
	"time"
)

// StationStatus is whether a station hands out batteries.
type StationStatus string

// The station statuses.
const (
	StationOpen        StationStatus = "open"
	StationClosed      StationStatus = "closed"
	StationMaintenance StationStatus = "maintenance"
)

// Valid reports whether s is a known station status.
func (s StationStatus) Valid() bool {
	return s == StationOpen || s == StationClosed || s == StationMaintenance
}

// Inventory is a station's battery counts, always derived from its battery rows.
type Inventory struct {
	Available int `json:"available_batteries"`
	Booked    int `json:"booked_batteries"`
	Charging  int `json:"charging_batteries"`
	Total     int `json:"total_batteries"`
}

// Station is a place where riders swap batteries.
type Station struct {
	ID        int64         `json:"id"`
	Name      string        `json:"name"`
	Address   string        `json:"address"`
	Latitude  float64       `json:"latitude"`
	Longitude float64       `json:"longitude"`
	Status    StationStatus `json:"status"`
	Message   string        `json:"message"`
	Inventory
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// StationInput is what an operator gives to create a station.
type StationInput struct {
	Name      string
	Address   string
	Latitude  float64
	Longitude float64
	Status    StationStatus
}

// Validate checks a new station's fields and defaults its status to open.
func (in *StationInput) Validate() error {
	f := map[string]string{}
	checkText(f, "name", &in.Name, 200, "is required")
	checkText(f, "address", &in.Address, 500, "is required")
	validateCoords(f, in.Latitude, in.Longitude)
	if in.Status == "" {
		in.Status = StationOpen
	} else if !in.Status.Valid() {
		f["status"] = "must be open, closed or maintenance"
	}
	return ValidationError(f)
}

// StationPatch is a partial update of a station; nil fields stay as they are.
type StationPatch struct {
	Name      *string
	Address   *string
	Latitude  *float64
	Longitude *float64
	Status    *StationStatus
	Message   *string
}

// Validate checks the fields that are present.
func (p *StationPatch) Validate() error {
	f := map[string]string{}
	if *p == (StationPatch{}) {
		f["name"] = "name, address, latitude, longitude, status or message is required"
	}
	if p.Name != nil {
		checkText(f, "name", p.Name, 200, "must not be empty")
	}
	if p.Address != nil {
		checkText(f, "address", p.Address, 500, "must not be empty")
	}
	if p.Latitude != nil && (*p.Latitude < -90 || *p.Latitude > 90) {
		f["latitude"] = "must be between -90 and 90"
	}
	if p.Longitude != nil && (*p.Longitude < -180 || *p.Longitude > 180) {
		f["longitude"] = "must be between -180 and 180"
	}
	if p.Status != nil && !p.Status.Valid() {
		f["status"] = "must be open, closed or maintenance"
	}
	if p.Message != nil {
		if longer(*p.Message, 1000) {
			f["message"] = "must be at most 1000 characters"
		} else if why := multiLineText(*p.Message); why != "" {
			f["message"] = why
		}
	}
	return ValidationError(f)
}

// checkText trims *s and records in f why it is not a one-line text of 1
// to max characters: empty says what a blank one lacks.
func checkText(f map[string]string, field string, s *string, max int, empty string) {
	*s = strings.TrimSpace(*s)
	switch {
	case *s == "":
		f[field] = empty
	case longer(*s, max):
		f[field] = fmt.Sprintf("must be at most %d characters", max)
	default:
		if why := singleLineText(*s); why != "" {
			f[field] = why
		}
	}
}

func validateCoords(f map[string]string, lat, lon float64) {
	if lat < -90 || lat > 90 {
		f["latitude"] = "must be between -90 and 90"
	}
	if lon < -180 || lon > 180 {
		f["longitude"] = "must be between -180 and 180"
	}
}
