package main

import (
	"testing"
	"time"
)

func TestOverlaps(t *testing.T) {
	at := func(s int) time.Time { return time.Date(2025, 1, 1, 0, 0, s, 0, time.UTC) }
	ptr := func(t time.Time) *time.Time { return &t }
	cancelled := func(id int64, from, to int) booking {
		return booking{ID: id, BatteryID: 1, Status: "cancelled", CreatedAt: at(from), CancelledAt: ptr(at(to))}
	}
	tests := []struct {
		name  string
		given []booking
		want  int
	}{
		{"back to back", []booking{cancelled(1, 0, 1), cancelled(2, 1, 2), cancelled(3, 2, 3)}, 0},
		{"listed out of order", []booking{cancelled(3, 2, 3), cancelled(1, 0, 1), cancelled(2, 1, 2)}, 0},
		{"overlap", []booking{cancelled(1, 0, 2), cancelled(2, 1, 3)}, 1},
		{"active then another", []booking{{ID: 1, BatteryID: 1, Status: "ready", CreatedAt: at(0)}, cancelled(2, 1, 2)}, 1},
		{"two active", []booking{{ID: 1, BatteryID: 1, Status: "ready", CreatedAt: at(0)}, {ID: 2, BatteryID: 1, Status: "confirmed", CreatedAt: at(1)}}, 1},
		{"collected then the next", []booking{{ID: 1, BatteryID: 1, Status: "collected", CreatedAt: at(0), CollectedAt: ptr(at(1))}, cancelled(2, 1, 2)}, 0},
		{"expired ends at its update", []booking{{ID: 1, BatteryID: 1, Status: "expired", CreatedAt: at(0), UpdatedAt: at(5)}, cancelled(2, 3, 6)}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := overlaps(map[int64][]booking{1: tt.given}); len(got) != tt.want {
				t.Errorf("overlaps = %q, want %d", got, tt.want)
			}
		})
	}
}
