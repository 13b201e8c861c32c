package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// bookingsConfig is the bookings sub-command's flags.
type bookingsConfig struct {
	common
	levels    []int
	duration  time.Duration
	batteries int
	shared    bool
	password  string
	serverPID int
	dbComm    string
}

func cmdBookings(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bookings", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg bookingsConfig
	cfg.register(fs)
	levels := fs.String("clients", "1,8,64", "comma-separated concurrency levels; each runs for -duration")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long each concurrency level books and cancels (at most 2m)")
	fs.IntVar(&cfg.batteries, "batteries", 3, "charged batteries per station")
	fs.BoolVar(&cfg.shared, "shared-station", false, "contention mode: every client books the one battery of one station")
	fs.StringVar(&cfg.password, "rider-password", "bsload-rider-pw", "password of the riders the tool registers")
	fs.IntVar(&cfg.serverPID, "server-pid", 0, "server process id, for its CPU per booking from /proc (0: skip)")
	fs.StringVar(&cfg.dbComm, "db-process", "postgres", "process name whose CPU counts as the database's (empty: skip)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, s := range strings.Split(*levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 1024 {
			return fmt.Errorf("-clients: %q is not a number from 1 to 1024", s)
		}
		cfg.levels = append(cfg.levels, n)
	}
	switch {
	case cfg.duration <= 0 || cfg.duration > 2*time.Minute:
		return fmt.Errorf("-duration must be in (0, 2m]")
	case cfg.batteries < 1 || cfg.batteries > 100:
		return fmt.Errorf("-batteries must be 1–100")
	}
	if cfg.shared {
		cfg.batteries = 1
	}
	if err := cfg.resolve(ctx); err != nil {
		return err
	}
	return runBookings(ctx, cfg, stdout)
}

// rider is one client of the bookings run: its user and its station.
type rider struct {
	api       *api
	wire      *wire // the booking loop's connection
	stationID int64
}

// levelResult is what one concurrency level measured.
type levelResult struct {
	clients   int
	elapsed   time.Duration
	booked    int
	attempts  int
	book      Summary // every booking request
	bookOK    Summary // 201s only
	cancel    Summary
	errors    map[string]int
	check     checkResult
	checkErr  error
	stations  []int64
	maxActive int // shared mode: most active bookings one client saw at once
	cpu       cpuUse
}

// cpuUse is where the CPU went during a level, in seconds and cores.
type cpuUse struct {
	server, db, self float64 // seconds
	machineBusy      float64 // cores busy on the whole machine
	steal            float64 // cores the hypervisor gave to other machines
	cpus             int
	loadBefore       string
	loadAfter        string
}

func (u cpuUse) report(out io.Writer, r levelResult) {
	secs := r.elapsed.Seconds()
	others := u.machineBusy - (u.server+u.db+u.self)/secs
	per := func(what string, n int) {
		if n > 0 {
			fmt.Fprintf(out, "  CPU per %s: server %.3f ms, database %.3f ms, bsload %.3f ms\n", what,
				1000*u.server/float64(n), 1000*u.db/float64(n), 1000*u.self/float64(n))
		}
	}
	per("booking (book + cancel)", r.booked)
	if r.attempts != r.booked {
		per("write request (every book attempt and cancel)", r.attempts+r.booked)
	}
	fmt.Fprintf(out, "  machine: %.2f of %d cores busy (server %.2f, database %.2f, bsload %.2f, everything else %.2f); stolen by the hypervisor %.2f; load average %s -> %s\n",
		u.machineBusy, u.cpus, u.server/secs, u.db/secs, u.self/secs, max(others, 0), u.steal, u.loadBefore, u.loadAfter)
}

// measureCPU samples the processes before fn and after.
func measureCPU(serverPID int, dbComm string, fn func()) cpuUse {
	sample := func() (float64, float64, machine) {
		var srv float64
		if serverPID > 0 {
			srv, _ = procCPU(serverPID)
		}
		self, _ := procCPU(os.Getpid())
		return srv, self, sampleMachine(dbComm)
	}
	s0, self0, m0 := sample()
	fn()
	s1, self1, m1 := sample()
	cpus := runtime.NumCPU()
	return cpuUse{server: s1 - s0, db: m1.named - m0.named, self: self1 - self0,
		machineBusy: busy(m0, m1, cpus), steal: stolen(m0, m1, cpus), cpus: cpus, loadBefore: m0.load, loadAfter: m1.load}
}

