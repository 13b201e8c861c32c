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
	none.eventPublished(time.Second)
	none.eventsReplayed(1)
	none.slowConsumer()

	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.StreamOpened("sse")
	m.StreamOpened("sse")
	m.StreamClosed("sse")
	m.Delivered("ndjson", 3)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				got[mf.GetName()+"/"+l.GetValue()] = metric.GetGauge().GetValue() + metric.GetCounter().GetValue()
			}
		}
	}
	for name, want := range map[string]float64{
		"batteryswap_stream_open/sse":                  1,
		"batteryswap_events_delivered_total/ndjson":    3,
		"batteryswap_stream_open/websocket":            0,
		"batteryswap_events_delivered_total/poll":      0,
		"batteryswap_events_delivered_total/websocket": 0,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}
