package api

import (
	"math"
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