func runBookings(ctx context.Context, cfg bookingsConfig, out io.Writer) error {
	admin, err := cfg.admin(ctx)
	if err != nil {
		return err
	}
	run := runID()
	n := slices.Max(cfg.levels)
	fmt.Fprintf(out, "bsload bookings: run %s against %s, levels %v, %s each, shared-station=%v, on %s\n", run, cfg.base, cfg.levels, cfg.duration, cfg.shared, machineLine())

	setup := time.Now()
	nStations := n
	if cfg.shared {
		nStations = 1
	}
	stations := make([]int64, nStations)
	err = parallel(ctx, nStations, 8, func(ctx context.Context, i int) error {
		st, err := admin.createStation(ctx, fmt.Sprintf("bsload %s #%d", run, i+1))
		if err != nil {
			return fmt.Errorf("create station: %w", err)
		}
		for j := range cfg.batteries {
			if _, err := admin.addBattery(ctx, st.ID, fmt.Sprintf("BSL-%s-%d-%d", run, i+1, j+1), 90); err != nil {
				return fmt.Errorf("add battery: %w", err)
			}
		}
		stations[i] = st.ID
		return nil
	})
	if err != nil {
		return err
	}
	riders := make([]rider, n)
	// Registration hashes with bcrypt: a few in parallel keep both cores busy.
	err = parallel(ctx, n, runtime.NumCPU()*2, func(ctx context.Context, i int) error {
		a, err := admin.with("").register(ctx, fmt.Sprintf("bsload-%s-%d@example.test", run, i+1), cfg.password, fmt.Sprintf("bsload rider %d", i+1))
		if err != nil {
			return fmt.Errorf("register rider: %w", err)
		}
		ra := admin.with(a.Token)
		w, err := ra.wire()
		if err != nil {
			return err
		}
		riders[i] = rider{api: ra, wire: w, stationID: stations[i%nStations]}
		return nil
	})
	if err != nil {
		return err
	}
	defer func() {
		for _, rd := range riders {
			if rd.wire != nil {
				rd.wire.close()
			}
		}
	}()
	fmt.Fprintf(out, "setup: %d stations × %d batteries, %d riders in %s\n\n", nStations, cfg.batteries, n, time.Since(setup).Round(time.Millisecond))

	var results []levelResult
	for _, c := range cfg.levels {
		if ctx.Err() != nil {
			break
		}
		var r levelResult
		use := measureCPU(cfg.serverPID, cfg.dbComm, func() { r = runLevel(ctx, cfg, riders[:c]) })
		r.cpu = use
		r.stations = stations
		if !cfg.shared {
			r.stations = stations[:c]
		}
		r.check, r.checkErr = verifyBookings(ctx, admin, r.stations)
		results = append(results, r)
		printLevel(out, r)
	}
	printBookingsTable(out, cfg, results)
	for _, r := range results {
		if r.checkErr != nil || !r.check.ok() {
			return fmt.Errorf("consistency check failed at %d clients", r.clients)
		}
	}
	return ctx.Err()
}

// runLevel lets every rider book then cancel, in a loop, for the duration.
// A cycle that has begun always ends with its cancel, so no booking is left
// active.
func runLevel(ctx context.Context, cfg bookingsConfig, riders []rider) levelResult {
	type clientStats struct {
		book, bookOK, cancel []time.Duration
		errors               map[string]int
		booked               int
	}
	stats := make([]clientStats, len(riders))
	var active, maxActive int
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(cfg.duration)
	for i, rd := range riders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &stats[i]
			st.errors = map[string]int{}
			// Cancels run on their own context: an interrupted run still
			// gives its batteries back.
			cctx := context.WithoutCancel(ctx)
			for ctx.Err() == nil && time.Now().Before(deadline) {
				t0 := time.Now()
				id, err := rd.wire.book(ctx, rd.stationID)
				d := time.Since(t0)
				st.book = append(st.book, d)
				if err != nil {
					code := errorCode(err)
					st.errors["book:"+code]++
					if code == "active_booking_exists" {
						clearActive(cctx, rd, st.errors)
					}
					continue
				}
				st.booked++
				st.bookOK = append(st.bookOK, d)
				if cfg.shared {
					mu.Lock()
					active++
					maxActive = max(maxActive, active)
					mu.Unlock()
				}
				t0 = time.Now()
				err = rd.wire.cancel(cctx, id)
				st.cancel = append(st.cancel, time.Since(t0))
				if cfg.shared {
					mu.Lock()
					active--
					mu.Unlock()
				}
				if err != nil {
					st.errors["cancel:"+errorCode(err)]++
				}
			}
		}()
	}
	wg.Wait()
	r := levelResult{clients: len(riders), elapsed: time.Since(start), errors: map[string]int{}, maxActive: maxActive}
	var book, bookOK, cancel []time.Duration
	for _, st := range stats {
		book = append(book, st.book...)
		bookOK = append(bookOK, st.bookOK...)
		cancel = append(cancel, st.cancel...)
		r.booked += st.booked
		for k, v := range st.errors {
			r.errors[k] += v
		}
	}
	r.attempts = len(book)
	r.book, r.bookOK, r.cancel = Summarize(book), Summarize(bookOK), Summarize(cancel)
	return r
}

