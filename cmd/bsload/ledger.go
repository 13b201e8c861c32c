package main

import "slices"

// Tally is one subscriber's delivery accounting against the ids the writer
// produced.
type Tally struct {
	// Expected is how many ids the subscriber should have received.
	Expected int
	// Received is how many receipts were considered.
	Received int
	// Lost counts expected ids never received.
	Lost int
	// Duplicated counts receipts of an id received before.
	Duplicated int
	// OutOfOrder counts first receipts of an id lower than an id received
	// before it.
	OutOfOrder int
	// Unexpected counts receipts of ids the writer never produced.
	Unexpected int
}

// OK reports whether every expected id arrived exactly once, in order, and
// nothing else did.
func (t Tally) OK() bool {
	return t.Lost == 0 && t.Duplicated == 0 && t.OutOfOrder == 0 && t.Unexpected == 0
}

// Add sums two tallies.
func (t Tally) Add(u Tally) Tally {
	return Tally{
		Expected:   t.Expected + u.Expected,
		Received:   t.Received + u.Received,
		Lost:       t.Lost + u.Lost,
		Duplicated: t.Duplicated + u.Duplicated,
		OutOfOrder: t.OutOfOrder + u.OutOfOrder,
		Unexpected: t.Unexpected + u.Unexpected,
	}
}

// Account compares the ids one subscriber received, in arrival order, with
// the ids it should have received. expected must be sorted ascending without
// repeats (the event ids of the topic, which the server sends in ascending
// order).
func Account(expected, got []int64) Tally {
	t := Tally{Expected: len(expected), Received: len(got)}
	seen := make([]bool, len(expected))
	var unexpectedSeen map[int64]bool
	var high int64
	first := true
	for _, id := range got {
		i, ok := slices.BinarySearch(expected, id)
		if !ok {
			if unexpectedSeen[id] {
				t.Duplicated++
				continue
			}
			if unexpectedSeen == nil {
				unexpectedSeen = map[int64]bool{}
			}
			unexpectedSeen[id] = true
			t.Unexpected++
		} else if seen[i] {
			t.Duplicated++
			continue
		} else {
			seen[i] = true
		}
		if !first && id < high {
			t.OutOfOrder++
		}
		if first || id > high {
			high, first = id, false
		}
	}
	for _, s := range seen {
		if !s {
			t.Lost++
		}
	}
	return t
}
