package api

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"batteryswap/models"
)

type httpMetrics struct {
	duration *prometheus.HistogramVec
	bookings *prometheus.CounterVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "batteryswap_http_request_duration_seconds",
			Help:    "HTTP request durations by method, route and status (streams: their whole life).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60},
		}, []string{"method", "route", "status"}),
		bookings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "batteryswap_booking_outcomes_total",
			Help: "Booking attempts by outcome: ok, replayed, or the error code.",
		}, []string{"code"}),
	}
	reg.MustRegister(m.duration, m.bookings)
	// The outcomes an alert watches exist from the start, at 0.
	for _, code := range []string{"ok", "replayed", string(models.CodeNoBatteryAvailable), string(models.CodeActiveBookingExists), string(models.CodeStationUnavailable)} {
		m.bookings.WithLabelValues(code)
	}
	return m
}

func (m *httpMetrics) observe(method, route string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.duration.WithLabelValues(method, route, strconv.Itoa(status)).Observe(d.Seconds())
}

func (m *httpMetrics) booking(err error, replayed bool) {
	switch {
	case err != nil:
		m.bookings.WithLabelValues(string(models.ErrorCode(err))).Inc()
	case replayed:
		m.bookings.WithLabelValues("replayed").Inc()
	default:
		m.bookings.WithLabelValues("ok").Inc()
	}
}
