package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"

	"batteryswap/models"
	"batteryswap/sseclient"
	"batteryswap/store"
	"batteryswap/store/storetest"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigPrecedence(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		flags []string
		want  func(Config) bool
		err   string
	}{
		{name: "defaults", want: func(c Config) bool {
			return c.Addr == ":8080" && c.BookingHold == 15*time.Minute && c.BookingWarn == 3*time.Minute && c.ReadyCharge == 80 &&
				c.HeartbeatInterval == 15*time.Second && c.HistoryRetention == 24*time.Hour && c.AutoMigrate && c.DatabaseURL == "" && c.RedisURL == "" &&
				c.RequestTimeout == 30*time.Second && c.MetricsAddr == "" && fmt.Sprint(c.TrustedProxies) == "[127.0.0.0/8 ::1/128]"
		}},
		{name: "environment", env: map[string]string{"ADDR": ":9000", "BOOKING_HOLD": "1m", "BOOKING_WARN": "20s", "ALLOWED_ORIGINS": "https://a.example, https://b.example/", "AUTO_MIGRATE": "false"},
			want: func(c Config) bool {
				return c.Addr == ":9000" && c.BookingHold == time.Minute && !c.AutoMigrate &&
					strings.Join(c.AllowedOrigins, " ") == "https://a.example https://b.example"
			}},
		{name: "flags win", env: map[string]string{"ADDR": ":9000"}, flags: []string{"--addr", ":9100", "--ready-charge", "90"},
			want: func(c Config) bool { return c.Addr == ":9100" && c.ReadyCharge == 90 }},
		{name: "bad duration", env: map[string]string{"BOOKING_HOLD": "soon"}, err: "BOOKING_HOLD"},
		{name: "bad charge", flags: []string{"--ready-charge", "101"}, err: "READY_CHARGE"},
		{name: "warning not before expiry", env: map[string]string{"BOOKING_HOLD": "1m"}, err: "BOOKING_WARN"},
		{name: "warning shorter than the hold", env: map[string]string{"BOOKING_HOLD": "1m", "BOOKING_WARN": "30s"},
			want: func(c Config) bool { return c.BookingHold == time.Minute && c.BookingWarn == 30*time.Second }},
		{name: "flags after a word", flags: []string{"extra"}, err: "unexpected argument"},
		{name: "bad log level", env: map[string]string{"LOG_LEVEL": "verbose"}, err: "LOG_LEVEL"},
		{name: "an empty flag clears", env: map[string]string{"REDIS_URL": "redis://elsewhere:6379/0", "ALLOWED_ORIGINS": "https://a.example"},
			flags: []string{"--redis-url=", "--allowed-origins", ""},
			want:  func(c Config) bool { return c.RedisURL == "" && len(c.AllowedOrigins) == 0 }},
		{name: "an empty duration flag is an error", flags: []string{"--booking-hold="}, err: "BOOKING_HOLD"},
		{name: "an origin with a path", env: map[string]string{"ALLOWED_ORIGINS": "https://a.example, https://b.example/app"}, err: "ALLOWED_ORIGINS"},
		{name: "an origin without a scheme", env: map[string]string{"ALLOWED_ORIGINS": "app.example"}, err: "ALLOWED_ORIGINS"},
		{name: "an origin with a wildcard host", env: map[string]string{"ALLOWED_ORIGINS": "https://*.example.com"}, err: "ALLOWED_ORIGINS"},
		{name: "an origin with an empty port", env: map[string]string{"ALLOWED_ORIGINS": "http://a.example:"}, err: "ALLOWED_ORIGINS"},
		{name: "an origin with port 99999", env: map[string]string{"ALLOWED_ORIGINS": "https://a.example:99999"}, err: "ALLOWED_ORIGINS"},
		{name: "an origin with a non-ASCII host", env: map[string]string{"ALLOWED_ORIGINS": "https://bücher.example"}, err: "xn--"},
		{name: "an origin's port without leading zeros", env: map[string]string{"ALLOWED_ORIGINS": "https://a.example:0443,http://b.example:08080"},
			want: func(c Config) bool {
				return slices.Equal(c.AllowedOrigins, []string{"https://a.example", "http://b.example:8080"})
			}},
		{name: "origins as browsers send them", env: map[string]string{"ALLOWED_ORIGINS": "HTTPS://App.Example.com:443,http://a.example:80,http://b.example:8080,https://[::1]:443"},
			want: func(c Config) bool {
				return slices.Equal(c.AllowedOrigins, []string{"https://app.example.com", "http://a.example", "http://b.example:8080", "https://[::1]"})
			}},
		{name: "every origin", env: map[string]string{"ALLOWED_ORIGINS": "*"},
			want: func(c Config) bool { return slices.Equal(c.AllowedOrigins, []string{"*"}) }},
		{name: "bad log format", flags: []string{"--log-format", "xml"}, err: "LOG_FORMAT"},
		{name: "a heartbeat of a nanosecond", env: map[string]string{"HEARTBEAT_INTERVAL": "1ns"}, err: "HEARTBEAT_INTERVAL"},
		{name: "a heartbeat under a second", env: map[string]string{"HEARTBEAT_INTERVAL": "999ms"}, err: "HEARTBEAT_INTERVAL"},
		{name: "a heartbeat of a second", env: map[string]string{"HEARTBEAT_INTERVAL": "1s"},
			want: func(c Config) bool { return c.HeartbeatInterval == time.Second }},
		{name: "a retention under a minute", env: map[string]string{"HISTORY_RETENTION": "59s"}, err: "HISTORY_RETENTION"},
		{name: "a retention of a minute", env: map[string]string{"HISTORY_RETENTION": "1m"},
			want: func(c Config) bool { return c.HistoryRetention == time.Minute }},
		{name: "stations stale after two minutes by default",
			want: func(c Config) bool { return c.StationStaleAfter == 2*time.Minute }},
		{name: "stations stale after under a second", env: map[string]string{"STATION_STALE_AFTER": "500ms"}, err: "STATION_STALE_AFTER"},
		{name: "stations stale after zero", env: map[string]string{"STATION_STALE_AFTER": "0s"}, err: "STATION_STALE_AFTER"},
		{name: "stations stale after a flag", flags: []string{"--station-stale-after", "45s"},
			want: func(c Config) bool { return c.StationStaleAfter == 45*time.Second }},
		{name: "a negative duration", env: map[string]string{"SHUTDOWN_TIMEOUT": "-5s"}, err: "SHUTDOWN_TIMEOUT"},
		{name: "trusted proxies", env: map[string]string{"TRUSTED_PROXIES": " 10.0.0.0/8, 192.168.1.7,fd00::/8 "},
			want: func(c Config) bool {
				return fmt.Sprint(c.TrustedProxies) == "[10.0.0.0/8 192.168.1.7/32 fd00::/8]"
			}},
		{name: "no trusted proxies", flags: []string{"--trusted-proxies="},
			want: func(c Config) bool { return c.TrustedProxies != nil && len(c.TrustedProxies) == 0 }},
		{name: "a trusted proxy that is no address", env: map[string]string{"TRUSTED_PROXIES": "nginx"}, err: "TRUSTED_PROXIES"},
		{name: "metrics on the main address", env: map[string]string{"ADDR": ":9000", "METRICS_ADDR": ":9000"}, err: "METRICS_ADDR"},
		{name: "a zero request timeout", env: map[string]string{"REQUEST_TIMEOUT": "0s"}, err: "REQUEST_TIMEOUT"},
		{name: "a request timeout", env: map[string]string{"REQUEST_TIMEOUT": "5s"},
			want: func(c Config) bool { return c.RequestTimeout == 5*time.Second }},
		{name: "a JWT_SECRET of 15 bytes", env: map[string]string{"JWT_SECRET": "fifteen-bytes!!"}, err: "JWT_SECRET: is 15 bytes"},
		{name: "a JWT_SECRET of 16 bytes", env: map[string]string{"JWT_SECRET": "sixteen-bytes!!!"},
			want: func(c Config) bool { return c.JWTSecret == "sixteen-bytes!!!" }},
		{name: "log settings in any case", env: map[string]string{"LOG_LEVEL": "WARN", "LOG_FORMAT": "JSON"},
			want: func(c Config) bool { return c.LogLevel == "warn" && c.LogFormat == "json" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := parse("serve", tt.flags, envOf(tt.env), io.Discard, 0, nil)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one naming %s", err, tt.err)
				}
				if secret := tt.env["JWT_SECRET"]; secret != "" && strings.Contains(err.Error(), secret) {
					t.Fatalf("the error repeats the secret: %v", err)
				}
				return
			}
			if err != nil || !tt.want(cfg) {
				t.Fatalf("config = %+v, %v", cfg, err)
			}
		})
	}
}

