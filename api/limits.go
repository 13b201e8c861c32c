package api

import (
	"errors"
	"math"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"golang.org/x/time/rate"

	"batteryswap/models"
)

// rateLimit allows perSecond requests (burst 4x) per key; negative disables.
// Over it the answer is 429 rate_limited with Retry-After.
func (s *Server) rateLimit(name string, perSecond float64, key func(echo.Context) string) echo.MiddlewareFunc {
	if perSecond < 0 {
		return func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	store := middleware.NewRateLimiterMemoryStoreWithConfig(middleware.RateLimiterMemoryStoreConfig{
		Rate: rate.Limit(perSecond), Burst: int(math.Max(1, math.Ceil(perSecond*4))), ExpiresIn: 5 * time.Minute,
	})
	retry := strconv.Itoa(int(math.Max(1, math.Ceil(1/perSecond))))
	return middleware.RateLimiterWithConfig(middleware.RateLimiterConfig{
		Store:               store,
		IdentifierExtractor: func(c echo.Context) (string, error) { return name + ":" + key(c), nil },
		DenyHandler: func(c echo.Context, _ string, _ error) error {
			c.Response().Header().Set("Retry-After", retry)
			return models.Errorf(models.CodeRateLimited, "too many requests; retry in %s s", retry)
		},
	})
}

// streamLimiter caps the open streams of one client (user or address).
type streamLimiter struct {
	max  int
	mu   sync.Mutex
	open map[string]int
}

func newStreamLimiter(max int) *streamLimiter {
	return &streamLimiter{max: max, open: map[string]int{}}
}

// acquire takes a slot for key; the returned release gives it back.
func (l *streamLimiter) acquire(key string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key] >= l.max {
		return nil, models.Errorf(models.CodeRateLimited, "too many open streams: at most %d per client", l.max)
	}
	l.open[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.open[key]--; l.open[key] <= 0 {
				delete(l.open, key)
			}
		})
	}, nil
}

// bodyDeadline gives a request's body RequestTimeout to arrive, counted
// from the end of its header: a client that declares a body and trickles it
// a byte at a time would otherwise hold a connection and a goroutine for
// ever, and SIGTERM would wait for it until SHUTDOWN_TIMEOUT. A read past
// the deadline fails (bindJSON answers 408 request_timeout), and so does
// net/http's own reading of what a handler left unread, so the connection
// ends either way.
//
// The deadline is the connection's read deadline, which net/http lifts by
// itself once the body has been read to its end (it then watches the
// connection for the client hanging up), so a handler that works on after
// its body arrived is not cut short. Requests without a body and streams
// (which have none, and read their connection for ever) get none.
func (s *Server) bodyDeadline(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 || isStreamPath(r.URL.Path) {
			return next(c)
		}
		// An error means a connection without deadlines (a test recorder).
		_ = http.NewResponseController(c.Response()).SetReadDeadline(time.Now().Add(s.cfg.RequestTimeout))
		return next(c)
	}
}

// bodyTimedOut reports whether err is a body read that ran past
// bodyDeadline's deadline.
func bodyTimedOut(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// errBodyTimeout is the answer to a body that did not arrive in time. The
// connection is closed after it: what is left of the body is still on its
// way, and would be read as the next request.
func errBodyTimeout(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderConnection, "close")
	return models.Errorf(models.CodeRequestTimeout, "the request body did not arrive in time; send it at once")
}
