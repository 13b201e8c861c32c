package store_test

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"batteryswap/models"
	"batteryswap/store"
	"batteryswap/store/storetest"
)

// nearSpot is a station of the nearest-stations tests.
type nearSpot struct {
	id       int64
	lat, lon float64
	ready    bool
	open     bool
}

// TestNearestStationsMatchBruteForce: every page of every nearest query
// (radius or none, available or not, across the antimeridian and near a
// pole) holds exactly the stations a brute-force sort over all of them
// gives, in that order, with their distances, and the cursor walks the
// whole list once.
func TestNearestStationsMatchBruteForce(t *testing.T) {
	eachDialect(t, func(t *testing.T, f *fixture) {
		rng := rand.New(rand.NewPCG(14, 14))
		var spots []nearSpot
		add := func(lat, lon float64) {
			i := len(spots)
			ready := rng.IntN(3) > 0
			charge := 30
			if ready {
				charge = 95
			}
			st := f.station(fmt.Sprintf("S%d", i), charge)
			if err := f.s.DB().Exec("UPDATE stations SET latitude = ?, longitude = ? WHERE id = ?", lat, lon, st.ID).Error; err != nil {
				t.Fatal(err)
			}
			open := rng.IntN(8) > 0
			if !open {
				closed := models.StationClosed
				if _, err := f.s.UpdateStation(f.ctx, st.ID, models.StationPatch{Status: &closed}); err != nil {
					t.Fatal(err)
				}
			}
			spots = append(spots, nearSpot{id: st.ID, lat: lat, lon: lon, ready: ready, open: open})
		}
		// A dense city, a wide region, both sides of the antimeridian, the
		// Arctic, and a few anywhere.
		for range 40 {
			add(52.52+rng.NormFloat64()*0.05, 13.40+rng.NormFloat64()*0.08)
		}
		for range 20 {
			add(45+rng.Float64()*10, 5+rng.Float64()*15)
		}
		for range 10 {
			add(-17+rng.Float64()*2, 179+rng.Float64()*0.999)
			add(-17+rng.Float64()*2, -180+rng.Float64()*0.999)
		}
		for range 6 {
			add(88+rng.Float64()*2, -180+rng.Float64()*360)
		}
		for range 10 {
			add(-90+rng.Float64()*180, -180+rng.Float64()*360)
		}
		// A station at exactly the point: distance 0, first.
		add(52.52, 13.40)

		for _, q := range []models.NearQuery{
			{Lat: 52.52, Lon: 13.40},
			{Lat: 52.52, Lon: 13.40, RadiusM: 5000},
			{Lat: 52.52, Lon: 13.40, Available: true},
			{Lat: 52.52, Lon: 13.40, RadiusM: 800_000, Available: true},
			{Lat: -16.5, Lon: 179.9, RadiusM: 150_000},
			{Lat: -16.5, Lon: -179.95},
			{Lat: 89.5, Lon: 0, RadiusM: 400_000},
			{Lat: -60, Lon: -100, RadiusM: 1},
		} {
			var want []nearSpot
			dist := map[int64]float64{}
			for _, s := range spots {
				d := models.DistanceM(q.Lat, q.Lon, s.lat, s.lon)
				dist[s.id] = d
				if (q.RadiusM == 0 || d <= q.RadiusM) && (!q.Available || s.ready && s.open) {
					want = append(want, s)
				}
			}
			slices.SortFunc(want, func(a, b nearSpot) int { return cmp.Or(cmp.Compare(dist[a.id], dist[b.id]), cmp.Compare(a.id, b.id)) })
			for _, limit := range []int{7, 200} {
				var got []models.Station
				cursor := int64(0)
				for pages := 0; ; pages++ {
					if pages > 100 {
						t.Fatalf("%+v: the cursor does not end", q)
					}
					q.Page = models.Page{Limit: limit + 1, Cursor: cursor} // as the API asks: one ahead
					page, err := f.s.NearestStations(f.ctx, q)
					if err != nil {
						t.Fatalf("%+v: %v", q, err)
					}
					if len(page) <= limit {
						got = append(got, page...)
						break
					}
					got = append(got, page[:limit]...)
					cursor = page[limit-1].ID
				}
				if len(got) != len(want) {
					t.Fatalf("%+v limit %d: %d stations, want %d", q, limit, len(got), len(want))
				}
				for i := range got {
					if got[i].ID != want[i].id {
						t.Fatalf("%+v limit %d: #%d is station %d, want %d (%.1f m)", q, limit, i, got[i].ID, want[i].id, dist[want[i].id])
					}
					if got[i].DistanceM == nil || abs(*got[i].DistanceM-dist[want[i].id]) > 0.06 {
						t.Fatalf("%+v: station %d distance %v, want %.2f", q, got[i].ID, got[i].DistanceM, dist[want[i].id])
					}
					if q.Available && (got[i].Available == 0 || got[i].Status != models.StationOpen) {
						t.Fatalf("available=true listed %+v", got[i])
					}
				}
			}
		}
	})
}