func TestCommandsMigrateUsersBroadcast(t *testing.T) {
	db := "sqlite://" + filepath.Join(t.TempDir(), "cli.db")
	env := envOf(map[string]string{"DATABASE_URL": db})
	ctx := context.Background()
	var out, errb bytes.Buffer
	// Before any migration, with AUTO_MIGRATE=false, broadcast and users
	// create say what to do, not "no such table".
	for _, args := range [][]string{{"broadcast", "--auto-migrate=false"}, {"users", "create", "--email", "x@example.com", "--password", "operator-pass", "--auto-migrate", "false"}} {
		if err := run(ctx, args, env, &out, &errb); err == nil || !strings.Contains(err.Error(), "migrate up") {
			t.Fatalf("%q on a new database: %v", args, err)
		}
	}
	// Status and down on a SQLite file that does not exist say so, and
	// create nothing; only up makes the database.
	missing := filepath.Join(t.TempDir(), "missing.db")
	for _, dir := range []string{"status", "down"} {
		err := run(ctx, []string{"migrate", dir, "--database-url", "sqlite://" + missing}, env, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("migrate %s on a missing SQLite file: %v, want an error saying it does not exist", dir, err)
		}
		if _, serr := os.Stat(missing); !errors.Is(serr, fs.ErrNotExist) {
			t.Fatalf("migrate %s on a missing SQLite file left a file behind (%v)", dir, serr)
		}
	}
	if err := run(ctx, []string{"migrate", "up"}, env, &out, &errb); err != nil {
		t.Fatalf("migrate up: %v %s", err, errb.String())
	}
	out.Reset()
	if err := run(ctx, []string{"migrate", "status"}, env, &out, &errb); err != nil || !strings.Contains(out.String(), "applied") {
		t.Fatalf("migrate status: %v %q", err, out.String())
	}
	// Configuration flags before the command word, with the environment empty.
	out.Reset()
	if err := run(ctx, []string{"--database-url", db, "migrate", "status"}, envOf(nil), &out, &errb); err != nil || !strings.Contains(out.String(), "applied") {
		t.Fatalf("--database-url DB migrate status: %v %q", err, out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"--database-url=" + db, "users", "create", "--email", "early@example.com", "--password", "operator-pass"}, envOf(nil), &out, &errb); err != nil {
		t.Fatalf("--database-url=DB users create: %v", err)
	}
	out.Reset()
	if err := run(ctx, []string{"users", "create", "--email", "Op@Example.com", "--password", "operator-pass", "--admin"}, env, &out, &errb); err != nil {
		t.Fatalf("users create: %v", err)
	}
	if !strings.Contains(out.String(), "role admin") || !strings.Contains(out.String(), "op@example.com") {
		t.Fatalf("users create said %q", out.String())
	}
	// The password from standard input, kept out of ps and shell history.
	defer func(was io.Reader) { stdin = was }(stdin)
	stdin = strings.NewReader("piped-password\n")
	out.Reset()
	if err := run(ctx, []string{"users", "create", "--email", "piped@example.com", "--password", "-"}, env, &out, &errb); err != nil {
		t.Fatalf("users create --password -: %v", err)
	}
	s, err := store.Open(ctx, db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.FindUserByEmail(ctx, "piped@example.com")
	s.Close()
	if err != nil || bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte("piped-password")) != nil {
		t.Fatalf("the piped password is not the account's: %v", err)
	}
	stdin = strings.NewReader("")
	if err := run(ctx, []string{"users", "create", "--email", "empty@example.com", "--password", "-"}, env, &out, &errb); err == nil {
		t.Fatal("users create --password - with nothing piped: no error")
	}
	err = run(ctx, []string{"users", "create", "--email", "op@example.com", "--password", "operator-pass"}, env, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "email_taken") {
		t.Fatalf("duplicate user: %v", err)
	}
	err = run(ctx, []string{"users", "create", "--email", "x@example.com", "--password", "short"}, env, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "password") {
		t.Fatalf("short password: %v", err)
	}
	// An operator demotes and promotes accounts (their tokens follow within
	// seconds: the API reads the role from the account).
	out.Reset()
	if err := run(ctx, []string{"users", "set-role", "--email", "OP@example.com", "--role", "user"}, env, &out, &errb); err != nil ||
		!strings.Contains(out.String(), "op@example.com> now has role user") {
		t.Fatalf("users set-role: %v %q", err, out.String())
	}
	for _, args := range [][]string{{"users", "set-role", "--email", "op@example.com", "--role", "root"}, {"users", "set-role", "--role", "admin"}} {
		if err := run(ctx, args, env, &out, &errb); err == nil || !strings.Contains(err.Error(), "usage") {
			t.Fatalf("%q: %v, want the usage", args, err)
		}
	}
	if err := run(ctx, []string{"users", "set-role", "--email", "nobody@example.com", "--role", "admin"}, env, &out, &errb); err == nil ||
		!strings.Contains(err.Error(), "not_found") {
		t.Fatalf("users set-role of an unknown address: %v", err)
	}
	s, err = store.Open(ctx, db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	u, err = s.FindUserByEmail(ctx, "op@example.com")
	s.Close()
	if err != nil || u.Role != models.RoleUser {
		t.Fatalf("op@example.com after set-role: %+v, %v", u, err)
	}
	err = run(ctx, []string{"broadcast", "--station-id", "7"}, env, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("broadcast to an unknown station: %v", err)
	}
	err = run(ctx, []string{"broadcast", "--station-id", "-3"}, env, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "station-id") {
		t.Fatalf("broadcast to station -3: %v", err)
	}
	for _, args := range [][]string{{"frobnicate"}, {"--database-url", db, "migrte", "up"}} {
		if err := run(ctx, args, env, &out, &errb); err == nil || !strings.Contains(err.Error(), "unknown command") {
			t.Fatalf("%q: %v, want unknown command", args, err)
		}
	}
	if err := run(ctx, []string{"watch", "http://a.example/stream", "http://b.example/stream"}, env, &out, &errb); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Fatalf("watch with two URLs: %v", err)
	}
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		out.Reset()
		if err := run(ctx, args, env, &out, &errb); err != nil || !strings.Contains(out.String(), "batteryswap migrate") {
			t.Fatalf("%v: %v, printed %q", args, err, out.String())
		}
	}
}

