// Package api is batteryswap's HTTP face: the Echo server with the REST API
// of /api/v1, the live streams (SSE, WebSocket, long-poll, NDJSON) over a
// stream subscription, the operations endpoints and the dashboard. Handlers
// are thin: bind, validate, one call into the store or the hub, render.
package api

import (
	"context"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"batteryswap/models"
	"batteryswap/stream"
)

// Store is what the API needs from persistence.
type Store interface {
	CreateUser(ctx context.Context, email, name, passwordHash string, role models.Role) (*models.User, error)
	FindUserByEmail(ctx context.Context, email string) (*models.User, error)
	FindUserByID(ctx context.Context, id int64) (*models.User, error)
	BumpTokenVersion(ctx context.Context, id int64) error
	DeploymentID(ctx context.Context) (string, error)

	ListStations(ctx context.Context, f models.StationFilter) ([]models.Station, error)
	NearestStations(ctx context.Context, q models.NearQuery) ([]models.Station, error)
	StationHeartbeat(ctx context.Context, id int64) error
	AllStations(ctx context.Context) ([]models.Station, error)
	FindStationByID(ctx context.Context, id int64) (*models.Station, error)
	StationExists(ctx context.Context, id int64) (bool, error)
	CreateStation(ctx context.Context, in models.StationInput) (*models.Station, error)
	UpdateStation(ctx context.Context, id int64, p models.StationPatch) (*models.Station, error)

	ListBatteries(ctx context.Context, stationID int64, p models.Page) ([]models.Battery, error)
	AddBattery(ctx context.Context, stationID int64, in models.BatteryInput) (*models.Battery, error)
	UpdateBattery(ctx context.Context, id int64, p models.BatteryPatch) (*models.Battery, error)

	CreateBooking(ctx context.Context, userID, stationID int64, idemKey string) (*models.Booking, bool, error)
	FindBookingByID(ctx context.Context, id int64) (*models.Booking, error)
	ListBookings(ctx context.Context, f models.BookingFilter) ([]models.Booking, error)
	CollectBooking(ctx context.Context, id int64, user *models.User, ret *models.ReturnPack) (*models.Booking, error)
	CancelBooking(ctx context.Context, id int64, actor *models.User) (*models.Booking, error)

	ListNotifications(ctx context.Context, userID int64, unread bool, p models.Page) ([]models.Notification, error)
	UnreadNotifications(ctx context.Context, userID int64, limit int) ([]models.Notification, error)
	MarkNotificationRead(ctx context.Context, id, userID int64) (*models.Notification, error)
	CreateNotification(ctx context.Context, in models.NotificationInput) (*models.Notification, error)

	Ping(ctx context.Context) error
}

// Pinger is a dependency that /readyz checks.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Config tunes the server. Zero values take the documented defaults.
type Config struct {
	// JWTSecret signs access tokens (HMAC-SHA256). Required.
	JWTSecret []byte
	// TokenTTL is how long an access token is valid (default 24h).
	TokenTTL time.Duration
	// AccountCacheTTL is how long the account a token names (its role and
	// token version) is reused before it is read again (default 5s;
	// negative reads it on every request). A role change or a logout-all
	// on another instance applies within it.
	AccountCacheTTL time.Duration
	// RequestTimeout bounds the time a request's body may take to arrive
	// (default 30s); past it the answer is 408 request_timeout. Streams,
	// which have no body, are not affected.
	RequestTimeout time.Duration
	// TrustedProxies are the peers whose X-Forwarded-For is believed for the
	// client's address (per-address limits); nil trusts loopback only, an
	// empty list no one.
	TrustedProxies []*net.IPNet
	// SeparateMetrics leaves /metrics out of Handler: it is served on its
	// own listener (MetricsHandler, METRICS_ADDR).
	SeparateMetrics bool
	// AllowedOrigins may open WebSockets and make credentialed CORS
	// requests; empty means same origin only.
	AllowedOrigins []string
	// HeartbeatInterval is how often an idle stream gets a keep-alive.
	HeartbeatInterval time.Duration
	// AuthRateLimit is requests per second per client address on the auth
	// endpoints (burst 4x); BookingRateLimit per user on booking writes.
	// Negative disables; zero takes the default (5 and 10).
	AuthRateLimit, BookingRateLimit float64
	// MaxStreamsPerClient caps open streams per client (default 32).
	MaxStreamsPerClient int
	// StreamWriters caps the hijacked streams (SSE, NDJSON, WebSocket)
	// that write to their sockets at once (default GOMAXPROCS-1, at least
	// 1; see writeSlots).
	StreamWriters int
	// BcryptCost is the password hashing cost (default bcrypt.DefaultCost).
	BcryptCost int
	// Web is the dashboard served at "/"; nil serves nothing there.
	Web fs.FS
	// OpenAPI is the document served at /openapi.yaml.
	OpenAPI []byte
	// Logger receives request and error logs.
	Logger *slog.Logger
	// Registry receives the HTTP and booking metrics; nil makes a private one.
	Registry *prometheus.Registry
	// StreamMetrics counts stream traffic; nil disables.
	StreamMetrics *stream.Metrics
}

