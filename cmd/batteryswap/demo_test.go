package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"batteryswap/models"
	"batteryswap/sseclient"
	"batteryswap/store"
	"batteryswap/store/storetest"
)

// demoNetwork describes a seeded network without ids or times: what the
// seed decides.
func demoNetwork(t *testing.T, s *store.Store) (string, []models.Station, []models.Battery) {
	t.Helper()
	ctx := context.Background()
	stations, err := s.AllStations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	var all []models.Battery
	for _, st := range stations {
		fmt.Fprintf(&b, "%s|%s|%.5f|%.5f|%s:", st.Name, st.Address, st.Latitude, st.Longitude, st.Status)
		bats, err := s.ListBatteries(ctx, st.ID, models.Page{Limit: models.MaxPageLimit})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range bats {
			fmt.Fprintf(&b, " %s/%d/%s/%.1f", x.SerialNumber, x.ChargePercent, x.Status, x.CapacityKWh)
		}
		b.WriteString("\n")
		all = append(all, bats...)
	}
	return b.String(), stations, all
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestDemoSeedsDeterministically: the same seed makes the same network
// (stations, addresses, packs and charges), another seed another; the
// network is two to three dozen stations in Berlin with 6 to 16 packs
// each, some ready and some charging.
func TestDemoSeedsDeterministically(t *testing.T) {
	seeded := func(seed uint64) (string, []models.Station, []models.Battery) {
		s := storetest.Open(t, "sqlite", store.Options{})
		if _, err := newSimulator(context.Background(), s, demoOptions{Riders: 1, Speed: 1, Seed: seed}, time.Minute, quietLog()); err != nil {
			t.Fatal(err)
		}
		return demoNetwork(t, s)
	}
	a, stations, bats := seeded(7)
	if again, _, _ := seeded(7); again != a {
		t.Fatalf("seed 7 twice made different networks:\n%s\n---\n%s", a, again)
	}
	if other, _, _ := seeded(8); other == a {
		t.Fatal("seeds 7 and 8 made the same network")
	}
	if len(stations) < 24 || len(stations) > 36 {
		t.Fatalf("%d stations", len(stations))
	}
	perStation := map[int64]int{}
	statuses := map[models.BatteryStatus]int{}
	for _, b := range bats {
		perStation[*b.StationID]++
		statuses[b.Status]++
	}
	for _, st := range stations {
		if st.Latitude < 52.3 || st.Latitude > 52.7 || st.Longitude < 13.1 || st.Longitude > 13.7 || !strings.HasSuffix(st.Address, " Berlin") {
			t.Errorf("station %s at %v,%v (%s) is not in Berlin", st.Name, st.Latitude, st.Longitude, st.Address)
		}
		if n := perStation[st.ID]; n < 6 || n > 16 || n != st.Total {
			t.Errorf("station %s has %d packs (total %d)", st.Name, n, st.Total)
		}
	}
	if statuses[models.BatteryAvailable] < len(bats)/4 || statuses[models.BatteryCharging] < len(bats)/4 {
		t.Errorf("charges not mixed: %v", statuses)
	}
}

// TestDemoRefusesAnotherNetwork: the demo does not mix its riders into a
// database whose stations it did not make, and picks up its own.
func TestDemoRefusesAnotherNetwork(t *testing.T) {
	s := storetest.Open(t, "sqlite", store.Options{})
	ctx := context.Background()
	if _, err := s.CreateStation(ctx, models.StationInput{Name: "Real", Address: "1 Main St", Latitude: 1, Longitude: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := newSimulator(ctx, s, demoOptions{Speed: 1, Seed: 1}, time.Minute, quietLog()); err == nil || !strings.Contains(err.Error(), "did not make") {
		t.Fatalf("demo on another network: %v", err)
	}
	own := storetest.Open(t, "sqlite", store.Options{})
	if _, err := newSimulator(ctx, own, demoOptions{Speed: 1, Seed: 1}, time.Minute, quietLog()); err != nil {
		t.Fatal(err)
	}
	// An earlier run stopped with a station closed: this one reopens it.
	closed := models.StationClosed
	first, _ := own.AllStations(ctx)
	if _, err := own.UpdateStation(ctx, first[0].ID, models.StationPatch{Status: &closed}); err != nil {
		t.Fatal(err)
	}
	sim, err := newSimulator(ctx, own, demoOptions{Speed: 1, Seed: 1}, time.Minute, quietLog())
	if err != nil || len(sim.stations) != len(demoPlaces) {
		t.Fatalf("picking up the demo's own network: %v", err)
	}
	for range 21 {
		sim.step(ctx)
	}
	if st, _ := own.FindStationByID(ctx, first[0].ID); st.Status != models.StationOpen {
		t.Fatalf("the station an earlier run closed is %s after 21 ticks", st.Status)
	}
}

func TestDemoOptions(t *testing.T) {
	for _, bad := range [][3]string{{"-1", "1", "1"}, {"x", "1", "1"}, {"5", "0", "1"}, {"5", "NaN", "1"}, {"5", "5000", "1"}, {"5", "1", "-3"}} {
		if _, err := parseDemoOptions(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("riders %q speed %q seed %q accepted", bad[0], bad[1], bad[2])
		}
	}
	o, err := parseDemoOptions("40", "2.5", "99")
	if err != nil || o != (demoOptions{Riders: 40, Speed: 2.5, Seed: 99}) {
		t.Fatalf("%+v, %v", o, err)
	}
}

// TestDemoRunIsLiveAndConsistent: a short simulated run on a serving
// instance shows up on a station stream as bookings, collections, charging
// and a station going offline; afterwards every station's counts are what
// its battery rows say, and every booked pack is held by exactly one
// active booking.
func TestDemoRunIsLiveAndConsistent(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			cfg := testConfig(t, storetest.URL(t, d), "")
			cfg.StationStaleAfter = time.Second
			demoRunIsLiveAndConsistent(t, startInstance(t, cfg))
		})
	}
}