// Flags after migrate's direction count: "migrate down --database-url X"
// rolls back X, not the database in the environment.
func TestMigrateFlagsAfterTheDirection(t *testing.T) {
	dir := t.TempDir()
	envDB, flagDB := "sqlite://"+filepath.Join(dir, "env.db"), "sqlite://"+filepath.Join(dir, "flag.db")
	env := envOf(map[string]string{"DATABASE_URL": envDB})
	ctx := context.Background()
	var out, errb bytes.Buffer
	for _, db := range []string{envDB, flagDB} {
		if err := run(ctx, []string{"migrate", "up", "--database-url", db}, env, &out, &errb); err != nil {
			t.Fatalf("migrate up %s: %v", db, err)
		}
	}
	if err := run(ctx, []string{"migrate", "down", "--database-url", flagDB}, env, &out, &errb); err != nil {
		t.Fatalf("migrate down: %v", err)
	}
	status := func(db string) string {
		out.Reset()
		if err := run(ctx, []string{"migrate", "status", "--database-url", db}, env, &out, &errb); err != nil {
			t.Fatalf("migrate status %s: %v", db, err)
		}
		return out.String()
	}
	if s := status(envDB); strings.Contains(s, "pending") {
		t.Fatalf("the environment's database was rolled back:\n%s", s)
	}
	if s := status(flagDB); !strings.Contains(s, "pending") {
		t.Fatalf("the flag's database was not rolled back:\n%s", s)
	}
	err := run(ctx, []string{"migrate", "up", "extra"}, env, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), `unexpected argument "extra"`) {
		t.Fatalf("migrate up extra: %v", err)
	}
}