func abs(x float64) float64 { return max(x, -x) }

func TestNearestStationsRefusesBadInput(t *testing.T) {
	eachDialect(t, func(t *testing.T, f *fixture) {
		for _, q := range []models.NearQuery{{Lat: 91}, {Lat: 0, Lon: -180.5}, {RadiusM: -1}, {RadiusM: 3e7}} {
			_, err := f.s.NearestStations(f.ctx, q)
			wantCode(t, err, models.CodeValidationFailed)
		}
		_, err := f.s.NearestStations(f.ctx, models.NearQuery{Page: models.Page{Limit: 5, Cursor: 999}})
		wantCode(t, err, models.CodeInvalidCursor)
	})
}

func TestDistance(t *testing.T) {
	// London to Paris (the usual reference points): 343.5 km.
	if d := models.DistanceM(51.5074, -0.1278, 48.8566, 2.3522); d < 343_400 || d > 343_700 {
		t.Fatalf("London-Paris %.0f m", d)
	}
	if d := models.DistanceM(0, 179.9, 0, -179.9); d < 22_000 || d > 22_400 {
		t.Fatalf("across the antimeridian %.0f m", d)
	}
	if d := models.DistanceM(90, 0, -90, 0); abs(d-models.MaxRadiusM) > 1 {
		t.Fatalf("pole to pole %.0f m, want %.0f", d, models.MaxRadiusM)
	}
}

// BenchmarkNearestStations: a nearest-stations page among 100,000 stations
// spread over Europe, on each database. It runs only with -bench (setting
// up the stations takes a while).
func BenchmarkNearestStations(b *testing.B) {
	for _, d := range storetest.Dialects {
		b.Run(d, func(b *testing.B) {
			s := storetest.Open(b, d, store.Options{})
			const n = 100_000
			rng := rand.New(rand.NewPCG(1, 2))
			for start := 0; start < n; start += 1000 {
				var rows, bats []string
				var args, bargs []any
				for i := start; i < start+1000; i++ {
					rows = append(rows, "(?, ?, ?, ?)")
					args = append(args, fmt.Sprintf("B%d", i), "somewhere", 36+rng.Float64()*24, -10+rng.Float64()*40)
				}
				if err := s.DB().Exec("INSERT INTO stations (name, address, latitude, longitude) VALUES "+strings.Join(rows, ", "), args...).Error; err != nil {
					b.Fatal(err)
				}
				for i := start; i < start+1000; i += 3 {
					bats = append(bats, "(?, ?, 95, 'available')")
					bargs = append(bargs, i+1, fmt.Sprintf("P%d", i))
				}
				if err := s.DB().Exec("INSERT INTO batteries (station_id, serial_number, charge_percent, status) VALUES "+strings.Join(bats, ", "), bargs...).Error; err != nil {
					b.Fatal(err)
				}
			}
			if d == "postgres" {
				s.DB().Exec("ANALYZE")
			}
			for _, tc := range []struct {
				name string
				q    models.NearQuery
			}{
				{"near", models.NearQuery{Lat: 48.85, Lon: 2.35}},
				{"near_available", models.NearQuery{Lat: 48.85, Lon: 2.35, Available: true}},
				{"radius_10km", models.NearQuery{Lat: 48.85, Lon: 2.35, RadiusM: 10_000}},
			} {
				b.Run(tc.name, func(b *testing.B) {
					tc.q.Page = models.Page{Limit: models.DefaultPageLimit + 1}
					for b.Loop() {
						got, err := s.NearestStations(b.Context(), tc.q)
						if err != nil || (tc.q.RadiusM == 0 && len(got) != tc.q.Page.Limit) {
							b.Fatalf("%d stations, %v", len(got), err)
						}
					}
				})
			}
		})
	}
}
