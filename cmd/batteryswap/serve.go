package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"batteryswap/api"
	"batteryswap/models"
	"batteryswap/store"
	"batteryswap/stream"
	"batteryswap/web"
)

// expirySweep is how often each instance warns and expires due bookings.
const expirySweep = time.Second

// minSecretBytes is the shortest JWT_SECRET that starts without a warning:
// HS256's own output size.
const minSecretBytes = 32

func cmdServe(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, _, err := parse("serve", args, getenv, stderr, 0, nil)
	if err != nil {
		return err
	}
	a, err := newApp(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	a.hintDemo(ctx)
	return a.run(ctx)
}

// hintDemo tells the operator of an empty database how to see the service
// at work: the demo network, or the admin API.
func (a *app) hintDemo(ctx context.Context) {
	list, err := a.store.ListStations(ctx, models.StationFilter{Page: models.Page{Limit: 1}})
	if err == nil && len(list) == 0 {
		a.log.Info("the database has no stations yet: run \"batteryswap demo\" (go run ./cmd/batteryswap demo) for a live demo network, " +
			"or create stations with the admin API (POST /api/v1/stations)")
	}
}

// run listens on ADDR (and METRICS_ADDR) and serves until ctx ends
// (SIGTERM), then drains and closes the app.
func (a *app) run(ctx context.Context) error {
	cfg := a.cfg
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		a.close()
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	serveErr := make(chan error, 2)
	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			ln.Close()
			a.close()
			return fmt.Errorf("listen on METRICS_ADDR %s: %w", cfg.MetricsAddr, err)
		}
		go func() { serveErr <- a.serveMetrics(mln) }()
		a.log.Info("metrics on "+mln.Addr().String()+"/metrics", "metrics_addr", mln.Addr().String())
	}
	go func() { serveErr <- a.serve(ln) }()
	a.log.Info("listening on "+ln.Addr().String(), "addr", ln.Addr().String(), "database", a.store.Dialect(), "broker", a.brokerName())
	select {
	case err := <-serveErr:
		// A listener failed: the instance stops as a whole, the other
		// listener too.
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		_ = a.shutdown(sctx)
		if err == nil {
			err = errors.New("a listener closed")
		}
		return err
	case <-ctx.Done():
	}
	a.log.Info("shutting down: draining streams and in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	err = a.shutdown(sctx)
	if err != nil {
		return err
	}
	a.log.Info("stopped")
	return nil
}