// TestBroadcastReachesEveryInstance runs the broadcast command against the
// shared PostgreSQL while two instances serve streams.
func TestBroadcastReachesEveryInstance(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-instance test")
	}
	a, b, w := cluster(t)
	sa := subscribeSSE(t, a.url+"/stream/stations", sseclient.Options{})
	sb := subscribeSSE(t, b.url+fmt.Sprintf("/stream/stations/%d", w.station), sseclient.Options{})
	for _, ch := range []<-chan ev{sa, sb} {
		next(t, ch)
		next(t, ch)
	}
	var out bytes.Buffer
	env := envOf(map[string]string{"DATABASE_URL": a.app.cfg.DatabaseURL})
	if err := run(context.Background(), []string{"broadcast", "--message", "hello riders"}, env, &out, io.Discard); err != nil {
		t.Fatalf("broadcast: %v", err)
	}
	if !strings.Contains(out.String(), "queued 1 ") {
		t.Fatalf("broadcast said %q", out.String())
	}
	ea, eb := next(t, sa), next(t, sb)
	for _, e := range []ev{ea, eb} {
		if e.Type != "inventory_update" || e.Data["action"] != "test" || e.Data["message"] != "hello riders" || e.Data["available_batteries"] != 1.0 {
			t.Fatalf("broadcast event = %v", e.Data)
		}
	}
	if ea.ID != eb.ID {
		t.Fatalf("ids differ between instances: %d %d", ea.ID, eb.ID)
	}
}