// Server is the Echo application.
type Server struct {
	echo    *echo.Echo
	store   Store
	hub     *stream.Hub
	broker  Pinger
	cfg     Config
	log     *slog.Logger
	metrics *httpMetrics
	streams *streamLimiter
	writers writeSlots
	// accounts and deployment bind tokens to their account and database.
	accounts   *accounts
	deployment *deployment
	// dummyHash is checked on logins of unknown accounts (see handleLogin).
	dummyHash []byte

	// drain ends when the server starts shutting down; open streams end
	// with it so that their clients reconnect elsewhere.
	drain      context.Context
	startDrain context.CancelFunc
	// hijacked are the SSE and NDJSON streams that left net/http (see
	// stream_sse.go); http.Server.Shutdown does not see them.
	hijacked leanStreams
	// sockets are the open WebSockets, which it does not see either.
	sockets webSockets
	// intros are the shared opening events of station streams, stations
	// the ids known to exist (stream_open.go, stream_routes.go).
	intros   introCache
	stations knownStations
}

// New builds the server and its routes.
func New(cfg Config, st Store, hub *stream.Hub, broker Pinger) *Server {
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 24 * time.Hour
	}
	if cfg.AccountCacheTTL == 0 {
		cfg.AccountCacheTTL = 5 * time.Second
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.TrustedProxies == nil {
		cfg.TrustedProxies = loopback
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 15 * time.Second
	}
	if cfg.AuthRateLimit == 0 {
		cfg.AuthRateLimit = 5
	}
	if cfg.BookingRateLimit == 0 {
		cfg.BookingRateLimit = 10
	}
	if cfg.MaxStreamsPerClient <= 0 {
		cfg.MaxStreamsPerClient = 32
	}
	if cfg.StreamWriters <= 0 {
		cfg.StreamWriters = max(1, runtime.GOMAXPROCS(0)-1)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	s := &Server{echo: e, store: st, hub: hub, broker: broker, cfg: cfg, log: cfg.Logger,
		metrics: newHTTPMetrics(cfg.Registry), streams: newStreamLimiter(cfg.MaxStreamsPerClient),
		writers: make(writeSlots, cfg.StreamWriters), dummyHash: dummyHashFor(cfg.BcryptCost)}
	if st != nil {
		s.accounts = newAccounts(st.FindUserByID, cfg.AccountCacheTTL, maxCachedAccounts)
		s.deployment = &deployment{read: st.DeploymentID}
	}
	s.drain, s.startDrain = context.WithCancel(context.Background())
	e.HTTPErrorHandler = s.handleError
	e.IPExtractor = clientIP(cfg.TrustedProxies)

	e.Pre(s.bodyDeadline)
	e.Pre(headAsGet)
	e.Pre(middleware.RemoveTrailingSlashWithConfig(middleware.TrailingSlashConfig{
		Skipper: func(c echo.Context) bool { return c.Request().URL.Path == "/" },
	}))
	e.Use(headAgain)
	e.Use(securityHeaders)
	e.Use(middleware.RequestID())
	e.Use(s.logRequests)
	e.Use(s.recoverPanics)
	e.Use(s.cors())
	e.Use(middleware.BodyLimit("1MiB"))
	e.Use(s.refuseCrossOrigin(cfg.AllowedOrigins))
	e.Use(s.requireJSONForWrites)

	s.registerOpsRoutes()
	v1 := e.Group("/api/v1")
	s.registerAuthRoutes(v1)
	s.registerStationRoutes(v1)
	s.registerBatteryRoutes(v1)
	s.registerBookingRoutes(v1)
	s.registerNotificationRoutes(v1)
	s.registerStreamRoutes()
	s.registerWebRoutes()
	return s
}

// maxCachedAccounts bounds the account cache (accounts).
const maxCachedAccounts = 1 << 16

// Handler is the server as an http.Handler.
func (s *Server) Handler() http.Handler { return s.echo }

// Echo exposes the router, for tests that list routes.
func (s *Server) Echo() *echo.Echo { return s.echo }

// Drain ends every open stream (its client reconnects, elsewhere, with its
// cursor) and refuses new ones; called first on shutdown. It returns once
// the hijacked streams and the WebSockets, whose connections
// http.Server.Shutdown does not track, have closed them (a WebSocket after
// its close frame, 1001); the others end with their handlers.
func (s *Server) Drain() {
	s.startDrain()
	s.hijacked.endAll()
	s.sockets.endAll()
}

func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				s.log.Error("panic in handler", "panic", r, "route", c.Path(), "request_id", requestID(c))
				err = models.Errorf(models.CodeInternal, "internal error")
			}
		}()
		return next(c)
	}
}

