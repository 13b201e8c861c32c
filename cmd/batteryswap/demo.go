package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"strconv"
	"time"

	"batteryswap/api"
	"batteryswap/models"
	"batteryswap/store"
)

// The demo: `batteryswap demo` is serve on a seeded network of stations
// around Berlin, kept alive by a simulator that goes through the same store
// calls as the API's handlers (so every change is a real event on every
// transport): packs charge (telemetry), riders register, find the nearest
// ready pack, book, collect with a swap-in, cancel or let a booking expire,
// stations close and reopen, controllers send heartbeats, and now and then
// one falls silent long enough to go offline.

// demoOptions are the demo's own flags.
type demoOptions struct {
	// Riders is how many simulated riders take part (they register one a
	// tick until there are this many).
	Riders int
	// Speed multiplies the simulator's pace: a tick every second / Speed.
	Speed float64
	// Seed makes the network (stations, packs, charges) and the
	// simulator's choices repeatable.
	Seed uint64
}

// Demo accounts. The riders share a password, so that a person can sign in
// as one of them on the dashboard and watch their bookings.
const (
	demoDomain        = "demo.batteryswap.example"
	demoOperatorEmail = "operator@" + demoDomain
	demoRiderPassword = "demo-rider"
)

func demoRiderEmail(n int) string { return fmt.Sprintf("rider%d@%s", n, demoDomain) }