func singleInstance(t *testing.T, extra map[string]string) *instance {
	t.Helper()
	cfg := testConfig(t, storetest.URL(t, "sqlite"), "")
	for k, v := range extra {
		for _, s := range settings {
			if s.env == k {
				if err := s.set(&cfg, v); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return startInstance(t, cfg)
}

func metric(t *testing.T, in *instance, name string) float64 {
	t.Helper()
	resp, err := http.Get(in.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` ([0-9.e+]+)$`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// TestSlowConsumerIsDroppedWithoutHarmingOthers: a client that stops reading
// fills its bounded queue and is disconnected; a reading client on the same
// topic gets every event, and the hub forgets the slow one.
func TestSlowConsumerIsDroppedWithoutHarmingOthers(t *testing.T) {
	in := singleInstance(t, map[string]string{"STREAM_QUEUE": "4"})
	w := setup(t, in, in.app.store)
	fast := subscribeSSE(t, in.url+"/stream/stations", sseclient.Options{})
	next(t, fast)
	next(t, fast)

	// The slow client sends its request and never reads a byte.
	conn, err := net.Dial("tcp", in.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /stream/stations/%d HTTP/1.1\r\nHost: test\r\n\r\n", w.station)
	deadline := time.Now().Add(10 * time.Second)
	for in.app.hub.Subscribers() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("slow subscriber never registered")
		}
		time.Sleep(10 * time.Millisecond) // waiting for the server to accept it, with a deadline
	}

	// Enough big events to fill the socket buffers and then the queue.
	const n = 300
	big := strings.Repeat("x", 64<<10)
	for i := 0; i < n; i++ {
		if _, err := in.app.store.BroadcastTest(context.Background(), w.station, fmt.Sprintf("%d %s", i, big)); err != nil {
			t.Fatal(err)
		}
	}
	prev := int64(0)
	for i := 0; i < n; i++ {
		e := next(t, fast)
		if e.ID <= prev || !strings.HasPrefix(fmt.Sprint(e.Data["message"]), strconv.Itoa(i)+" ") {
			t.Fatalf("fast subscriber: event %d is %d %.20v", i, e.ID, e.Data["message"])
		}
		prev = e.ID
	}
	for metric(t, in, "batteryswap_slow_consumer_disconnects_total") < 1 || in.app.hub.Subscribers() != 1 {
		if time.Now().After(deadline.Add(20 * time.Second)) {
			t.Fatalf("slow consumer not dropped: %d subscribers", in.app.hub.Subscribers())
		}
		time.Sleep(20 * time.Millisecond) // the hub drops it on the broker's goroutine
	}
}

// TestShutdownEndsStreamsAndLeaksNothing: SIGTERM's path closes open SSE,
// WebSocket and long-poll streams, returns within its timeout and leaves no
// goroutine behind.
func TestShutdownEndsStreamsAndLeaksNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := testConfig(t, storetest.URL(t, "sqlite"), "")
	a, err := newApp(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- a.serve(ln) }()
	url := "http://" + ln.Addr().String()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	ended := make(chan string, 3)
	open := func(name, path string) {
		resp, err := client.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ended <- name
		}()
	}
	open("sse", "/stream/stations")
	open("ndjson", "/stream/stations?format=ndjson")
	go func() {
		resp, err := client.Get(url + "/stream/stations?transport=poll&timeout=60&since=0")
		if err == nil {
			resp.Body.Close()
		}
		ended <- "poll"
	}()
	for a.hub.Subscribers() < 3 {
		time.Sleep(5 * time.Millisecond) // waiting for the streams to register
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("serve: %v", err)
	}
	for range 3 {
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			t.Fatal("a stream stayed open after shutdown")
		}
	}
}

// With AUTO_MIGRATE=false, serve refuses a database that lacks migrations
// instead of answering ready and failing every request; once migrated, it
// serves.
func TestServeRefusesAnUnmigratedDatabase(t *testing.T) {
	db := "sqlite://" + filepath.Join(t.TempDir(), "fresh.db")
	env := envOf(map[string]string{"DATABASE_URL": db, "AUTO_MIGRATE": "false", "ADDR": "127.0.0.1:0"})
	var out, errb bytes.Buffer
	// Bounded: a serve that did not refuse would run until its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := run(ctx, []string{"serve"}, env, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "migrate up") {
		t.Fatalf("serve on an unmigrated database: %v", err)
	}
	if err := run(context.Background(), []string{"migrate", "up"}, env, &out, &errb); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := parse("serve", nil, env, io.Discard, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatalf("serve on a migrated database: %v", err)
	}
	a.close()
}