func demoRunIsLiveAndConsistent(t *testing.T, in *instance) {
	ctx := context.Background()
	sim, err := newSimulator(ctx, in.app.store, demoOptions{Riders: 15, Speed: 1, Seed: 3}, time.Second, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	// One controller falls silent for the whole run: it must go offline.
	silent := sim.stations[4]
	silent.silentUntil = time.Now().Add(time.Hour)
	events := subscribeSSE(t, in.url+"/stream/stations?last_event_id=0", sseclient.Options{})
	for range 150 {
		sim.step(ctx)
	}
	want := map[string]bool{"battery_booked": false, "battery_collected": false, "charged": false, "offline": false}
	missing := func() []string {
		var out []string
		for k, seen := range want {
			if !seen {
				out = append(out, k)
			}
		}
		return out
	}
	deadline := time.After(20 * time.Second)
	for len(missing()) > 0 {
		select {
		case e := <-events:
			switch {
			case e.Type == "battery_booked" || e.Type == "battery_collected":
				want[e.Type] = true
			case e.Type == "inventory_update" && e.Data["action"] == "charged":
				want["charged"] = true
			case e.Type == "station_status" && e.Data["presence"] == "offline" && e.Data["station_id"] == float64(silent.id):
				want["offline"] = true
			}
		case <-deadline:
			t.Fatalf("the stream never showed %v", missing())
		}
	}

	s := in.app.store
	stations, err := s.AllStations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sum models.Inventory
	for _, st := range stations {
		bats, err := s.ListBatteries(ctx, st.ID, models.Page{Limit: models.MaxPageLimit})
		if err != nil {
			t.Fatal(err)
		}
		var rows models.Inventory
		for _, b := range bats {
			rows.Total++
			switch b.Status {
			case models.BatteryAvailable:
				rows.Available++
			case models.BatteryBooked:
				rows.Booked++
			case models.BatteryCharging:
				rows.Charging++
			}
		}
		if rows != st.Inventory {
			t.Errorf("station %s says %+v, its battery rows %+v", st.Name, st.Inventory, rows)
		}
		sum.Available += rows.Available
		sum.Booked += rows.Booked
		sum.Charging += rows.Charging
		sum.Total += rows.Total
	}
	var booked, active int64
	s.DB().Raw(`SELECT COUNT(*) FROM batteries WHERE status = 'booked'`).Scan(&booked)
	s.DB().Raw(`SELECT COUNT(*) FROM bookings WHERE status IN ('confirmed', 'ready')`).Scan(&active)
	if booked != active || int64(sum.Booked) != booked {
		t.Fatalf("%d booked packs, %d active bookings, stations count %d booked", booked, active, sum.Booked)
	}
	var collected int64
	s.DB().Raw(`SELECT COUNT(*) FROM bookings WHERE status = 'collected'`).Scan(&collected)
	if collected == 0 || sum.Total == 0 {
		t.Fatalf("the run collected %d bookings over %d packs", collected, sum.Total)
	}
}

// TestDemoCommandServesTheNetwork runs `batteryswap demo` as main does: it
// logs that it listens, serves the seeded network, and stops on SIGTERM.
// `serve` on an empty database says how to start the demo.
func TestDemoCommandServesTheNetwork(t *testing.T) {
	empty := serveEnv(t, nil)
	if !strings.Contains(empty.logs.String(), "batteryswap demo") {
		t.Fatalf("serve on an empty database does not mention the demo:\n%s", empty.logs)
	}

	env := envOf(map[string]string{
		"DATABASE_URL": "sqlite://" + filepath.Join(t.TempDir(), "demo.db"), "ADDR": "127.0.0.1:0",
		"JWT_SECRET": "demo-test-secret-of-32-bytes!!!!",
	})
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--speed", "20", "--riders", "5", "--seed", "4"}, env, io.Discard, logs)
	}()
	listening := regexp.MustCompile(`msg="listening on \S+" addr=(\S+)`)
	var addr string
	eventually(t, "demo logs that it is listening", func() bool {
		if m := listening.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	})
	var page struct {
		Stations []models.Station `json:"stations"`
	}
	if code := call(t, "GET", "http://"+addr+"/api/v1/stations?near=52.52,13.405&limit=5&available=true", "", nil, &page); code != 200 || len(page.Stations) == 0 {
		t.Fatalf("nearest ready packs on the demo: %d %+v", code, page)
	}
	if page.Stations[0].DistanceM == nil || *page.Stations[0].DistanceM > 5000 {
		t.Fatalf("nearest %+v", page.Stations[0])
	}
	if strings.Contains(logs.String(), "level=WARN msg=\"demo:") || strings.Contains(logs.String(), "level=ERROR") {
		t.Fatalf("the demo logged failures:\n%s", logs)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop")
	}
}