func cmdDemo(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	opt := demoOptions{}
	var riders, speed, seed string
	cfg, _, err := parse("demo", args, getenv, stderr, 0, func(fs *flag.FlagSet) {
		fs.StringVar(&riders, "riders", "25", "how many simulated riders (0 to 5000)")
		fs.StringVar(&speed, "speed", "1", "the simulator's pace: a tick every second divided by this (0.1 to 1000)")
		fs.StringVar(&seed, "seed", "1", "seed of the network and the simulator's choices (the same seed, the same network)")
	})
	if err != nil {
		return err
	}
	if opt, err = parseDemoOptions(riders, speed, seed); err != nil {
		return err
	}
	a, err := newApp(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	sim, err := newSimulator(ctx, a.store, opt, cfg.StationStaleAfter, a.log)
	if err != nil {
		a.close()
		return err
	}
	a.goBG(func() { sim.run(a.bgContext()) })
	return a.run(ctx)
}

func parseDemoOptions(riders, speed, seed string) (demoOptions, error) {
	var o demoOptions
	n, err := strconv.Atoi(riders)
	if err != nil || n < 0 || n > 5000 {
		return o, fmt.Errorf("--riders=%q: must be a whole number from 0 to 5000", riders)
	}
	x, err := strconv.ParseFloat(speed, 64)
	if err != nil || math.IsNaN(x) || x < 0.1 || x > 1000 {
		return o, fmt.Errorf("--speed=%q: must be a number from 0.1 to 1000", speed)
	}
	s, err := strconv.ParseUint(seed, 10, 64)
	if err != nil {
		return o, fmt.Errorf("--seed=%q: must be a whole number", seed)
	}
	return demoOptions{Riders: n, Speed: x, Seed: s}, nil
}

// demoPlace is a station of the demo network: a real place in Berlin.
type demoPlace struct {
	name, address string
	lat, lon      float64
}

// demoPlaces are the demo's stations, at squares, stations and parks of
// Berlin, with their street addresses.
var demoPlaces = []demoPlace{
	{"Alexanderplatz", "Alexanderplatz 1, 10178 Berlin", 52.5219, 13.4132},
	{"Hauptbahnhof", "Europaplatz 1, 10557 Berlin", 52.5251, 13.3694},
	{"Potsdamer Platz", "Potsdamer Platz 1, 10785 Berlin", 52.5096, 13.3759},
	{"Pariser Platz", "Pariser Platz 1, 10117 Berlin", 52.5163, 13.3792},
	{"Friedrichstraße", "Friedrichstraße 142, 10117 Berlin", 52.5202, 13.3870},
	{"Hackescher Markt", "Hackescher Markt 2, 10178 Berlin", 52.5225, 13.4020},
	{"Rosenthaler Platz", "Rosenthaler Straße 1, 10119 Berlin", 52.5297, 13.4013},
	{"Kollwitzplatz", "Knaackstraße 30, 10405 Berlin", 52.5363, 13.4178},
	{"Mauerpark", "Bernauer Straße 63, 13355 Berlin", 52.5433, 13.4024},
	{"Schönhauser Allee", "Schönhauser Allee 80, 10439 Berlin", 52.5491, 13.4134},
	{"Gesundbrunnen", "Badstraße 1, 13357 Berlin", 52.5486, 13.3883},
	{"Leopoldplatz", "Müllerstraße 37, 13353 Berlin", 52.5464, 13.3592},
	{"Turmstraße", "Alt-Moabit 80, 10559 Berlin", 52.5258, 13.3418},
	{"Ernst-Reuter-Platz", "Ernst-Reuter-Platz 7, 10587 Berlin", 52.5126, 13.3221},
	{"Zoologischer Garten", "Hardenbergplatz 11, 10623 Berlin", 52.5069, 13.3323},
	{"Savignyplatz", "Savignyplatz 5, 10623 Berlin", 52.5056, 13.3223},
	{"Adenauerplatz", "Kurfürstendamm 160, 10709 Berlin", 52.4998, 13.3074},
	{"Wittenbergplatz", "Tauentzienstraße 21, 10789 Berlin", 52.5018, 13.3417},
	{"Nollendorfplatz", "Nollendorfplatz 5, 10777 Berlin", 52.4996, 13.3537},
	{"Rathaus Schöneberg", "John-F.-Kennedy-Platz 1, 10825 Berlin", 52.4847, 13.3443},
	{"Gleisdreieck", "Möckernstraße 26, 10963 Berlin", 52.4990, 13.3745},
	{"Mehringdamm", "Mehringdamm 33, 10961 Berlin", 52.4934, 13.3880},
	{"Kottbusser Tor", "Adalbertstraße 96, 10999 Berlin", 52.4990, 13.4180},
	{"Görlitzer Park", "Görlitzer Straße 1, 10997 Berlin", 52.4966, 13.4374},
	{"Hermannplatz", "Hermannplatz 5, 10967 Berlin", 52.4869, 13.4245},
	{"Tempelhofer Feld", "Columbiadamm 10, 12101 Berlin", 52.4843, 13.4040},
	{"Rathaus Neukölln", "Karl-Marx-Straße 83, 12043 Berlin", 52.4812, 13.4352},
	{"Treptower Park", "Puschkinallee 1, 12435 Berlin", 52.4933, 13.4616},
	{"Warschauer Straße", "Warschauer Straße 38, 10243 Berlin", 52.5058, 13.4493},
	{"Boxhagener Platz", "Boxhagener Platz 1, 10245 Berlin", 52.5105, 13.4595},
	{"Frankfurter Tor", "Karl-Marx-Allee 131, 10243 Berlin", 52.5158, 13.4542},
	{"Ostkreuz", "Sonntagstraße 1, 10245 Berlin", 52.5030, 13.4690},
}

// simStation is the simulator's view of a station.
type simStation struct {
	id       int64
	lat, lon float64
	// reopenAt is the tick at which a station the simulator closed opens
	// again (0: not closed by it).
	reopenAt int
	// lastBeat is when its controller last reported in; silentUntil, when
	// set, is when a silent controller starts reporting again (real time:
	// STATION_STALE_AFTER is real time whatever the speed).
	lastBeat, silentUntil time.Time
}

// simRider is one simulated rider.
type simRider struct {
	user *models.User
	// booking is the rider's booking in progress, if any; bookedAt the
	// tick it was made; abandoned: the rider lets it expire.
	booking   *models.Booking
	bookedAt  int
	abandoned bool
	// pack is the serial of the pack the rider rides with (handed in at
	// the next swap).
	pack string
	// idleUntil is the tick before which the rider does not book again.
	idleUntil int
}

// simulator drives the demo network through the store.
type simulator struct {
	s          *store.Store
	opt        demoOptions
	staleAfter time.Duration
	log        *slog.Logger
	rng        *mrand.Rand
	now        func() time.Time
	hash       string
	stations   []*simStation
	riders     []*simRider
	tick       int
}

// newSimulator seeds the demo network on an empty database, or picks up
// the one an earlier demo seeded; a database with other stations is
// refused, so the demo never mixes its riders into a real network.
func newSimulator(ctx context.Context, s *store.Store, opt demoOptions, staleAfter time.Duration, log *slog.Logger) (*simulator, error) {
	if staleAfter <= 0 {
		staleAfter = models.DefaultStationStaleAfter
	}
	hash, err := api.HashPassword(demoRiderPassword, 4) // a published password: its hash need not be slow
	if err != nil {
		return nil, err
	}
	sim := &simulator{s: s, opt: opt, staleAfter: staleAfter, log: log, now: time.Now, hash: hash,
		rng: mrand.New(mrand.NewPCG(opt.Seed, opt.Seed^0x9e3779b97f4a7c15))}
	existing, err := s.AllStations(ctx)
	if err != nil {
		return nil, err
	}
	if len(existing) > 0 {
		if _, err := s.FindUserByEmail(ctx, demoOperatorEmail); err != nil {
			if models.IsCode(err, models.CodeNotFound) {
				return nil, fmt.Errorf("demo: the database already holds %d stations that the demo did not make; "+
					"run the demo on a database of its own (DATABASE_URL=sqlite://demo.db)", len(existing))
			}
			return nil, err
		}
		log.Info("demo: continuing the demo network in the database", "stations", len(existing))
	} else {
		if existing, err = seedDemo(ctx, s, opt.Seed, log); err != nil {
			return nil, err
		}
	}
	start := sim.now()
	for _, st := range existing {
		ss := &simStation{id: st.ID, lat: st.Latitude, lon: st.Longitude, lastBeat: start.Add(-staleAfter)}
		if st.Status != models.StationOpen {
			ss.reopenAt = 1 + sim.rng.IntN(20) // closed when an earlier run stopped
		}
		sim.stations = append(sim.stations, ss)
	}
	log.Info(fmt.Sprintf("demo: %d stations around Berlin; riders sign in as rider1@%s … with password %q", len(existing), demoDomain, demoRiderPassword),
		"riders", opt.Riders, "speed", opt.Speed, "seed", opt.Seed)
	return sim, nil
}

// seedDemo makes the demo network: the operator account, the stations of
// demoPlaces and 6 to 16 packs at each, at mixed charge. The same seed
// makes the same network.
func seedDemo(ctx context.Context, s *store.Store, seed uint64, log *slog.Logger) ([]models.Station, error) {
	rng := mrand.New(mrand.NewPCG(seed, 14))
	// The operator account marks the database as the demo's; its password
	// is random and never shown (ADMIN_EMAIL and ADMIN_PASSWORD make an
	// operator one can sign in as).
	hash, err := api.HashPassword(rand.Text(), 4)
	if err != nil {
		return nil, err
	}
	if _, err := s.CreateUser(ctx, demoOperatorEmail, "Demo operator", hash, models.RoleAdmin); err != nil {
		return nil, fmt.Errorf("demo: operator account: %w", err)
	}
	out := make([]models.Station, 0, len(demoPlaces))
	serial := 0
	for _, p := range demoPlaces {
		st, err := s.CreateStation(ctx, models.StationInput{Name: p.name, Address: p.address, Latitude: p.lat, Longitude: p.lon})
		if err != nil {
			return nil, fmt.Errorf("demo: station %s: %w", p.name, err)
		}
		packs := 6 + rng.IntN(11)
		for range packs {
			serial++
			charge := 5 + rng.IntN(75) // charging
			if rng.IntN(100) < 45 {
				charge = 80 + rng.IntN(21) // ready
			}
			capacity := []float64{1.5, 2, 2.5}[rng.IntN(3)]
			if _, err := s.AddBattery(ctx, st.ID, models.BatteryInput{
				SerialNumber: fmt.Sprintf("BER-%05d", serial), ChargePercent: &charge, CapacityKWh: &capacity,
			}); err != nil {
				return nil, fmt.Errorf("demo: pack at %s: %w", p.name, err)
			}
		}
		out = append(out, *st)
	}
	log.Info("demo: seeded the network; to manage it, start the demo with ADMIN_EMAIL and ADMIN_PASSWORD set and sign in as that admin")
	return out, nil
}

// tickEvery is the time between ticks at speed 1.
const tickEvery = time.Second

// run ticks until ctx ends.
func (sim *simulator) run(ctx context.Context) {
	every := time.Duration(float64(tickEvery) / sim.opt.Speed)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		sim.step(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// step is one tick of the network's life.
func (sim *simulator) step(ctx context.Context) {
	sim.tick++
	sim.heartbeats(ctx)
	sim.charge(ctx)
	if len(sim.riders) < sim.opt.Riders {
		sim.register(ctx)
	}
	for _, r := range sim.riders {
		if sim.rng.IntN(100) < 20 {
			sim.ride(ctx, r)
		}
	}
	sim.openAndClose(ctx)
}

// expected reports whether err is one of the answers a real client gets
// in the ordinary run of things (taken batteries, a closed station, a
// booking that expired meanwhile); anything else is logged.
func (sim *simulator) expected(err error, what string) bool {
	if err == nil {
		return false
	}
	var de *models.Error
	if errors.As(err, &de) && de.Code != models.CodeInternal && de.Code != models.CodeServiceUnavailable {
		return true
	}
	if !errors.Is(err, context.Canceled) {
		sim.log.Warn("demo: "+what+" failed", "err", err)
	}
	return false
}

// heartbeats: each controller reports in a few times per
// STATION_STALE_AFTER; now and then one falls silent for longer than
// that, so that it goes offline, and then comes back.
func (sim *simulator) heartbeats(ctx context.Context) {
	now := sim.now()
	silent := 0
	for _, st := range sim.stations {
		if now.Before(st.silentUntil) {
			silent++
		}
	}
	if silent < max(1, len(sim.stations)/10) && sim.rng.Float64() < 0.01*sim.perTick() {
		st := sim.stations[sim.rng.IntN(len(sim.stations))]
		st.silentUntil = now.Add(sim.staleAfter + time.Duration(10+sim.rng.IntN(50))*time.Second)
	}
	for _, st := range sim.stations {
		if now.Before(st.silentUntil) || now.Sub(st.lastBeat) < sim.staleAfter/4 {
			continue
		}
		if err := sim.s.StationHeartbeat(ctx, st.id); err != nil && !sim.expected(err, "heartbeat") {
			continue
		}
		st.lastBeat = now
	}
}

// perTick scales a per-second chance (at speed 1, a tick a second) of something real-time (a station
// falling silent) to one tick, so that it does not grow with the speed.
func (sim *simulator) perTick() float64 { return 1 / sim.opt.Speed }

// charge: at a few stations, a few packs on the chargers gain charge,
// reported as telemetry (so bookings of them become ready, and the
// station counts as heard from).
func (sim *simulator) charge(ctx context.Context) {
	now := sim.now()
	for range 1 + len(sim.stations)/6 {
		st := sim.stations[sim.rng.IntN(len(sim.stations))]
		if now.Before(st.silentUntil) {
			continue
		}
		bats, err := sim.s.ListBatteries(ctx, st.id, models.Page{Limit: models.MaxPageLimit})
		if err != nil {
			sim.expected(err, "list batteries")
			continue
		}
		n := 0
		for _, i := range sim.rng.Perm(len(bats)) {
			b := bats[i]
			if n == 2 || b.ChargePercent >= 100 || (b.Status != models.BatteryCharging && b.Status != models.BatteryBooked) {
				continue
			}
			charge := min(100, b.ChargePercent+4+sim.rng.IntN(9))
			if _, err := sim.s.UpdateBattery(ctx, b.ID, models.BatteryPatch{ChargePercent: &charge}); err != nil {
				sim.expected(err, "telemetry")
			}
			n++
		}
		if n > 0 {
			st.lastBeat = now
		}
	}
}

// register signs up the next rider, as POST /auth/register does (an
// account left by an earlier demo run is taken over).
func (sim *simulator) register(ctx context.Context) {
	n := len(sim.riders) + 1
	email := demoRiderEmail(n)
	u, err := sim.s.CreateUser(ctx, email, fmt.Sprintf("Demo rider %d", n), sim.hash, models.RoleUser)
	if models.IsCode(err, models.CodeEmailTaken) {
		u, err = sim.s.FindUserByEmail(ctx, email)
	}
	if err != nil {
		sim.expected(err, "register")
		return
	}
	r := &simRider{user: u, pack: fmt.Sprintf("RIDER-%04d", n), idleUntil: sim.tick + sim.rng.IntN(5)}
	// A booking an earlier run left active is the rider's own.
	if bs, err := sim.s.ListBookings(ctx, models.BookingFilter{UserID: &u.ID, Page: models.Page{Limit: 1}}); err == nil && len(bs) == 1 && bs[0].Status.Active() {
		r.booking, r.bookedAt = &bs[0], sim.tick
	}
	sim.riders = append(sim.riders, r)
}

// ride moves a rider on: book the nearest ready pack from somewhere in
// town, then collect it with a swap-in, cancel, or let it expire.
func (sim *simulator) ride(ctx context.Context, r *simRider) {
	if r.booking == nil {
		if sim.tick >= r.idleUntil {
			sim.book(ctx, r)
		}
		return
	}
	b, err := sim.s.FindBookingByID(ctx, r.booking.ID)
	if err != nil {
		sim.expected(err, "booking")
		return
	}
	r.booking = b
	switch {
	case !b.Status.Active():
		// Collected, cancelled or expired: on with the day.
		r.booking, r.abandoned, r.idleUntil = nil, false, sim.tick+5+sim.rng.IntN(40)
	case r.abandoned:
		// Waits for BOOKING_HOLD to expire it.
	case b.Status == models.BookingReady && sim.rng.IntN(100) < 80:
		sim.collect(ctx, r)
	case b.Status == models.BookingReady && sim.rng.IntN(100) < 50:
		sim.cancel(ctx, r)
	case b.Status == models.BookingConfirmed && sim.tick-r.bookedAt > 30 && sim.rng.IntN(100) < 10:
		sim.cancel(ctx, r) // tired of waiting for the charge
	case sim.rng.IntN(100) < 3:
		r.abandoned = true // never turns up
	}
}

func (sim *simulator) book(ctx context.Context, r *simRider) {
	// Somewhere in town, within a few kilometres of a station.
	at := sim.stations[sim.rng.IntN(len(sim.stations))]
	lat := at.lat + (sim.rng.Float64()-0.5)*0.04
	lon := at.lon + (sim.rng.Float64()-0.5)*0.06
	near, err := sim.s.NearestStations(ctx, models.NearQuery{Lat: lat, Lon: lon, Available: true, Page: models.Page{Limit: 3}})
	if sim.expected(err, "nearest stations") || err != nil {
		return
	}
	stationID := at.id // nothing ready nearby: book one charging
	if len(near) > 0 {
		stationID = near[sim.rng.IntN(len(near))].ID
	}
	b, _, err := sim.s.CreateBooking(ctx, r.user.ID, stationID, "")
	if err != nil {
		sim.expected(err, "book")
		r.idleUntil = sim.tick + 3 + sim.rng.IntN(10)
		return
	}
	r.booking, r.bookedAt = b, sim.tick
}

func (sim *simulator) collect(ctx context.Context, r *simRider) {
	ret := &models.ReturnPack{SerialNumber: r.pack, ChargePercent: 3 + sim.rng.IntN(30)}
	b, err := sim.s.CollectBooking(ctx, r.booking.ID, r.user, ret)
	if err != nil && models.ErrorCode(err) != models.CodeInternal {
		// The pack was refused (in the fleet elsewhere): collect without
		// handing one in. A booking that is not ready fails again here.
		b, err = sim.s.CollectBooking(ctx, r.booking.ID, r.user, nil)
	}
	if err != nil {
		sim.expected(err, "collect")
		return
	}
	r.booking = b
	if bat, err := sim.s.FindBatteryByID(ctx, b.BatteryID); err == nil {
		r.pack = bat.SerialNumber // rides off with it; hands it in next time
	}
}

func (sim *simulator) cancel(ctx context.Context, r *simRider) {
	b, err := sim.s.CancelBooking(ctx, r.booking.ID, r.user)
	if err != nil {
		sim.expected(err, "cancel")
		return
	}
	r.booking = b
}

// openAndClose: now and then a station closes for a while, then opens.
func (sim *simulator) openAndClose(ctx context.Context) {
	for _, st := range sim.stations {
		if st.reopenAt > 0 && sim.tick >= st.reopenAt {
			open := models.StationOpen
			if _, err := sim.s.UpdateStation(ctx, st.id, models.StationPatch{Status: &open}); err == nil || sim.expected(err, "reopen") {
				st.reopenAt = 0
			}
		}
	}
	if sim.rng.IntN(100) >= 2 {
		return
	}
	st := sim.stations[sim.rng.IntN(len(sim.stations))]
	if st.reopenAt > 0 {
		return
	}
	status, message := models.StationClosed, []string{"closed for cleaning", "charger service visit", "closed: street festival"}[sim.rng.IntN(3)]
	if sim.rng.IntN(3) == 0 {
		status, message = models.StationMaintenance, "a charging slot is being replaced"
	}
	if _, err := sim.s.UpdateStation(ctx, st.id, models.StationPatch{Status: &status, Message: &message}); err != nil {
		sim.expected(err, "close")
		return
	}
	st.reopenAt = sim.tick + 20 + sim.rng.IntN(60)
}
