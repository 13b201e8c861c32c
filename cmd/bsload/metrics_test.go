package main

import "testing"

func TestParseMetrics(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 10012
batteryswap_events_delivered_total{transport="sse"} 1.5e+06
batteryswap_stream_open{transport="a b"} 3 1700000000000
broken_line
`
	got := parseMetrics([]byte(text))
	want := map[string]float64{
		"go_goroutines": 10012,
		`batteryswap_events_delivered_total{transport="sse"}`: 1.5e6,
		`batteryswap_stream_open{transport="a b"}`:            3,
	}
	if len(got) != len(want) {
		t.Errorf("parseMetrics = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}
