package store

import (
	"context"
	"database/sql/driver"
	"fmt"
	"time"

	"gorm.io/gorm"

	"batteryswap/models"
)

type stationRow struct {
	ID        int64
	Name      string
	Address   string
	Latitude  float64
	Longitude float64
	Status    string
	Message   string
	// Presence and LastSeenAt: see models.Station; presence.go.
	Presence   string
	LastSeenAt time.Time
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

func (stationRow) TableName() string { return "stations" }

func (r *stationRow) model(inv models.Inventory) *models.Station {
	return &models.Station{ID: r.ID, Name: r.Name, Address: r.Address, Latitude: r.Latitude, Longitude: r.Longitude,
		Status: models.StationStatus(r.Status), Message: r.Message, Presence: models.Presence(r.Presence), LastSeenAt: r.LastSeenAt,
		Inventory: inv, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

type inventoryRow struct {
	StationID int64
	Available int
	Booked    int
	Charging  int
	Total     int
	// Changed is when the newest change to one of the station's batteries
	// was made (a booking, a collection, telemetry), zero without any.
	Changed aggregateTime
}

// aggregateTime is a time computed in SQL (MAX of a timestamp column).
// PostgreSQL types it; SQLite returns an aggregate of its text timestamps
// as text, in the format its driver writes them in.
type aggregateTime struct{ time.Time }

// sqliteTimeFormat is how the SQLite driver (glebarez/go-sqlite) writes a
// time.Time.
const sqliteTimeFormat = "2006-01-02 15:04:05.999999999-07:00"

// Value makes it a column type for GORM; it is only ever read.
func (t aggregateTime) Value() (driver.Value, error) { return t.Time, nil }

func (t *aggregateTime) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		t.Time = time.Time{}
	case time.Time:
		t.Time = v
	case string:
		p, err := time.Parse(sqliteTimeFormat, v)
		if err != nil {
			return fmt.Errorf("store: a time in SQL: %w", err)
		}
		t.Time = p
	default:
		return fmt.Errorf("store: a time in SQL: unexpected %T", v)
	}
	return nil
}

func (r inventoryRow) counts() models.Inventory {
	return models.Inventory{Available: r.Available, Booked: r.Booked, Charging: r.Charging, Total: r.Total}
}

// inventoryColumns counts batteries by status: a station's counts are
// derived from its battery rows, here and in the booking statements.
const inventoryColumns = `COALESCE(SUM(CASE WHEN status = 'available' THEN 1 ELSE 0 END), 0) AS available,
	COALESCE(SUM(CASE WHEN status = 'booked' THEN 1 ELSE 0 END), 0) AS booked,
	COALESCE(SUM(CASE WHEN status = 'charging' THEN 1 ELSE 0 END), 0) AS charging,
	COUNT(*) AS total`

// stationCounts counts each station's batteries from its battery rows, so
// the totals can never drift from what the rows say, and finds when they
// last changed.
func stationCounts(tx *gorm.DB, ids []int64) (map[int64]inventoryRow, error) {
	var rows []inventoryRow
	err := tx.Raw(`SELECT station_id, `+inventoryColumns+`, MAX(updated_at) AS changed
		FROM batteries WHERE station_id IN ? GROUP BY station_id`, ids).Find(&rows).Error
	if err != nil {
		return nil, err
	}
	out := make(map[int64]inventoryRow, len(rows))
	for _, r := range rows {
		out[r.StationID] = r
	}
	return out, nil
}

// inventories is stationCounts' counts alone.
func inventories(tx *gorm.DB, ids []int64) (map[int64]models.Inventory, error) {
	rows, err := stationCounts(tx, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[int64]models.Inventory, len(rows))
	for id, r := range rows {
		out[id] = r.counts()
	}
	return out, nil
}

// withCounts is the station as clients see it: its counts, and as its
// updated_at the later of its own last change and its batteries' (a
// station whose packs changed a moment ago was updated a moment ago).
func (r *stationRow) withCounts(c inventoryRow) *models.Station {
	st := r.model(c.counts())
	if c.Changed.After(st.UpdatedAt) {
		st.UpdatedAt = c.Changed.UTC()
	}
	return st
}

func stationWithInventory(tx *gorm.DB, r *stationRow) (*models.Station, error) {
	counts, err := stationCounts(tx, []int64{r.ID})
	if err != nil {
		return nil, err
	}
	return r.withCounts(counts[r.ID]), nil
}

// ListStations returns a page of stations in id order, with their counts;
// with f.Available only those where a booking would get a ready pack.
func (s *Store) ListStations(ctx context.Context, f models.StationFilter) ([]models.Station, error) {
	q := s.db.WithContext(ctx)
	if f.Available {
		q = q.Where(stationBookableNow)
	}
	var rows []stationRow
	if err := page(q, f.Page, "id", false).Find(&rows).Error; err != nil {
		return nil, translate(err, "stations")
	}
	return s.withInventories(ctx, rows)
}

func (s *Store) withInventories(ctx context.Context, rows []stationRow) ([]models.Station, error) {
	out := make([]models.Station, 0, len(rows))
	if len(rows) == 0 {
		return out, nil
	}
	ids := make([]int64, len(rows))
	for i := range rows {
		ids[i] = rows[i].ID
	}
	counts, err := stationCounts(s.db.WithContext(ctx), ids)
	if err != nil {
		return nil, translate(err, "stations")
	}
	for i := range rows {
		out = append(out, *rows[i].withCounts(counts[rows[i].ID]))
	}
	return out, nil
}

// AllStations returns every station, for stream snapshots.
func (s *Store) AllStations(ctx context.Context) ([]models.Station, error) {
	var rows []stationRow
	if err := s.db.WithContext(ctx).Order("id").Find(&rows).Error; err != nil {
		return nil, translate(err, "stations")
	}
	return s.withInventories(ctx, rows)
}

// FindStationByID returns one station with its counts (not_found).
func (s *Store) FindStationByID(ctx context.Context, id int64) (*models.Station, error) {
	var r stationRow
	if err := s.db.WithContext(ctx).Take(&r, id).Error; err != nil {
		return nil, translate(err, "station")
	}
	st, err := stationWithInventory(s.db.WithContext(ctx), &r)
	return st, translate(err, "station")
}

// StationExists reports whether a station exists.
func (s *Store) StationExists(ctx context.Context, id int64) (bool, error) {
	var n int64
	err := s.db.WithContext(ctx).Model(&stationRow{}).Where("id = ?", id).Count(&n).Error
	return n > 0, translate(err, "station")
}

// CreateStation adds a station and announces it (station_status "created",
// inventory_update "created").
func (s *Store) CreateStation(ctx context.Context, in models.StationInput) (*models.Station, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	var out *models.Station
	err := s.tx(ctx, func(tx *gorm.DB) error {
		now := s.now()
		// A new station counts as heard from: its controller has
		// STATION_STALE_AFTER to report in.
		r := stationRow{Name: in.Name, Address: in.Address, Latitude: in.Latitude, Longitude: in.Longitude,
			Status: string(in.Status), Presence: string(models.PresenceOnline), LastSeenAt: now, CreatedAt: now, UpdatedAt: now}
		if err := tx.Create(&r).Error; err != nil {
			return err
		}
		out = r.model(models.Inventory{})
		o := s.outbox(tx, now)
		o.stationStatus(out, "created")
		o.inventory(out, models.ActionCreated)
		return o.flush()
	})
	return out, translate(err, "station")
}

// UpdateStation changes a station's fields; a change of status or message is
// announced as station_status. The message says why a station is in its
// status, so a new status without a message of its own clears the old one
// (an open station is not still "pump broken").
func (s *Store) UpdateStation(ctx context.Context, id int64, p models.StationPatch) (*models.Station, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var out *models.Station
	err := s.tx(ctx, func(tx *gorm.DB) error {
		r, err := s.lockStation(tx, id)
		if err != nil {
			return err
		}
		before := *r
		set := func(dst *string, v *string) {
			if v != nil {
				*dst = *v
			}
		}
		set(&r.Name, p.Name)
		set(&r.Address, p.Address)
		set(&r.Message, p.Message)
		if p.Latitude != nil {
			r.Latitude = *p.Latitude
		}
		if p.Longitude != nil {
			r.Longitude = *p.Longitude
		}
		if p.Status != nil {
			r.Status = string(*p.Status)
			if p.Message == nil && r.Status != before.Status {
				r.Message = ""
			}
		}
		// One read of the batteries gives both the stamp rule's last
		// battery change and the counts, which the station's own change
		// leaves as they are.
		counts, err := stationCounts(tx, []int64{id})
		if err != nil {
			return err
		}
		c := counts[id]
		now := latest(s.now(), r.UpdatedAt, c.Changed.Time)
		r.UpdatedAt = now
		if err := tx.Save(r).Error; err != nil {
			return err
		}
		out = r.withCounts(c)
		o := s.outbox(tx, now)
		if r.Status != before.Status || r.Message != before.Message {
			o.stationStatus(out, out.Message)
		} else if r.Name != before.Name {
			o.inventory(out, models.ActionUpdated)
		}
		return o.flush()
	})
	return out, translate(err, "station")
}

// lockStation reads and locks the station row for the transaction.
func (s *Store) lockStation(tx *gorm.DB, id int64) (*stationRow, error) {
	var r stationRow
	if err := s.dialect.lock(tx).Take(&r, id).Error; err != nil {
		return nil, translate(err, "station")
	}
	return &r, nil
}
