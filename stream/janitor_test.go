package stream

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"batteryswap/models"
)

// The janitor trims at once and then every interval, cutting at its time
// minus the retention.
func TestRunJanitor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newFakeOutbox()
		start := time.Now()
		for _, age := range []time.Duration{3 * time.Hour, 30 * time.Minute, 0} {
			o.addAt(models.StationTopic(1), start.Add(-age))
		}
		o.sequence()
		o.mu.Lock()
		o.published = 3
		o.mu.Unlock()

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			RunJanitor(ctx, o, time.Hour, 10*time.Minute, nil)
		}()
		t.Cleanup(func() { cancel(); <-done })
		synctest.Wait()
		check := func(trims int, trimmed int64) {
			t.Helper()
			o.mu.Lock()
			defer o.mu.Unlock()
			if len(o.trims) != trims || o.trimmed != trimmed {
				t.Fatalf("%d trims up to seq %d, want %d up to %d", len(o.trims), o.trimmed, trims, trimmed)
			}
			for i, cut := range o.trims {
				if want := start.Add(time.Duration(i)*10*time.Minute - time.Hour); !cut.Equal(want) {
					t.Fatalf("trim %d cut at %v, want %v (its time minus the retention)", i, cut, want)
				}
			}
		}
		check(1, 1) // at once: the 3h old event
		time.Sleep(35 * time.Minute)
		synctest.Wait()
		check(4, 1) // every 10 minutes; the 30 min old one is 60 min old now
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		check(5, 2)
	})
}