// clearActive cancels the rider's active bookings (left by a cancel that
// timed out), so the loop can go on.
func clearActive(ctx context.Context, rd rider, errs map[string]int) {
	list, err := rd.api.listBookings(ctx, "/api/v1/bookings")
	if err != nil {
		errs["clear:"+errorCode(err)]++
		return
	}
	for _, b := range list {
		if b.Status == "confirmed" || b.Status == "ready" {
			if err := rd.wire.cancel(ctx, b.ID); err != nil {
				errs["clear:"+errorCode(err)]++
			}
		}
	}
}

// checkResult is the end-of-level consistency check.
type checkResult struct {
	stations        int
	batteries       int
	bookings        int
	countMismatches []string // station counts that differ from the battery rows
	doubleBookings  []string // a battery held by two bookings at once
	activeMismatch  []string // booked batteries without exactly one active booking
}

func (c checkResult) ok() bool {
	return len(c.countMismatches) == 0 && len(c.doubleBookings) == 0 && len(c.activeMismatch) == 0
}

// verifyBookings checks, for every station of the run, that its counts
// equal what its battery rows say, and over every booking at those stations
// (admin list, all pages) that no battery was ever held by two bookings at
// once: the bookings of one battery, ordered by creation, each end (cancel,
// collection or expiry) no later than the next one begins, and at most one
// is active. Booking times are taken under the station lock, so they order
// the writers of one station.
func verifyBookings(ctx context.Context, admin *api, stations []int64) (checkResult, error) {
	var res checkResult
	res.stations = len(stations)
	want := map[int64]bool{}
	booked := map[int64]map[int64]bool{} // station -> booked battery ids
	for _, id := range stations {
		want[id] = true
		st, err := admin.getStation(ctx, id)
		if err != nil {
			return res, fmt.Errorf("station %d: %w", id, err)
		}
		bats, err := admin.listBatteries(ctx, id)
		if err != nil {
			return res, fmt.Errorf("station %d batteries: %w", id, err)
		}
		res.batteries += len(bats)
		var av, bk, ch int
		booked[id] = map[int64]bool{}
		for _, b := range bats {
			switch b.Status {
			case "available":
				av++
			case "booked":
				bk++
				booked[id][b.ID] = true
			case "charging":
				ch++
			}
		}
		if st.Available != av || st.Booked != bk || st.Charging != ch || st.Total != len(bats) {
			res.countMismatches = append(res.countMismatches, fmt.Sprintf(
				"station %d says available/booked/charging/total %d/%d/%d/%d, its rows %d/%d/%d/%d",
				id, st.Available, st.Booked, st.Charging, st.Total, av, bk, ch, len(bats)))
		}
	}
	all, err := admin.listBookings(ctx, "/api/v1/bookings")
	if err != nil {
		return res, fmt.Errorf("list bookings: %w", err)
	}
	byBattery := map[int64][]booking{}
	for _, b := range all {
		if want[b.StationID] {
			byBattery[b.BatteryID] = append(byBattery[b.BatteryID], b)
			res.bookings++
		}
	}
	res.doubleBookings = overlaps(byBattery)
	activeAt := map[int64]int{}
	for _, bs := range byBattery {
		for _, b := range bs {
			if isActive(b.Status) {
				activeAt[b.BatteryID]++
				if !booked[b.StationID][b.BatteryID] {
					res.activeMismatch = append(res.activeMismatch, fmt.Sprintf("booking %d is %s but battery %d is not booked", b.ID, b.Status, b.BatteryID))
				}
			}
		}
	}
	for st, ids := range booked {
		for id := range ids {
			if activeAt[id] != 1 {
				res.activeMismatch = append(res.activeMismatch, fmt.Sprintf("battery %d of station %d is booked with %d active bookings", id, st, activeAt[id]))
			}
		}
	}
	return res, nil
}

func isActive(status string) bool { return status == "confirmed" || status == "ready" }

// bookingEnd is when a booking gave its battery back; active bookings never
// did.
func bookingEnd(b booking) (time.Time, bool) {
	switch {
	case isActive(b.Status):
		return time.Time{}, false
	case b.CancelledAt != nil:
		return *b.CancelledAt, true
	case b.CollectedAt != nil:
		return *b.CollectedAt, true
	default: // expired
		return b.UpdatedAt, true
	}
}