// logRequests writes one structured line per request and observes its
// duration. The query string is left out: it may carry an access_token.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		d := time.Since(start)
		status := c.Response().Status
		// A hijacked stream observes its whole life when it ends; its line
		// is logged here, when the handler hands it off.
		if handedOff, _ := c.Get(handOffKey).(bool); !handedOff {
			s.metrics.observe(c.Request().Method, c.Path(), status, d)
		}
		// Checked first: the line's arguments are built (and allocated)
		// before Info could find that nothing logs at its level.
		if r := c.Request(); s.log.Enabled(r.Context(), slog.LevelInfo) {
			s.log.Info("request", "method", r.Method, "path", r.URL.Path, "route", c.Path(),
				"status", status, "duration_ms", d.Milliseconds(), "request_id", requestID(c))
		}
		return nil
	}
}

// requireJSONForWrites refuses state-changing requests that carry a
// non-JSON content type, so a cross-site HTML form cannot forge them with
// the session cookie.
func (s *Server) requireJSONForWrites(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		switch r.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
			if ct := r.Header.Get(echo.HeaderContentType); ct != "" && !isJSON(ct) {
				return models.Errorf(models.CodeUnsupportedMedia, "the body must be JSON (Content-Type: application/json)")
			}
		}
		return next(c)
	}
}

// headAsGet routes HEAD as GET (RFC 9110 §9.3.2: the same header, no body),
// so that uptime checks and load balancers that probe with HEAD get what
// GET would answer, not 405. The router reads the method between the Pre
// middleware and the others, so this one says GET for the lookup and
// headAgain says HEAD again for the handler, and net/http, which then drops
// the body. Streams are left out: their body never ends, so a HEAD there
// would hang; it stays 405.
func headAsGet(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.Method == http.MethodHead && !isStreamPath(r.URL.Path) {
			r.Method = http.MethodGet
			c.Set(headKey, true)
		}
		return next(c)
	}
}

const headKey = "batteryswap.head"

// headAgain undoes headAsGet once the route is found, and lists HEAD
// wherever the router's Allow header lists GET. The router prepares that
// header only when no route took the method (a 405, an OPTIONS answer), so
// the requests that found their route pay nothing here.
func headAgain(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if c.Get(headKey) == true {
			r.Method = http.MethodHead
		}
		if _, allowing := c.Get(echo.ContextKeyHeaderAllow).(string); allowing && !isStreamPath(r.URL.Path) {
			res := c.Response()
			res.Before(func() {
				allow := res.Header().Get("Allow")
				if strings.Contains(allow, http.MethodGet) && !strings.Contains(allow, http.MethodHead) {
					res.Header().Set("Allow", allow+", "+http.MethodHead)
				}
			})
		}
		return next(c)
	}
}

// securityHeaders are set on every answer. The dashboard loads only its
// own script and style and talks only to its own origin, so the policy
// allows nothing else, and no page may frame it (its buttons book and
// cancel). No Referer leaves a page: a stream URL may carry an
// access_token.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		return next(c)
	}
}

const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// isStreamPath reports whether p is under the stream routes'
// prefixes (registerStreamRoutes); a stream route elsewhere must be added
// here, or HEAD on it would open a stream.
func isStreamPath(p string) bool {
	return p == "/stream" || strings.HasPrefix(p, "/stream/") || p == "/ws" || strings.HasPrefix(p, "/ws/")
}

// refuseCrossOrigin answers 403 to a state-changing request that a browser
// sent from another origin than the server's own or one of ALLOWED_ORIGINS
// (net/http's CrossOriginProtection: Sec-Fetch-Site, else Origin against
// Host). A body-less POST (cancel, collect, logout, mark read) needs no JSON
// content type, so without this only SameSite=Lax would keep a page on
// another port or a sibling subdomain, which count as the same site, from
// riding the session cookie. Requests from programs, which send neither
// header, and safe methods pass. ALLOWED_ORIGINS "*" trusts every origin.
func (s *Server) refuseCrossOrigin(allowed []string) echo.MiddlewareFunc {
	guard := http.NewCrossOriginProtection()
	for _, o := range allowed {
		if o == "*" {
			return func(next echo.HandlerFunc) echo.HandlerFunc { return next }
		}
		if err := guard.AddTrustedOrigin(o); err != nil {
			s.log.Warn("ALLOWED_ORIGINS: not an origin, ignored for cross-origin writes", "origin", o, "err", err)
		}
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if guard.Check(c.Request()) != nil {
				return models.Errorf(models.CodeForbidden, "cross-origin request refused: add its origin to ALLOWED_ORIGINS")
			}
			return next(c)
		}
	}
}

func (s *Server) cors() echo.MiddlewareFunc {
	return middleware.CORSWithConfig(middleware.CORSConfig{
		Skipper:          func(echo.Context) bool { return len(s.cfg.AllowedOrigins) == 0 },
		AllowOrigins:     s.cfg.AllowedOrigins,
		AllowMethods:     []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodOptions},
		AllowHeaders:     []string{echo.HeaderAuthorization, echo.HeaderContentType, "Idempotency-Key", "Last-Event-ID"},
		AllowCredentials: true,
		MaxAge:           600,
	})
}

// originAllowed reports whether a browser origin may open a WebSocket: the
// same host, or one of ALLOWED_ORIGINS.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	host := origin
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	return strings.EqualFold(host, r.Host)
}
