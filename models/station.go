package models

import (
	"fmt"
	"math"
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

// Presence is whether a station's controller is heard from.
type Presence string

// The presences: a station not heard from (by heartbeat or battery
// telemetry) for STATION_STALE_AFTER is offline and takes no bookings.
const (
	PresenceOnline  Presence = "online"
	PresenceOffline Presence = "offline"
)

// DefaultStationStaleAfter is STATION_STALE_AFTER's default.
const DefaultStationStaleAfter = 2 * time.Minute

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
	// Presence is online or offline; LastSeenAt is when the station was
	// last heard from (created, a heartbeat, battery telemetry).
	Presence   Presence  `json:"presence"`
	LastSeenAt time.Time `json:"last_seen_at"`
	Inventory
	// DistanceM is the great-circle distance in metres from the point a
	// nearest-stations query named; nil (and left out) otherwise.
	DistanceM *float64  `json:"distance_m,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// NearQuery lists stations by distance from a point (GET /stations?near=).
type NearQuery struct {
	Lat, Lon float64
	// RadiusM keeps stations within this many metres; 0 keeps all.
	RadiusM float64
	// Available keeps stations where a booking would get a ready pack now:
	// open, online, with an available battery.
	Available bool
	// Page: Cursor is the id of the last station of the previous page.
	Page Page
}

// StationFilter narrows a list of stations in id order.
type StationFilter struct {
	Available bool
	Page      Page
}

// EarthRadiusM is the mean radius of the Earth (IUGG), for distances.
const EarthRadiusM = 6371008.8

// MaxRadiusM is half the Earth's circumference: no two points are farther.
const MaxRadiusM = math.Pi * EarthRadiusM

// DistanceM is the great-circle distance between two points in metres
// (the haversine formula).
func DistanceM(lat1, lon1, lat2, lon2 float64) float64 {
	const rad = math.Pi / 180
	φ1, φ2 := lat1*rad, lat2*rad
	dφ, dλ := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dφ/2)*math.Sin(dφ/2) + math.Cos(φ1)*math.Cos(φ2)*math.Sin(dλ/2)*math.Sin(dλ/2)
	return 2 * EarthRadiusM * math.Asin(math.Sqrt(min(a, 1)))
}

// Validate checks the point and the radius (422 with the fields named).
func (q *NearQuery) Validate() error {
	f := map[string]string{}
	if math.IsNaN(q.Lat) || math.IsNaN(q.Lon) || q.Lat < -90 || q.Lat > 90 || q.Lon < -180 || q.Lon > 180 {
		f["near"] = "must be LAT,LON with latitude between -90 and 90 and longitude between -180 and 180"
	}
	if math.IsNaN(q.RadiusM) || q.RadiusM < 0 || q.RadiusM > MaxRadiusM {
		f["radius_m"] = fmt.Sprintf("must be a number of metres above 0 and at most %.0f", MaxRadiusM)
	}
	return ValidationError(f)
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