// overlaps reports every pair of bookings of one battery whose holding
// intervals [created_at, end) overlap, and every battery with more than one
// active booking.
func overlaps(byBattery map[int64][]booking) []string {
	var out []string
	for _, id := range slices.Sorted(maps.Keys(byBattery)) {
		bs := byBattery[id]
		sort.Slice(bs, func(i, j int) bool {
			if !bs[i].CreatedAt.Equal(bs[j].CreatedAt) {
				return bs[i].CreatedAt.Before(bs[j].CreatedAt)
			}
			return bs[i].ID < bs[j].ID
		})
		for i := 1; i < len(bs); i++ {
			prev, cur := bs[i-1], bs[i]
			end, ended := bookingEnd(prev)
			if !ended || end.After(cur.CreatedAt) {
				out = append(out, fmt.Sprintf("battery %d: booking %d (%s, %s–%v) overlaps booking %d (from %s)",
					id, prev.ID, prev.Status, prev.CreatedAt.Format(time.RFC3339Nano), endString(end, ended), cur.ID, cur.CreatedAt.Format(time.RFC3339Nano)))
			}
		}
	}
	return out
}

func endString(t time.Time, ok bool) string {
	if !ok {
		return "active"
	}
	return t.Format(time.RFC3339Nano)
}

func printLevel(out io.Writer, r levelResult) {
	fmt.Fprintf(out, "== %d clients, %s\n", r.clients, r.elapsed.Round(time.Millisecond))
	fmt.Fprintf(out, "  bookings: %d ok of %d attempts = %.0f bookings/s (%.0f attempts/s)\n",
		r.booked, r.attempts, float64(r.booked)/r.elapsed.Seconds(), float64(r.attempts)/r.elapsed.Seconds())
	fmt.Fprintf(out, "  POST /bookings latency, all: p50 %s p90 %s p99 %s max %s ms\n", ms(r.book.P50), ms(r.book.P90), ms(r.book.P99), ms(r.book.Max))
	fmt.Fprintf(out, "  POST /bookings latency, 201: p50 %s p99 %s max %s ms\n", ms(r.bookOK.P50), ms(r.bookOK.P99), ms(r.bookOK.Max))
	fmt.Fprintf(out, "  POST /bookings/:id/cancel: p50 %s p99 %s max %s ms\n", ms(r.cancel.P50), ms(r.cancel.P99), ms(r.cancel.Max))
	fmt.Fprintf(out, "  errors: %s\n", formatCounts(r.errors))
	r.cpu.report(out, r)
	if r.maxActive > 0 {
		fmt.Fprintf(out, "  shared station: at most %d booking(s) active at once as the clients saw it (201 to cancel answer; can exceed 1 by answer timing only)\n", r.maxActive)
	}
	if r.checkErr != nil {
		fmt.Fprintf(out, "  check: ERROR %v\n", r.checkErr)
	} else {
		c := r.check
		fmt.Fprintf(out, "  check: %d stations, %d batteries, %d bookings: count mismatches %d, double bookings %d, active/booked mismatches %d\n",
			c.stations, c.batteries, c.bookings, len(c.countMismatches), len(c.doubleBookings), len(c.activeMismatch))
		for _, s := range slices.Concat(c.countMismatches, c.doubleBookings, c.activeMismatch)[:min(10, len(c.countMismatches)+len(c.doubleBookings)+len(c.activeMismatch))] {
			fmt.Fprintf(out, "    %s\n", s)
		}
	}
	fmt.Fprintln(out)
}

func printBookingsTable(out io.Writer, cfg bookingsConfig, rs []levelResult) {
	mode := "one station per client"
	if cfg.shared {
		mode = "all clients on one station with one battery"
	}
	fmt.Fprintf(out, "summary (%s):\n", mode)
	fmt.Fprintln(out, "| clients | bookings/s | attempts/s | p50 ms | p99 ms | max ms | errors | double bookings | count mismatches |")
	fmt.Fprintln(out, "| ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
	for _, r := range rs {
		dbl, cnt := "error", "error"
		if r.checkErr == nil {
			dbl, cnt = strconv.Itoa(len(r.check.doubleBookings)+len(r.check.activeMismatch)), strconv.Itoa(len(r.check.countMismatches))
		}
		fmt.Fprintf(out, "| %d | %.0f | %.0f | %s | %s | %s | %s | %s | %s |\n", r.clients,
			float64(r.booked)/r.elapsed.Seconds(), float64(r.attempts)/r.elapsed.Seconds(),
			ms(r.book.P50), ms(r.book.P99), ms(r.book.Max), formatCounts(r.errors), dbl, cnt)
	}
}

func formatCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func runID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
