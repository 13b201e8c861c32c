package main

import (
	"flag"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is every setting of the binary: defaults < environment < flags.
type Config struct {
	Addr              string
	DatabaseURL       string
	RedisURL          string
	RedisPrefix       string
	JWTSecret         string
	AdminEmail        string
	AdminPassword     string
	BookingHold       time.Duration
	BookingWarn       time.Duration
	AllowedOrigins    []string
	ReadyCharge       int
	HeartbeatInterval time.Duration
	HistoryRetention  time.Duration
	StationStaleAfter time.Duration
	AutoMigrate       bool
	ShutdownTimeout   time.Duration
	RequestTimeout    time.Duration
	TrustedProxies    []*net.IPNet
	MetricsAddr       string
	AuthRateLimit     float64
	BookingRateLimit  float64
	MaxStreams        int
	StreamQueue       int
	LogLevel          string
	LogFormat         string
}

// setting is one configuration entry: its environment name, its flag name,
// its default and where it goes.
type setting struct {
	env, flag, def, help string
	set                  func(c *Config, v string) error
}

func str(dst func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *dst(c) = v; return nil }
}

// oneOf accepts only the listed values (in any case, stored in lower case).
func oneOf(dst func(*Config) *string, allowed ...string) func(*Config, string) error {
	return func(c *Config, v string) error {
		v = strings.ToLower(v)
		if !slices.Contains(allowed, v) {
			return fmt.Errorf("must be one of %s", strings.Join(allowed, ", "))
		}
		*dst(c) = v
		return nil
	}
}

func dur(dst func(*Config) *time.Duration) func(*Config, string) error {
	return durAtLeast(dst, 0)
}

// durAtLeast accepts a positive duration of at least least: below it, the
// setting would make the server work against itself (a heartbeat every
// nanosecond floods every stream; a retention of a nanosecond deletes
// events before a client can resume from them).
func durAtLeast(dst func(*Config) *time.Duration, least time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("must be a positive Go duration like 15m")
		}
		if d < least {
			return fmt.Errorf("must be at least %s", least)
		}
		*dst(c) = d
		return nil
	}
}

// minSecretBytesAccepted is the shortest JWT_SECRET accepted at all: a
// shorter HMAC key can be found from one token by trying keys offline.
const minSecretBytesAccepted = 16

// secretSettings are the settings whose value an error message must not
// repeat: it would reach a terminal, a log or a CI transcript.
var secretSettings = map[string]bool{"JWT_SECRET": true, "ADMIN_PASSWORD": true}

