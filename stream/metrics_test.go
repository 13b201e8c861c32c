package stream

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetrics(t *testing.T) {
	var none *Metrics // every method is a no-op on nil
	none.StreamOpened("sse")
	none.StreamClosed("sse")
	none.Delivered("sse", 1)
	none.eventsNumbered(nil, time.Now())
	none.eventsPublished(1)
	none.eventsReplayed(1)
	none.slowConsumer()
	none.DeliveriesOf("sse").Written([]*Message{latestEvent(1, 1, "x")}, time.Now())

	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.StreamOpened("sse")
	m.StreamOpened("sse")
	m.StreamClosed("sse")
	m.Delivered("ndjson", 3)
	// Two events written 2s and 30ms after their commit.
	now := time.Now()
	old, fresh := latestEvent(1, 1, "x"), latestEvent(2, 1, "x")
	old.ev.CreatedAt, fresh.ev.CreatedAt = now.Add(-2*time.Second), now.Add(-30*time.Millisecond)
	m.DeliveriesOf("websocket").Written([]*Message{old, fresh}, now)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				got[mf.GetName()+"/"+l.GetValue()] = metric.GetGauge().GetValue() + metric.GetCounter().GetValue() + float64(metric.GetHistogram().GetSampleCount())
				if h := metric.GetHistogram(); h != nil && l.GetValue() == "websocket" {
					for _, b := range h.GetBucket() {
						if b.GetUpperBound() >= 0.032 && b.GetUpperBound() < 0.064 && b.GetCumulativeCount() != 1 {
							t.Errorf("events of age at most %vs: %d, want 1 (the fresh one)", b.GetUpperBound(), b.GetCumulativeCount())
						}
					}
				}
			}
		}
	}
	for name, want := range map[string]float64{
		"batteryswap_stream_open/sse":                      1,
		"batteryswap_events_delivered_total/ndjson":        3,
		"batteryswap_stream_open/websocket":                0,
		"batteryswap_events_delivered_total/poll":          0,
		"batteryswap_events_delivered_total/websocket":     2,
		"batteryswap_event_delivery_age_seconds/websocket": 2,
		"batteryswap_event_delivery_age_seconds/sse":       0,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}
