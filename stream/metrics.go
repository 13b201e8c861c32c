package stream

import (
	"time"

	"batteryswap/models"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the stream collectors. A nil *Metrics is valid and records
// nothing, so tests and tools can leave metrics out.
type Metrics struct {
	open          *prometheus.GaugeVec
	published     prometheus.Counter
	delivered     *prometheus.CounterVec
	replayed      prometheus.Counter
	slowConsumers prometheus.Counter
	relayLag      prometheus.Histogram
	deliveryAge   *prometheus.HistogramVec
}

// The stream transports, as the metrics label them.
const (
	TransportSSE    = "sse"
	TransportWS     = "websocket"
	TransportPoll   = "poll"
	TransportNDJSON = "ndjson"
)

// Transports are all of them.
var Transports = []string{TransportSSE, TransportWS, TransportPoll, TransportNDJSON}

// NewMetrics creates the collectors and registers them with reg; a nil reg
// leaves them unregistered. Every transport's series exists from the start,
// at 0, so a dashboard or an alert reads 0 rather than no data.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		open: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "batteryswap_stream_open",
			Help: "Open live streams by transport.",
		}, []string{"transport"}),
		published: f.NewCounter(prometheus.CounterOpts{
			Name: "batteryswap_events_published_total",
			Help: "Events the relay published to the broker (a retried event counts again).",
		}),
		delivered: f.NewCounterVec(prometheus.CounterOpts{
			Name: "batteryswap_events_delivered_total",
			Help: "Events written to stream clients, by transport.",
		}, []string{"transport"}),
		replayed: f.NewCounter(prometheus.CounterOpts{
			Name: "batteryswap_events_replayed_total",
			Help: "Events read back from the outbox to resume subscribers or catch up after a broker reconnect.",
		}),
		slowConsumers: f.NewCounter(prometheus.CounterOpts{
			Name: "batteryswap_slow_consumer_disconnects_total",
			Help: "Subscribers dropped because their queue was full.",
		}),
		relayLag: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "batteryswap_relay_lag_seconds",
			Help:    "Time from an event's commit to its numbering by the relay, which publishes it next.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		deliveryAge: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "batteryswap_event_delivery_age_seconds",
			Help:    "Time from an event's commit to its write to a stream client, by transport (replayed events included).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"transport"}),
	}
	for _, t := range Transports {
		m.open.WithLabelValues(t)
		m.delivered.WithLabelValues(t)
		m.deliveryAge.WithLabelValues(t)
	}
	return m
}

// StreamOpened counts a stream of the given transport (sse, websocket, poll,
// ndjson) as open; the transport layer calls it, and StreamClosed when done.
func (m *Metrics) StreamOpened(transport string) {
	if m != nil {
		m.open.WithLabelValues(transport).Inc()
	}
}

// StreamClosed undoes StreamOpened.
func (m *Metrics) StreamClosed(transport string) {
	if m != nil {
		m.open.WithLabelValues(transport).Dec()
	}
}

// Delivered counts n events written to clients of a transport.
func (m *Metrics) Delivered(transport string, n int) {
	if m != nil {
		m.delivered.WithLabelValues(transport).Add(float64(n))
	}
}

// Deliveries counts events written to the clients of one transport and
// observes their age. It is Delivered with the labels looked up once, for
// writers that count every event. The zero value counts nothing.
type Deliveries struct {
	c   prometheus.Counter
	age prometheus.Observer
}

// DeliveriesOf returns the Deliveries of a transport; a nil Metrics gives
// the zero value.
func (m *Metrics) DeliveriesOf(transport string) Deliveries {
	if m == nil {
		return Deliveries{}
	}
	return Deliveries{m.delivered.WithLabelValues(transport), m.deliveryAge.WithLabelValues(transport)}
}

// Add counts n events that have no commit time of their own (a stream's
// opening events).
func (d Deliveries) Add(n int) {
	if d.c != nil {
		d.c.Add(float64(n))
	}
}

// Written counts msgs, written to a client at now, and observes how long
// after its commit each one was.
func (d Deliveries) Written(msgs []*Message, now time.Time) {
	if d.c == nil {
		return
	}
	d.c.Add(float64(len(msgs)))
	for _, m := range msgs {
		d.age.Observe(max(now.Sub(m.ev.CreatedAt), 0).Seconds())
	}
}

func (m *Metrics) eventsNumbered(evs []models.Event, now time.Time) {
	if m != nil {
		for i := range evs {
			m.relayLag.Observe(max(now.Sub(evs[i].CreatedAt), 0).Seconds())
		}
	}
}

func (m *Metrics) eventsPublished(n int) {
	if m != nil {
		m.published.Add(float64(n))
	}
}

func (m *Metrics) eventsReplayed(n int) {
	if m != nil {
		m.replayed.Add(float64(n))
	}
}

func (m *Metrics) slowConsumer() {
	if m != nil {
		m.slowConsumers.Inc()
	}
}
