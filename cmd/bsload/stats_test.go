package main

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name  string
		given []time.Duration
		when  float64
		want  time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample is every percentile", []time.Duration{7}, 99, 7},
		{"p50 of 1..100 is 50", hundred, 50, 50 * time.Millisecond},
		{"p99 of 1..100 is 99", hundred, 99, 99 * time.Millisecond},
		{"p99.9 of 1..100 rounds up to the max", hundred, 99.9, 100 * time.Millisecond},
		{"p100 is the max", hundred, 100, 100 * time.Millisecond},
		{"p0 is the min", hundred, 0, time.Millisecond},
		{"p1 is the first rank", hundred, 1, time.Millisecond},
		{"nearest rank rounds up: p50 of 4 is the 2nd", []time.Duration{1, 2, 3, 4}, 50, 2},
		{"nearest rank rounds up: p51 of 4 is the 3rd", []time.Duration{1, 2, 3, 4}, 51, 3},
		{"p99 of 10 is the max", []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 99, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.given, tt.when); got != tt.want {
				t.Errorf("Percentile(p%v) = %v, want %v", tt.when, got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	given := []time.Duration{5, 1, 4, 2, 3}
	got := Summarize(given)
	want := Summary{N: 5, Min: 1, Mean: 3, P50: 3, P90: 5, P99: 5, Max: 5}
	if got != want {
		t.Errorf("Summarize = %+v, want %+v", got, want)
	}
	if given[0] != 1 || given[4] != 5 {
		t.Errorf("Summarize did not sort in place: %v", given)
	}
	if (Summarize(nil) != Summary{}) {
		t.Error("Summarize(nil) is not zero")
	}
}