// The bootstrap admin follows every account's rules, needs both settings,
// and says so when it takes over an existing rider's account.
func TestBootstrapAdmin(t *testing.T) {
	db := "sqlite://" + filepath.Join(t.TempDir(), "admin.db")
	start := func(vars map[string]string) (string, error) {
		t.Helper()
		vars["DATABASE_URL"] = db
		cfg, _, err := parse("serve", nil, envOf(vars), io.Discard, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		var log bytes.Buffer
		a, err := newApp(context.Background(), cfg, &log)
		if err == nil {
			a.close()
		}
		return log.String(), err
	}
	for _, tc := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"ADMIN_EMAIL": "ops@example.com"}, "both"},
		{map[string]string{"ADMIN_PASSWORD": "admin-password"}, "both"},
		{map[string]string{"ADMIN_EMAIL": "not-an-email", "ADMIN_PASSWORD": "admin-password"}, "email"},
		{map[string]string{"ADMIN_EMAIL": "ops@example.com", "ADMIN_PASSWORD": "x"}, "password"},
	} {
		if _, err := start(tc.vars); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error about %s", tc.vars, err, tc.want)
		}
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"users", "create", "--email", "ria@example.com", "--password", "rider-password", "--database-url", db}, envOf(nil), &out, &errb); err != nil {
		t.Fatal(err)
	}
	log, err := start(map[string]string{"ADMIN_EMAIL": "Ria@Example.com", "ADMIN_PASSWORD": "admin-password"})
	if err != nil || !strings.Contains(log, "existing account") {
		t.Fatalf("taking over a rider's account: %v, logged %q", err, log)
	}
	if log, err = start(map[string]string{"ADMIN_EMAIL": "ria@example.com", "ADMIN_PASSWORD": "admin-password"}); err != nil || strings.Contains(log, "existing account") {
		t.Fatalf("an admin already: %v, logged %q", err, log)
	}
}