var settings = []setting{
	{"ADDR", "addr", ":8080", "listen address", str(func(c *Config) *string { return &c.Addr })},
	{"DATABASE_URL", "database-url", "", "postgres://… or sqlite://PATH (default: embedded SQLite file batteryswap.db)", str(func(c *Config) *string { return &c.DatabaseURL })},
	{"REDIS_URL", "redis-url", "", "redis://… for Redis pub/sub (default: in-process broker)", str(func(c *Config) *string { return &c.RedisURL })},
	{"REDIS_PREFIX", "redis-prefix", "batteryswap:", "prefix of the Redis pub/sub channels (deployments sharing one Redis need different ones)", str(func(c *Config) *string { return &c.RedisPrefix })},
	{"JWT_SECRET", "jwt-secret", "", "HMAC key for access tokens, 16 bytes or more (default: random per start)", func(c *Config, v string) error {
		if v != "" && len(v) < minSecretBytesAccepted {
			return fmt.Errorf("is %d bytes: use 32 random bytes or more (openssl rand -hex 32); under %d is refused", len(v), minSecretBytesAccepted)
		}
		c.JWTSecret = v
		return nil
	}},
	{"ADMIN_EMAIL", "admin-email", "", "bootstrap admin e-mail", str(func(c *Config) *string { return &c.AdminEmail })},
	{"ADMIN_PASSWORD", "admin-password", "", "bootstrap admin password", str(func(c *Config) *string { return &c.AdminPassword })},
	{"BOOKING_HOLD", "booking-hold", "15m", "how long a booking holds a battery", dur(func(c *Config) *time.Duration { return &c.BookingHold })},
	{"BOOKING_WARN", "booking-warn", "3m", "how long before expiry the holder is warned", dur(func(c *Config) *time.Duration { return &c.BookingWarn })},
	{"ALLOWED_ORIGINS", "allowed-origins", "", "comma-separated origins for WebSockets and CORS (default: same origin)", func(c *Config, v string) error {
		c.AllowedOrigins = nil
		for _, o := range strings.Split(v, ",") {
			if o = strings.TrimSuffix(strings.TrimSpace(o), "/"); o != "" {
				o, err := canonicalOrigin(o)
				if err != nil {
					return err
				}
				c.AllowedOrigins = append(c.AllowedOrigins, o)
			}
		}
		return nil
	}},
	{"READY_CHARGE", "ready-charge", "80", "charge percent at which a battery is ready", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return fmt.Errorf("must be a whole number from 1 to 100")
		}
		c.ReadyCharge = n
		return nil
	}},
	{"HEARTBEAT_INTERVAL", "heartbeat-interval", "15s", "keep-alive interval of idle streams (1s or more)", durAtLeast(func(c *Config) *time.Duration { return &c.HeartbeatInterval }, time.Second)},
	{"HISTORY_RETENTION", "history-retention", "24h", "how long events are kept for resume (1m or more)", durAtLeast(func(c *Config) *time.Duration { return &c.HistoryRetention }, time.Minute)},
	{"STATION_STALE_AFTER", "station-stale-after", "2m", "a station not heard from (heartbeat or battery telemetry) for this long is offline (1s or more)", durAtLeast(func(c *Config) *time.Duration { return &c.StationStaleAfter }, time.Second)},
	{"AUTO_MIGRATE", "auto-migrate", "true", "serve applies pending migrations at start", func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("must be true or false")
		}
		c.AutoMigrate = b
		return nil
	}},
	{"SHUTDOWN_TIMEOUT", "shutdown-timeout", "30s", "how long SIGTERM waits for in-flight requests", dur(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
	{"REQUEST_TIMEOUT", "request-timeout", "30s", "how long a request's body may take to arrive (408 after; streams are not affected)", dur(func(c *Config) *time.Duration { return &c.RequestTimeout })},
	{"TRUSTED_PROXIES", "trusted-proxies", "127.0.0.0/8,::1/128", "comma-separated CIDRs (or addresses) of the proxies whose X-Forwarded-For is believed", func(c *Config, v string) error {
		c.TrustedProxies = []*net.IPNet{} // empty: no one is trusted
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			n, err := parseCIDR(p)
			if err != nil {
				return err
			}
			c.TrustedProxies = append(c.TrustedProxies, n)
		}
		return nil
	}},
	{"METRICS_ADDR", "metrics-addr", "", "listen address for /metrics alone (default: /metrics on ADDR)", str(func(c *Config) *string { return &c.MetricsAddr })},
	{"AUTH_RATE_LIMIT", "auth-rate-limit", "5", "auth requests per second per client address (burst 4x; -1 disables)", floatSetting(func(c *Config) *float64 { return &c.AuthRateLimit })},
	{"BOOKING_RATE_LIMIT", "booking-rate-limit", "10", "booking writes per second per user (burst 4x; -1 disables)", floatSetting(func(c *Config) *float64 { return &c.BookingRateLimit })},
	{"MAX_STREAMS_PER_CLIENT", "max-streams-per-client", "32", "open streams per user or address", intSetting(func(c *Config) *int { return &c.MaxStreams })},
	{"STREAM_QUEUE", "stream-queue", "1024", "events a subscriber may fall behind before it is disconnected", intSetting(func(c *Config) *int { return &c.StreamQueue })},
	{"LOG_LEVEL", "log-level", "info", "debug, info, warn or error", oneOf(func(c *Config) *string { return &c.LogLevel }, "debug", "info", "warn", "error")},
	{"LOG_FORMAT", "log-format", "text", "text or json", oneOf(func(c *Config) *string { return &c.LogFormat }, "text", "json")},
}

