package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// streamsConfig is the streams sub-command's flags.
type streamsConfig struct {
	common
	subscribers int
	topic       string
	rate        float64
	duration    time.Duration
	serverPID   int
	batteries   int
	concurrency int
	connectWait time.Duration
	settle      time.Duration
	drain       time.Duration
	sourceIPs   []net.IP
	writer      string
	readBuffer  int
	transport   string
}

func cmdStreams(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("streams", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg streamsConfig
	cfg.register(fs)
	fs.IntVar(&cfg.subscribers, "subscribers", 1000, "SSE subscribers to open (at most 50000)")
	fs.StringVar(&cfg.topic, "topic", "stations", "stations (/stream/stations) or station (/stream/stations/:id of the bench station)")
	fs.Float64Var(&cfg.rate, "rate", 10, "events per second the writer commits (at most 1000)")
	fs.DurationVar(&cfg.duration, "duration", 30*time.Second, "how long the writer writes (at most 5m)")
	fs.IntVar(&cfg.serverPID, "server-pid", 0, "server process id, for RSS and CPU from /proc (0: skip)")
	fs.IntVar(&cfg.batteries, "batteries", 32, "batteries at the bench station that the writer toggles (a write is skipped only when all have one in flight)")
	fs.IntVar(&cfg.concurrency, "connect-concurrency", 200, "connections being opened at once")
	fs.DurationVar(&cfg.connectWait, "connect-timeout", 20*time.Second, "how long one subscriber may take to get connection_established")
	fs.DurationVar(&cfg.settle, "settle", 3*time.Second, "idle wait after the last connection before memory is read")
	fs.DurationVar(&cfg.drain, "drain", 15*time.Second, "how long to wait after the writer for deliveries to finish")
	fs.StringVar(&cfg.writer, "writer", "patch", "patch: PATCH /batteries/:id charge 50↔90 (one inventory_update each); add: POST /stations/:id/batteries (battery_added + inventory_update)")
	fs.IntVar(&cfg.readBuffer, "read-buffer", 4096, "bytes of read buffer per subscriber")
	fs.StringVar(&cfg.transport, "transport", "sse", "sse, or websocket (the same URL with an Upgrade)")
	srcIPs := fs.String("source-ips", "", `client source addresses: "N" for 127.0.0.1…127.0.0.N, or a comma list (default: the kernel's choice)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case cfg.subscribers < 1 || cfg.subscribers > 50000:
		return errors.New("-subscribers must be 1–50000")
	case cfg.topic != "stations" && cfg.topic != "station":
		return errors.New("-topic must be stations or station")
	case cfg.rate <= 0 || cfg.rate > 1000:
		return errors.New("-rate must be in (0, 1000]")
	case cfg.duration <= 0 || cfg.duration > 5*time.Minute:
		return errors.New("-duration must be in (0, 5m]")
	case cfg.batteries < 1 || cfg.batteries > 100:
		return errors.New("-batteries must be 1–100")
	case cfg.concurrency < 1 || cfg.concurrency > 5000:
		return errors.New("-connect-concurrency must be 1–5000")
	case cfg.writer != "patch" && cfg.writer != "add":
		return errors.New("-writer must be patch or add")
	case cfg.transport != "sse" && cfg.transport != "websocket":
		return errors.New("-transport must be sse or websocket")
	case cfg.readBuffer < 256 || cfg.readBuffer > 1<<20:
		return errors.New("-read-buffer must be 256 B – 1 MiB")
	}
	var err error
	if cfg.sourceIPs, err = sourceIPs(*srcIPs); err != nil {
		return err
	}
	if err := cfg.resolve(ctx); err != nil {
		return err
	}
	if !strings.HasPrefix(cfg.base, "http://") {
		return errors.New("streams speaks plain HTTP to the server (-url http://…)")
	}
	return runStreams(ctx, cfg, stdout)
}

// raiseFileLimit lifts the soft open-files limit to the hard one and
// returns it.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, err
		}
	}
	return lim.Cur, nil
}

// subscriber is one stream connection (SSE or WebSocket). Its goroutine owns everything but the
// atomics until it ends.
type subscriber struct {
	n     int
	conn  io.Closer
	start int64   // cursor of its connection_established
	ids   []int64 // ids of the events after start, in arrival order
	lat   []int32 // commit-to-client latency of each, in µs (-1: no timestamp)
	err   error   // why the stream ended

	established bool // got connection_established

	received atomic.Int64 // events after start
	ended    atomic.Bool
}

// streamCounters are shared by every subscriber.
type streamCounters struct {
	established atomic.Int64
	ended       atomic.Int64
	deliveries  atomic.Int64
}

// run opens the stream and reads up to connection_established, then
// reports on ready (nil once established; conn and start are set by then)
// and records every later event until the connection ends.
func (s *subscriber) run(d *net.Dialer, addr, host, path, transport string, readBuf int, wait time.Duration, ready chan<- error, c *streamCounters) {
	defer func() {
		s.ended.Store(true)
		c.ended.Add(1)
	}()
	open := openSSE
	if transport == "websocket" {
		open = openWebSocket
	}
	src, conn, err := open(d, addr, host, path, readBuf, wait)
	if err != nil {
		ready <- err
		return
	}
	s.conn = conn
	for {
		ev, err := src.Next()
		if err != nil {
			conn.Close()
			ready <- fmt.Errorf("before connection_established: %w", err)
			return
		}
		if ev.Type == "connection_established" {
			s.start = ev.ID
			break
		}
	}
	src.live()
	s.established = true
	c.established.Add(1)
	ready <- nil
	for {
		ev, err := src.Next()
		if err != nil {
			s.err = err
			conn.Close()
			return
		}
		if !ev.HasID || ev.ID <= s.start {
			continue // the snapshot carries the start cursor
		}
		lat := int32(-1)
		if !ev.Timestamp.IsZero() {
			lat = int32(min(max(ev.ReceivedAt.Sub(ev.Timestamp).Microseconds(), 0), 1<<31-1))
		}
		s.ids = append(s.ids, ev.ID)
		s.lat = append(s.lat, lat)
		s.received.Add(1)
		c.deliveries.Add(1)
	}
}

// writerStats is what the event writer did.
type writerStats struct {
	ok, failed, skipped int
	events              int // events the successful writes produced
	errors              map[string]int
	latency             Summary
}

// snapshot of the server's resources at one moment.
type serverSample struct {
	rss     int64   // bytes, from /proc
	cpu     float64 // seconds, from /proc
	metrics map[string]float64
}

func sampleServer(ctx context.Context, cfg streamsConfig, a *api) serverSample {
	var s serverSample
	if cfg.serverPID > 0 {
		s.rss, _ = procRSS(cfg.serverPID)
		s.cpu, _ = procCPU(cfg.serverPID)
	}
	s.metrics = scrapeMetrics(ctx, a)
	return s
}

func runStreams(ctx context.Context, cfg streamsConfig, out io.Writer) error {
	limit, err := raiseFileLimit()
	if err != nil {
		return fmt.Errorf("raise open-files limit: %w", err)
	}
	if need := uint64(cfg.subscribers + 256); limit < need {
		return fmt.Errorf("open-files limit %d is below the %d this run needs; raise the hard limit (ulimit -Hn)", limit, need)
	}
	if cfg.serverPID > 0 {
		if _, err := procRSS(cfg.serverPID); err != nil {
			return fmt.Errorf("-server-pid %d: %w", cfg.serverPID, err)
		}
	}
	admin, err := cfg.admin(ctx)
	if err != nil {
		return err
	}
	run := runID()
	st, err := admin.createStation(ctx, "bsload streams "+run)
	if err != nil {
		return fmt.Errorf("create station: %w", err)
	}
	var bats []int64
	if cfg.writer == "patch" {
		for j := range cfg.batteries {
			b, err := admin.addBattery(ctx, st.ID, fmt.Sprintf("BSS-%s-%d", run, j+1), 50)
			if err != nil {
				return fmt.Errorf("add battery: %w", err)
			}
			bats = append(bats, b.ID)
		}
	}
	path := "/stream/stations"
	if cfg.topic == "station" {
		path = fmt.Sprintf("/stream/stations/%d", st.ID)
	}
	u, _ := url.Parse(cfg.base)
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	fmt.Fprintf(out, "bsload streams: run %s against %s%s, %d subscribers, writer %s at %g/s for %s, station %d, open-files limit %d, on %s\n",
		run, cfg.base, path, cfg.subscribers, cfg.writer, cfg.rate, cfg.duration, st.ID, limit, machineLine())

	// Idle baseline.
	time.Sleep(time.Second)
	before := sampleServer(ctx, cfg, admin)

	// Open the subscribers, cfg.concurrency at a time.
	var c streamCounters
	subs := make([]*subscriber, cfg.subscribers)
	connectLat := make([]time.Duration, cfg.subscribers)
	failures := map[string]int{}
	var failMu sync.Mutex
	var wg sync.WaitGroup
	rampStart := time.Now()
	_ = parallel(ctx, cfg.subscribers, cfg.concurrency, func(ctx context.Context, i int) error {
		d := &net.Dialer{Timeout: 10 * time.Second}
		if len(cfg.sourceIPs) > 0 {
			d.LocalAddr = &net.TCPAddr{IP: cfg.sourceIPs[i%len(cfg.sourceIPs)]}
		}
		s := &subscriber{n: i}
		subs[i] = s
		ready := make(chan error, 1)
		t0 := time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(d, addr, u.Host, path, cfg.transport, cfg.readBuffer, cfg.connectWait, ready, &c)
		}()
		if err := <-ready; err != nil {
			failMu.Lock()
			failures[failureKind(err)]++
			if failures[failureKind(err)] == 1 {
				fmt.Fprintf(out, "  subscriber %d failed: %v\n", i, err)
			}
			failMu.Unlock()
			return nil
		}
		connectLat[i] = time.Since(t0)
		return nil
	})
	rampTime := time.Since(rampStart)
	established := int(c.established.Load())
	fmt.Fprintf(out, "connected: %d of %d in %s (%.0f/s); failures: %s\n", established, cfg.subscribers,
		rampTime.Round(time.Millisecond), float64(established)/rampTime.Seconds(), formatCounts(failures))
	closeAll := func() {
		for _, s := range subs {
			if s != nil && s.conn != nil {
				s.conn.Close()
			}
		}
		wg.Wait()
	}
	if ctx.Err() != nil {
		closeAll()
		return ctx.Err()
	}
	var okLat []time.Duration
	for _, d := range connectLat {
		if d > 0 {
			okLat = append(okLat, d)
		}
	}
	connectSum := Summarize(okLat)

	// Settle, then read the idle cost over a quiet second or more.
	time.Sleep(cfg.settle)
	idle := sampleServer(ctx, cfg, admin)
	idleStart := time.Now()
	time.Sleep(max(cfg.settle/2, time.Second))
	idleCPU := sampleServer(ctx, cfg, admin)
	idleSecs := time.Since(idleStart).Seconds()

	// Where the writer's events begin: the head before it writes.
	startCursor, err := pollHead(ctx, admin, path)
	if err != nil {
		closeAll()
		return fmt.Errorf("read the stream head: %w", err)
	}

	// Drive events at the fixed rate.
	mach0 := sampleMachine("")
	self0, _ := procCPU(os.Getpid())
	writeStart := time.Now()
	ws := drive(ctx, cfg, admin, st.ID, bats, run)
	writeEnd := time.Now()

	// Wait until every live subscriber has every event, or the drain ends.
	drainDeadline := time.Now().Add(cfg.drain)
	var lastDelivery time.Time
	for {
		all := true
		for _, s := range subs {
			if s != nil && s.conn != nil && !s.ended.Load() && s.received.Load() < int64(ws.events) {
				all = false
				break
			}
		}
		if all || time.Now().After(drainDeadline) || ctx.Err() != nil {
			lastDelivery = time.Now()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	busyS := sampleServer(ctx, cfg, admin)
	mach1 := sampleMachine("")
	self1, _ := procCPU(os.Getpid())
	busySecs := lastDelivery.Sub(writeStart).Seconds()

	// The ids the writer produced, from the server's own history.
	truth, truthErr := pollHistory(ctx, admin, path, startCursor, ws.events, st.ID, cfg.drain)
	after := sampleServer(ctx, cfg, admin)
	aliveAtEnd := established - int(c.ended.Load()-int64(cfg.subscribers-established))
	closeAll()

	// Accounting.
	var total Tally
	perfect, withLoss, withDup, withReorder := 0, 0, 0, 0
	var lats []time.Duration
	var noTS int
	var ended []string
	for _, s := range subs {
		if s == nil || !s.established {
			continue
		}
		var expected []int64
		hi := int64(0)
		if len(truth) > 0 {
			hi = truth[len(truth)-1]
		}
		for _, id := range truth {
			if id > s.start {
				expected = append(expected, id)
			}
		}
		var got []int64
		for k, id := range s.ids {
			if id <= hi {
				got = append(got, id)
				if s.lat[k] >= 0 {
					lats = append(lats, time.Duration(s.lat[k])*time.Microsecond)
				} else {
					noTS++
				}
			}
		}
		t := Account(expected, got)
		total = total.Add(t)
		if t.OK() {
			perfect++
		}
		if t.Lost > 0 {
			withLoss++
			if len(ended) < 5 && s.err != nil && !isClosedErr(s.err) {
				ended = append(ended, fmt.Sprintf("subscriber %d lost %d, its stream ended: %v", s.n, t.Lost, s.err))
			}
		}
		if t.Duplicated > 0 {
			withDup++
		}
		if t.OutOfOrder > 0 {
			withReorder++
		}
	}
	latSum := Summarize(lats)

	// Report.
	pct := func(a, b int) string {
		if b == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f%%", 100*float64(a)/float64(b))
	}
	fmt.Fprintf(out, "connect (dial → connection_established): p50 %s p99 %s max %s ms\n", ms(connectSum.P50), ms(connectSum.P99), ms(connectSum.Max))
	if cfg.serverPID > 0 && established > 0 {
		d := idle.rss - before.rss
		fmt.Fprintf(out, "server RSS: %s idle before, %s with %d idle streams: %+.1f KiB per connection\n",
			mib(before.rss), mib(idle.rss), established, float64(d)/1024/float64(established))
	}
	if established > 0 && before.metrics != nil && idle.metrics != nil {
		per := func(name string) string {
			return fmt.Sprintf("%.1f", (idle.metrics[name]-before.metrics[name])/1024/float64(established))
		}
		fmt.Fprintf(out, "server Go memory per connection (KiB, from /metrics): stack %s, heap in use %s, total from OS %s; goroutines +%.2f per connection\n",
			per("go_memstats_stack_inuse_bytes"), per("go_memstats_heap_inuse_bytes"), per("go_memstats_sys_bytes"),
			(idle.metrics["go_goroutines"]-before.metrics["go_goroutines"])/float64(established))
	}
	if cfg.serverPID > 0 && idleSecs > 0 {
		fmt.Fprintf(out, "server CPU idle with %d streams: %.1f%% of one core\n", established, 100*(idleCPU.cpu-idle.cpu)/idleSecs)
	}
	if cfg.serverPID > 0 && established > 0 {
		// Everything the server did from before the first connect to the
		// end of the settle: the connects, and the garbage they left.
		fmt.Fprintf(out, "server CPU per connect: %.0f µs (%.2f s for %d)\n",
			(idle.cpu-before.cpu)/float64(established)*1e6, idle.cpu-before.cpu, established)
	}
	fmt.Fprintf(out, "writer: %d writes ok, %d failed (%s), %d skipped (every battery busy), %d events; write latency p50 %s p99 %s max %s ms\n",
		ws.ok, ws.failed, formatCounts(ws.errors), ws.skipped, ws.events, ms(ws.latency.P50), ms(ws.latency.P99), ms(ws.latency.Max))
	deliveries := total.Received - total.Duplicated - total.Unexpected
	fmt.Fprintf(out, "deliveries: %d in %.1f s = %.0f/s (ideal %d × %.4g/s = %.0f/s); writer ran %.1f s\n",
		deliveries, busySecs, float64(deliveries)/busySecs, established, float64(ws.events)/writeEnd.Sub(writeStart).Seconds(),
		float64(established)*float64(ws.events)/writeEnd.Sub(writeStart).Seconds(), writeEnd.Sub(writeStart).Seconds())
	fmt.Fprintf(out, "latency commit → client: n %d, p50 %s p90 %s p99 %s max %s ms (no timestamp: %d)\n",
		latSum.N, ms(latSum.P50), ms(latSum.P90), ms(latSum.P99), ms(latSum.Max), noTS)
	if truthErr != nil {
		fmt.Fprintf(out, "history: ERROR %v\n", truthErr)
	}
	fmt.Fprintf(out, "history: %d events after cursor %d on the topic\n", len(truth), startCursor)
	fmt.Fprintf(out, "per subscriber: %d perfect (every id once, in order); with loss %d, with duplicates %d, out of order %d; alive at the end %d\n",
		perfect, withLoss, withDup, withReorder, aliveAtEnd)
	fmt.Fprintf(out, "totals: expected %d, lost %d (%s), duplicated %d, out of order %d, unexpected %d\n",
		total.Expected, total.Lost, pct(total.Lost, total.Expected), total.Duplicated, total.OutOfOrder, total.Unexpected)
	for _, e := range ended {
		fmt.Fprintln(out, "  "+e)
	}
	if cfg.serverPID > 0 && deliveries > 0 {
		cpu := busyS.cpu - idleCPU.cpu
		fmt.Fprintf(out, "server CPU: %.2f s over %.1f s (%.0f%% of one core) = %.1f µs per delivery\n",
			cpu, busySecs, 100*cpu/busySecs, cpu/float64(deliveries)*1e6)
		cores := busy(mach0, mach1, runtime.NumCPU())
		fmt.Fprintf(out, "machine while delivering: %.2f of %d cores busy (server %.2f, bsload %.2f, everything else %.2f); stolen by the hypervisor %.2f; load average %s -> %s\n",
			cores, runtime.NumCPU(), cpu/busySecs, (self1-self0)/busySecs, max(cores-(cpu+self1-self0)/busySecs, 0),
			stolen(mach0, mach1, runtime.NumCPU()), mach0.load, mach1.load)
	}
	if self, err := procCPU(os.Getpid()); err == nil {
		fmt.Fprintf(out, "bsload CPU (whole run): %.2f s\n", self)
	}
	if before.metrics != nil && after.metrics != nil {
		m := func(name string) float64 { return after.metrics[name] - before.metrics[name] }
		fmt.Fprintf(out, "server /metrics deltas: delivered{sse} %.0f, slow-consumer disconnects %.0f, events published %.0f\n",
			m(`batteryswap_events_delivered_total{transport="sse"}`), m("batteryswap_slow_consumer_disconnects_total"), m("batteryswap_events_published_total"))
	}
	if truthErr != nil {
		return truthErr
	}
	return ctx.Err()
}

func isClosedErr(err error) bool { return errors.Is(err, net.ErrClosed) }

func failureKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no_ephemeral_port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too_many_open_files"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	s := err.Error()
	if len(s) > 40 {
		s = s[:40]
	}
	return strconv.Quote(s)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// drive commits events at cfg.rate for cfg.duration. With the patch writer
// each write toggles one battery between 50 % and 90 %, so each changes its
// status and commits exactly one inventory_update; a battery whose previous
// write is still in flight is skipped, so no write is a no-op.
func drive(ctx context.Context, cfg streamsConfig, admin *api, stationID int64, bats []int64, run string) writerStats {
	ws := writerStats{errors: map[string]int{}}
	type state struct {
		busy   atomic.Bool
		charge int
	}
	states := make([]state, len(bats))
	for i := range states {
		states[i].charge = 50
	}
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / cfg.rate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	end := time.Now().Add(cfg.duration)
	for k := 0; ; k++ {
		if k > 0 {
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
		if ctx.Err() != nil || time.Now().After(end) {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			var events int
			t0 := time.Now()
			switch cfg.writer {
			case "patch":
				// The next battery without a write in flight.
				b := -1
				for j := range states {
					if states[(k+j)%len(states)].busy.CompareAndSwap(false, true) {
						b = (k + j) % len(states)
						break
					}
				}
				if b < 0 {
					mu.Lock()
					ws.skipped++
					mu.Unlock()
					return
				}
				st := &states[b]
				next := 140 - st.charge // 50 <-> 90
				_, err = admin.patchBattery(ctx, bats[b], next)
				if err == nil {
					st.charge, events = next, 1
				}
				st.busy.Store(false)
			default:
				_, err = admin.addBattery(ctx, stationID, fmt.Sprintf("BSA-%s-%d", run, k), 90)
				events = 2
			}
			d := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, d)
			if err != nil {
				ws.failed++
				ws.errors[errorCode(err)]++
				return
			}
			ws.ok++
			ws.events += events
		}()
	}
	wg.Wait()
	ws.latency = Summarize(lat)
	return ws
}

type pollAnswer struct {
	Events      []json.RawMessage `json:"events"`
	LastEventID string            `json:"last_event_id"`
}

// pollHead opens a fresh long-poll (no cursor): its last_event_id is the
// stream's current head.
func pollHead(ctx context.Context, a *api, path string) (int64, error) {
	var ans pollAnswer
	if err := a.do(ctx, http.MethodGet, path+"?transport=poll&timeout=0", nil, &ans); err != nil {
		return 0, err
	}
	return strconv.ParseInt(ans.LastEventID, 10, 64)
}

// pollHistory reads, by long-poll from cursor, every event id of the topic
// (the server replays them from its outbox). It retries until the writer's
// own events (inventory_update/battery_added of the bench station) number
// at least want, since the relay sequences committed events shortly after
// their commit.
func pollHistory(ctx context.Context, a *api, path string, cursor int64, want int, stationID int64, wait time.Duration) ([]int64, error) {
	deadline := time.Now().Add(wait)
	for {
		var ids []int64
		mine := 0
		c := cursor
		for {
			var ans pollAnswer
			if err := a.do(ctx, http.MethodGet, fmt.Sprintf("%s?transport=poll&since=%d&timeout=1", path, c), nil, &ans); err != nil {
				return nil, err
			}
			if len(ans.Events) == 0 {
				break
			}
			for _, raw := range ans.Events {
				var ev struct {
					ID        string `json:"id"`
					Type      string `json:"type"`
					StationID int64  `json:"station_id"`
				}
				if err := json.Unmarshal(raw, &ev); err != nil {
					return nil, err
				}
				id, err := strconv.ParseInt(ev.ID, 10, 64)
				if err != nil {
					return nil, err
				}
				if len(ids) > 0 && id <= ids[len(ids)-1] {
					return nil, fmt.Errorf("history out of order: %d after %d", id, ids[len(ids)-1])
				}
				ids = append(ids, id)
				if ev.StationID == stationID && (ev.Type == "inventory_update" || ev.Type == "battery_added") {
					mine++
				}
			}
			next, err := strconv.ParseInt(ans.LastEventID, 10, 64)
			if err != nil || next <= c {
				return nil, fmt.Errorf("long-poll cursor did not advance (%q after %d)", ans.LastEventID, c)
			}
			c = next
		}
		if mine >= want || time.Now().After(deadline) {
			if mine < want {
				return ids, fmt.Errorf("history has %d of the writer's %d events", mine, want)
			}
			return slices.Clip(ids), nil
		}
		time.Sleep(200 * time.Millisecond)
	}
}
