package store

import (
	"cmp"
	"context"
	"math"
	"slices"

	"gorm.io/gorm"

	"batteryswap/models"
)

// stationBookableNow keeps the stations where a booking would get a ready
// pack now: open, online, with an available battery (GET
// /stations?available=true). The EXISTS probe runs on the batteries'
// (station_id, status, …) index.
const stationBookableNow = `stations.status = 'open' AND stations.presence = 'online' AND EXISTS (
	SELECT 1 FROM batteries WHERE batteries.station_id = stations.id AND batteries.status = 'available')`

// nearFirstRadiusM is the radius of the first bounding box a nearest query
// tries; each round that finds too few stations within its circle widens it.
const nearFirstRadiusM = 2000

// nearGrowth is how much each round widens the search radius.
const nearGrowth = 4

// located is a candidate of a nearest query: where it is and how far.
type located struct {
	ID        int64
	Latitude  float64
	Longitude float64
	dist      float64
}

// NearestStations lists stations by great-circle distance from q's point,
// nearest first (ties by id), each with DistanceM, a page at a time: the
// cursor is the id of the previous page's last station, whose distance from
// the point says where the next page starts.
//
// It never reads every station: it asks for the stations in a bounding box
// of latitude and longitude (indexed), keeps those within the circle the
// box encloses and, while they are fewer than the page, widens the box;
// only the page's stations are then read in full, with their counts.
func (s *Store) NearestStations(ctx context.Context, q models.NearQuery) ([]models.Station, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	limit := q.Page.Limit
	if limit <= 0 || limit > models.MaxPageLimit+1 {
		limit = models.DefaultPageLimit
	}
	db := s.db.WithContext(ctx)
	after := located{dist: -1}
	if q.Page.Cursor > 0 {
		var c located
		if err := db.Model(&stationRow{}).Select("id, latitude, longitude").Take(&c, q.Page.Cursor).Error; err != nil {
			if err = translate(err, "station"); models.IsCode(err, models.CodeNotFound) {
				return nil, models.Errorf(models.CodeInvalidCursor, "cursor must be a station id from next_cursor")
			}
			return nil, err
		}
		c.dist = models.DistanceM(q.Lat, q.Lon, c.Latitude, c.Longitude)
		after = c
	}
	maxR := models.MaxRadiusM
	if q.RadiusM > 0 {
		maxR = q.RadiusM
	}
	r := min(max(nearFirstRadiusM, after.dist*1.01+1), maxR)
	var found []located
	for {
		var cands []located
		if err := nearBox(db.Model(&stationRow{}), q.Lat, q.Lon, r, q.Available).
			Select("id, latitude, longitude").Find(&cands).Error; err != nil {
			return nil, translate(err, "stations")
		}
		found = found[:0]
		for _, c := range cands {
			c.dist = models.DistanceM(q.Lat, q.Lon, c.Latitude, c.Longitude)
			if c.dist > r || c.dist < after.dist || c.dist == after.dist && c.ID <= after.ID {
				continue
			}
			found = append(found, c)
		}
		// Every station within r is in the box: with a page of them (or
		// at the widest radius) the nearest ones are among them.
		if len(found) >= limit || r >= maxR {
			break
		}
		r = min(r*nearGrowth, maxR)
	}
	slices.SortFunc(found, func(a, b located) int {
		return cmp.Or(cmp.Compare(a.dist, b.dist), cmp.Compare(a.ID, b.ID))
	})
	found = found[:min(len(found), limit)]
	if len(found) == 0 {
		return []models.Station{}, nil
	}
	ids := make([]int64, len(found))
	for i, c := range found {
		ids[i] = c.ID
	}
	var rows []stationRow
	if err := db.Where("id IN ?", ids).Find(&rows).Error; err != nil {
		return nil, translate(err, "stations")
	}
	list, err := s.withInventories(ctx, rows)
	if err != nil {
		return nil, err
	}
	byID := make(map[int64]*models.Station, len(list))
	for i := range list {
		byID[list[i].ID] = &list[i]
	}
	out := make([]models.Station, 0, len(found))
	for _, c := range found {
		st, ok := byID[c.ID]
		if !ok {
			continue
		}
		d := math.Round(c.dist*10) / 10
		st.DistanceM = &d
		out = append(out, *st)
	}
	return out, nil
}

// nearBox narrows q to the stations in the bounding box of the circle of
// radius r metres around (lat, lon): a range of latitude and one of
// longitude (two where the box crosses the antimeridian, none where it
// reaches a pole), both served by the stations_location index.
func nearBox(q *gorm.DB, lat, lon, r float64, available bool) *gorm.DB {
	if available {
		q = q.Where(stationBookableNow)
	}
	const deg = 180 / math.Pi
	// The radius as an angle, in radians, a metre wider than asked so that
	// rounding never leaves out a station on the circle.
	ang := (r + 1) / models.EarthRadiusM
	minLat, maxLat := lat-ang*deg, lat+ang*deg
	if minLat <= -90 || maxLat >= 90 {
		// The circle holds a pole: every longitude.
		return q.Where("latitude BETWEEN ? AND ?", max(minLat, -90), min(maxLat, 90))
	}
	q = q.Where("latitude BETWEEN ? AND ?", minLat, maxLat)
	// The widest longitude the circle reaches (it lies off the point's own
	// parallel, nearer the pole): asin(sin(ang)/cos(lat)).
	dLon := math.Asin(math.Min(1, math.Sin(ang)/math.Cos(lat/deg))) * deg
	minLon, maxLon := lon-dLon, lon+dLon
	switch {
	case dLon >= 180 || maxLon-minLon >= 360:
		return q
	case minLon < -180:
		return q.Where("(longitude >= ? OR longitude <= ?)", minLon+360, maxLon)
	case maxLon > 180:
		return q.Where("(longitude >= ? OR longitude <= ?)", minLon, maxLon-360)
	}
	return q.Where("longitude BETWEEN ? AND ?", minLon, maxLon)
}
