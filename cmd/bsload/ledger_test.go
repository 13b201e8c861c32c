package main

import "testing"

func TestAccount(t *testing.T) {
	tests := []struct {
		name     string
		expected []int64
		got      []int64
		want     Tally
	}{
		{"perfect", []int64{3, 4, 7}, []int64{3, 4, 7}, Tally{Expected: 3, Received: 3}},
		{"nothing expected, nothing got", nil, nil, Tally{}},
		{"lost in the middle", []int64{3, 4, 7}, []int64{3, 7}, Tally{Expected: 3, Received: 2, Lost: 1}},
		{"lost everything", []int64{3, 4}, nil, Tally{Expected: 2, Lost: 2}},
		{"duplicate right after", []int64{3, 4}, []int64{3, 3, 4}, Tally{Expected: 2, Received: 3, Duplicated: 1}},
		{"duplicate later is not also out of order", []int64{3, 4, 5}, []int64{3, 4, 3, 5}, Tally{Expected: 3, Received: 4, Duplicated: 1}},
		{"swapped pair", []int64{3, 4, 5}, []int64{4, 3, 5}, Tally{Expected: 3, Received: 3, OutOfOrder: 1}},
		{"late arrival after a gap", []int64{1, 2, 3, 4}, []int64{1, 3, 4, 2}, Tally{Expected: 4, Received: 4, OutOfOrder: 1}},
		{"unexpected id", []int64{3, 4}, []int64{3, 99, 4}, Tally{Expected: 2, Received: 3, Unexpected: 1, OutOfOrder: 1}},
		{"unexpected id repeated is a duplicate", []int64{3}, []int64{3, 99, 99}, Tally{Expected: 1, Received: 3, Unexpected: 1, Duplicated: 1}},
		{"loss, duplicate and reorder together", []int64{1, 2, 3, 4, 5}, []int64{1, 1, 3, 2, 5}, Tally{Expected: 5, Received: 5, Lost: 1, Duplicated: 1, OutOfOrder: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Account(tt.expected, tt.got)
			if got != tt.want {
				t.Errorf("Account(%v, %v) = %+v, want %+v", tt.expected, tt.got, got, tt.want)
			}
			if wantOK := tt.want.Lost+tt.want.Duplicated+tt.want.OutOfOrder+tt.want.Unexpected == 0; got.OK() != wantOK {
				t.Errorf("OK() = %v, want %v", got.OK(), wantOK)
			}
		})
	}
}

func TestTallyAdd(t *testing.T) {
	a := Tally{Expected: 1, Received: 2, Lost: 3, Duplicated: 4, OutOfOrder: 5, Unexpected: 6}
	if got, want := a.Add(a), (Tally{2, 4, 6, 8, 10, 12}); got != want {
		t.Errorf("Add = %+v, want %+v", got, want)
	}
}