// app is one running instance: store, broker, hub, relay, background loops
// and the HTTP server, wired together.
type app struct {
	cfg    Config
	log    *slog.Logger
	store  *store.Store
	rdb    *redis.Client
	broker stream.Broker
	hub    *stream.Hub
	api    *api.Server
	http   *http.Server
	// metrics serves /metrics alone when METRICS_ADDR is set.
	metrics *http.Server

	bgCtx  context.Context
	stopBG context.CancelFunc
	bg     sync.WaitGroup
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	o := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(cfg.LogFormat, "json") {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// newApp opens everything and starts the background loops (relay, janitor,
// expiry); serve then accepts connections.
func newApp(ctx context.Context, cfg Config, logw io.Writer) (_ *app, err error) {
	log := newLogger(cfg, logw)
	a := &app{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	secret := []byte(cfg.JWTSecret)
	if len(secret) == 0 {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		secret = []byte(hex.EncodeToString(b))
		log.Warn("JWT_SECRET is not set: using a random key, so tokens end with this process and are not shared between instances")
	} else if len(secret) < minSecretBytes {
		log.Warn("JWT_SECRET is short: an HMAC key under 32 bytes can be guessed offline from one token; use 32 random bytes or more (openssl rand -hex 32)", "bytes", len(secret))
	}
	if a.store, err = store.Open(ctx, cfg.DatabaseURL, store.Options{
		ReadyCharge: cfg.ReadyCharge, BookingHold: cfg.BookingHold, BookingWarn: cfg.BookingWarn, Logger: log,
		Exclusive: true, // one server per SQLite file
	}); err != nil {
		return nil, err
	}
	// Without AUTO_MIGRATE, serving an unmigrated database would answer
	// ready and then fail every request.
	if err = migrated(ctx, a.store, cfg); err != nil {
		return nil, err
	}
	if cfg.AdminEmail != "" || cfg.AdminPassword != "" {
		if err = a.ensureAdmin(ctx); err != nil {
			return nil, err
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := stream.NewMetrics(reg)
	if cfg.RedisURL != "" {
		opt, perr := redis.ParseURL(cfg.RedisURL)
		if perr != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", perr)
		}
		a.rdb = redis.NewClient(opt)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = a.rdb.Ping(pctx).Err()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("connect to redis: %w", err)
		}
		a.broker = stream.NewRedisBroker(a.rdb, stream.RedisOptions{Prefix: cfg.RedisPrefix + "topic:", Logger: log})
	} else if a.store.Dialect() == "postgres" {
		// Other instances may share the database: without Redis, it
		// carries the events between them.
		a.broker = stream.NewPostgresBroker(a.store, a.store, stream.PostgresOptions{Logger: log})
	} else {
		a.broker = stream.NewMemoryBroker()
	}
	a.hub = stream.NewHub(a.broker, a.store, stream.HubOptions{QueueSize: cfg.StreamQueue, Logger: log, Metrics: metrics})
	oneMoreP() // before api.New, which sizes the stream writers from it
	a.api = api.New(api.Config{
		JWTSecret: secret, AllowedOrigins: cfg.AllowedOrigins, HeartbeatInterval: cfg.HeartbeatInterval,
		AuthRateLimit: cfg.AuthRateLimit, BookingRateLimit: cfg.BookingRateLimit, MaxStreamsPerClient: cfg.MaxStreams,
		RequestTimeout: cfg.RequestTimeout, TrustedProxies: cfg.TrustedProxies, SeparateMetrics: cfg.MetricsAddr != "",
		Web: web.FS, OpenAPI: api.OpenAPI, Logger: log, Registry: reg, StreamMetrics: metrics,
	}, a.store, a.hub, a.broker)
	a.http = &http.Server{
		Handler:           a.api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.MetricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", a.api.MetricsHandler())
		a.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: cfg.RequestTimeout,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	}

	bg, stop := context.WithCancel(context.Background())
	a.bgCtx, a.stopBG = bg, stop
	relay := stream.NewRelay(a.store, a.broker, stream.RelayOptions{Logger: log, Metrics: metrics})
	a.goBG(func() { _ = relay.Run(bg) })
	a.goBG(func() {
		stream.RunJanitor(bg, a.store, cfg.HistoryRetention, janitorInterval(cfg.HistoryRetention), log)
	})
	a.goBG(func() { every(bg, expirySweep, func() { a.expireDue(bg) }) })
	a.goBG(func() { every(bg, presenceSweep(a.cfg.StationStaleAfter), func() { a.markStale(bg) }) })
	a.goBG(func() { a.reclassLoop(bg) })
	return a, nil
}

func janitorInterval(retention time.Duration) time.Duration {
	return min(max(retention/10, time.Second), 10*time.Minute)
}

// reclassEvery is how often stored batteries are checked against
// READY_CHARGE (reclassLoop).
const reclassEvery = time.Minute

// reclassLoop brings stored batteries in line with READY_CHARGE at start
// and every reclassEvery: batteries change class only on telemetry, so
// after READY_CHARGE changed they would keep the old threshold. It runs in
// the background, so a large fleet does not hold up the listener, and
// again later, so batteries that instances still on the old threshold
// touched during a rolling deploy are brought in line once it is over.
func (a *app) reclassLoop(ctx context.Context) {
	t := time.NewTicker(reclassEvery)
	defer t.Stop()
	for {
		n, err := a.store.ReclassByCharge(ctx)
		if err != nil && ctx.Err() == nil {
			a.log.Warn("re-classing batteries for READY_CHARGE failed; next try in a minute", "err", err)
		}
		if n > 0 {
			a.log.Info("batteries re-classed for READY_CHARGE", "ready_charge", a.cfg.ReadyCharge, "batteries", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// bgContext ends when the app's background loops are told to stop.
func (a *app) bgContext() context.Context { return a.bgCtx }

func (a *app) goBG(fn func()) {
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		fn()
	}()
}

func (a *app) brokerName() string {
	switch a.broker.(type) {
	case *stream.RedisBroker:
		return "redis"
	case *stream.PostgresBroker:
		return "postgres"
	}
	return "memory"
}

func (a *app) ensureAdmin(ctx context.Context) error {
	email := models.NormalizeEmail(a.cfg.AdminEmail)
	name, _, _ := strings.Cut(email, "@")
	if email == "" || a.cfg.AdminPassword == "" {
		return errors.New("bootstrap admin: set both ADMIN_EMAIL and ADMIN_PASSWORD, or neither")
	}
	// The same rules as any account's (users create, register).
	if err := models.ValidateRegistration(email, a.cfg.AdminPassword, name); err != nil {
		return fmt.Errorf("bootstrap admin (ADMIN_EMAIL, ADMIN_PASSWORD): %w", describe(err))
	}
	hash, err := api.HashPassword(a.cfg.AdminPassword, 0)
	if err != nil {
		return err
	}
	u, was, err := a.store.EnsureAdmin(ctx, email, name, hash)
	if err != nil {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	if was != "" && was != models.RoleAdmin {
		a.log.Warn("ADMIN_EMAIL names an existing account: it is now an admin, its password is ADMIN_PASSWORD, and its earlier tokens stop working", "user_id", u.ID, "was", was)
	}
	a.log.Info("bootstrap admin ready", "user_id", u.ID)
	return nil
}

// every runs sweep every d until ctx ends, the first time after d.
func every(ctx context.Context, d time.Duration, sweep func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sweep()
	}
}

// expireDue warns and expires due bookings. Every instance runs it; the
// store's conditional updates make each warning and expiry happen once.
func (a *app) expireDue(ctx context.Context) {
	if _, err := a.store.WarnExpiring(ctx); err != nil && ctx.Err() == nil {
		a.log.Warn("booking warning sweep failed", "err", err)
	}
	if _, err := a.store.ExpireDue(ctx); err != nil && ctx.Err() == nil {
		a.log.Warn("booking expiry sweep failed", "err", err)
	}
}

// presenceSweep is how often each instance looks for stations not heard
// from for STATION_STALE_AFTER: a tenth of it, between 200ms and 5s, so a
// silent station is offline at most that long after it went stale.
func presenceSweep(stale time.Duration) time.Duration {
	return min(max(stale/10, 200*time.Millisecond), 5*time.Second)
}

// markStale marks stations not heard from for STATION_STALE_AFTER
// offline. Every instance runs it; the store's conditional update makes
// each station go offline (and be announced) once.
func (a *app) markStale(ctx context.Context) {
	n, err := a.store.MarkStaleStations(ctx, a.cfg.StationStaleAfter)
	if err != nil && ctx.Err() == nil {
		a.log.Warn("station presence sweep failed", "err", err)
	}
	if n > 0 {
		a.log.Info("stations offline: not heard from", "stations", n, "stale_after", a.cfg.StationStaleAfter.String())
	}
}

// maxHeaderBytes bounds a request's header; over it, the answer is 431
// headers_too_large (api.Listener makes it JSON).
const maxHeaderBytes = 64 << 10

func (a *app) serve(ln net.Listener) error {
	err := a.http.Serve(api.Listener(ln, maxHeaderBytes))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// serveMetrics serves /metrics on ln (METRICS_ADDR).
func (a *app) serveMetrics(ln net.Listener) error {
	err := a.metrics.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// shutdown drains in the documented order: streams are told to end (their
// clients reconnect elsewhere with their cursor), the listener closes and
// in-flight requests finish, then the background loops, the hub, the
// broker and the database close.
func (a *app) shutdown(ctx context.Context) error {
	a.api.Drain()
	a.hub.Close()
	err := a.http.Shutdown(ctx)
	if a.metrics != nil {
		// Scraped until the main listener is done, then closed: a scrape
		// in flight is of no use to anyone once the process exits.
		_ = a.metrics.Close()
	}
	a.close()
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// close releases everything newApp opened; it is safe on a partial app.
func (a *app) close() {
	if a.stopBG != nil {
		a.stopBG()
		a.bg.Wait()
	}
	if a.hub != nil {
		a.hub.Close()
	}
	if a.broker != nil {
		_ = a.broker.Close()
	}
	if a.rdb != nil {
		_ = a.rdb.Close()
	}
	if a.store != nil {
		_ = a.store.Close()
	}
}

// cpus is the runtime's own GOMAXPROCS, the CPUs this process may use,
// read before oneMoreP changes it.
var cpus = runtime.GOMAXPROCS(0)

// oneMoreP runs the runtime with one P more than cpus, unless GOMAXPROCS
// is set in the environment. The streams' socket writes take at most
// GOMAXPROCS-1 of them (api.Config.StreamWriters' default), so they can
// still use every CPU, and a P is left for what the network wakes
// meanwhile (commits, the relay, the broker, new connections).
func oneMoreP() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(cpus + 1)
	}
}