func floatSetting(dst func(*Config) *float64) func(*Config, string) error {
	return func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || (f < 0 && f != -1) || f == 0 {
			return fmt.Errorf("must be a positive number, or -1 to disable")
		}
		*dst(c) = f
		return nil
	}
}

func intSetting(dst func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("must be a positive whole number")
		}
		*dst(c) = n
		return nil
	}
}

// loadConfig applies defaults, then the environment, then the flags given
// (by flag name; see givenFlags). A flag given empty clears the setting to ""
// (--redis-url= selects the in-process broker whatever REDIS_URL says).
func loadConfig(getenv func(string) string, flags map[string]*string) (Config, error) {
	var c Config
	for _, s := range settings {
		v := s.def
		if e := getenv(s.env); e != "" {
			v = e
		}
		if f := flags[s.flag]; f != nil {
			v = *f
		}
		if err := s.set(&c, v); err != nil {
			if secretSettings[s.env] {
				return c, fmt.Errorf("%s: %w", s.env, err)
			}
			return c, fmt.Errorf("%s=%q: %w", s.env, v, err)
		}
	}
	if c.MetricsAddr != "" && c.MetricsAddr == c.Addr && !strings.HasSuffix(c.Addr, ":0") {
		return c, fmt.Errorf("METRICS_ADDR=%s is ADDR: leave it empty to serve /metrics on ADDR, or give it a listener of its own", c.MetricsAddr)
	}
	if c.BookingWarn >= c.BookingHold {
		// Every booking would be warned the moment it is made.
		return c, fmt.Errorf("BOOKING_WARN=%s must be shorter than BOOKING_HOLD=%s", c.BookingWarn, c.BookingHold)
	}
	return c, nil
}

// registerFlags adds a flag per setting to fs.
func registerFlags(fs *flag.FlagSet) map[string]*string {
	out := make(map[string]*string, len(settings))
	for _, s := range settings {
		out[s.flag] = fs.String(s.flag, "", fmt.Sprintf("%s (env %s, default %q)", s.help, s.env, s.def))
	}
	return out
}

// givenFlags keeps, of registerFlags' flags, those the command line set.
func givenFlags(fs *flag.FlagSet, flags map[string]*string) map[string]*string {
	given := map[string]*string{}
	fs.Visit(func(f *flag.Flag) {
		if p, ok := flags[f.Name]; ok {
			given[f.Name] = p
		}
	})
	return given
}

// canonicalOrigin accepts "*" or an origin, scheme://host[:port] with
// nothing after, and returns it as a browser sends it in Origin: scheme and
// host in lower case, no default port. CORS and the cross-origin check
// compare origins exactly, so https://App.example.com:443 would never match.
func canonicalOrigin(o string) (string, error) {
	if o == "*" {
		return o, nil
	}
	bad := fmt.Errorf("%q is not an origin: want scheme://host[:port], like https://app.example.com, or * for any", o)
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || strings.Contains(u.Host, "*") ||
		u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
		return "", bad
	}
	host := strings.ToLower(u.Hostname())
	for _, r := range host {
		if r > 127 {
			return "", fmt.Errorf("%q: write the host as browsers send it, in its ASCII (xn--) form", o)
		}
	}
	if strings.Contains(host, ":") { // IPv6
		host = "[" + host + "]"
	}
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", bad
		}
		if !(n == 443 && u.Scheme == "https" || n == 80 && u.Scheme == "http") {
			host += ":" + strconv.Itoa(n)
		}
	}
	return u.Scheme + "://" + host, nil
}

// parseCIDR reads a network in CIDR notation (10.0.0.0/8, fd00::/8) or a
// single address (10.0.0.7, which means 10.0.0.7/32).
func parseCIDR(s string) (*net.IPNet, error) {
	if _, n, err := net.ParseCIDR(s); err == nil {
		return n, nil
	}
	ip := net.ParseIP(s)
	if ip == nil {
		return nil, fmt.Errorf("%q is neither an address nor a CIDR like 10.0.0.0/8", s)
	}
	bits := 128
	if ip4 := ip.To4(); ip4 != nil {
		ip, bits = ip4, 32
	}
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}, nil
}