func TestCommandAt(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want int
	}{
		{nil, -1},
		{[]string{"migrate", "up"}, 0},
		{[]string{"--database-url", "x.db", "migrate", "status"}, 2},
		{[]string{"--database-url=x.db", "users", "create"}, 1},
		{[]string{"-addr", "serve"}, -1}, // "serve" is the address given
		{[]string{"--addr", ":1", "serve"}, 2},
		{[]string{"--email", "a@b.c", "users"}, -1}, // not a configuration flag
		{[]string{"frobnicate"}, 0},
		{[]string{"--database-url", "x.db", "migrte", "up"}, 2},
		{[]string{"--", "migrate"}, -1},
	} {
		if got := commandAt(tt.args); got != tt.want {
			t.Errorf("commandAt(%q) = %d, want %d", tt.args, got, tt.want)
		}
	}
}

// TestServeReclassesForANewReadyCharge: a server started with a lower
// READY_CHARGE shows a pack that was charging under the old one as
// available, without waiting for its telemetry.
func TestServeReclassesForANewReadyCharge(t *testing.T) {
	cfg := testConfig(t, storetest.URL(t, "sqlite"), "")
	first := startInstance(t, cfg)
	st, err := first.app.store.CreateStation(context.Background(), models.StationInput{Name: "Hill", Address: "1 Hill Rd", Latitude: 1, Longitude: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.app.store.AddBattery(context.Background(), st.ID, models.BatteryInput{SerialNumber: "H-1", ChargePercent: ptr(50)}); err != nil {
		t.Fatal(err)
	}
	first.stop(t)

	cfg.ReadyCharge = 40
	second := startInstance(t, cfg)
	// The re-class runs in the background, right after start.
	eventually(t, "after READY_CHARGE 80 -> 40 a pack at 50% available, none charging", func() bool {
		var got models.Station
		if code := call(t, "GET", fmt.Sprintf("%s/api/v1/stations/%d", second.url, st.ID), "", nil, &got); code != 200 {
			t.Fatalf("GET station: %d", code)
		}
		return got.Available == 1 && got.Charging == 0
	})
}

// A second server on the SQLite file a server holds refuses to start and
// says why, instead of sharing the file (two relays, lost live events,
// "database is locked"); a command still runs beside the server.
func TestSecondServerOnOneSQLiteFileRefuses(t *testing.T) {
	cfg := testConfig(t, storetest.URL(t, "sqlite"), "")
	startInstance(t, cfg)
	a, err := newApp(context.Background(), cfg, io.Discard)
	if err == nil {
		a.close()
		t.Fatal("a second server started on the SQLite file the first one holds")
	}
	if !strings.Contains(err.Error(), "in use by another batteryswap server") {
		t.Errorf("refusal %q does not say the file is in use", err)
	}
	env := envOf(map[string]string{"DATABASE_URL": cfg.DatabaseURL})
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"users", "create", "--email", "beside@example.com", "--password", "a-good-password"}, env, &out, &errb); err != nil {
		t.Fatalf("a command beside the server: %v (%s)", err, errb.String())
	}
}

// A database that a newer batteryswap migrated stops serve at start, with
// a message naming the database's migration and this binary's latest.
func TestServeRefusesASchemaNewerThanTheBinary(t *testing.T) {
	db := "sqlite://" + filepath.Join(t.TempDir(), "newer.db")
	env := envOf(map[string]string{"DATABASE_URL": db, "ADDR": "127.0.0.1:0"})
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"migrate", "up"}, env, &out, &errb); err != nil {
		t.Fatal(err)
	}
	s := storetest.OpenURL(t, db, store.Options{})
	if err := s.DB().Exec("INSERT INTO goose_db_version (version_id, is_applied) VALUES (90001, true)").Error; err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, auto := range []string{"true", "false"} {
		env := envOf(map[string]string{"DATABASE_URL": db, "ADDR": "127.0.0.1:0", "AUTO_MIGRATE": auto})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := run(ctx, []string{"serve"}, env, &out, &errb)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "90001") || !strings.Contains(err.Error(), "newer than this binary") {
			t.Errorf("serve (AUTO_MIGRATE=%s) on a newer schema: %v, want a refusal naming both versions", auto, err)
		}
	}
}
