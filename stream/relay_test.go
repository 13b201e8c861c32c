package stream

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"batteryswap/models"
)

// flakyBroker records what it published and fails on demand.
type flakyBroker struct {
	*MemoryBroker
	mu        sync.Mutex
	published []int64
	batches   [][]int64
	failures  int   // the next failures publishes fail
	failSeq   int64 // publishing a batch with this seq fails, once
}

var errBrokerDown = errors.New("broker down")

func (b *flakyBroker) Publish(ctx context.Context, evs []models.Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var seqs []int64
	for _, ev := range evs {
		seqs = append(seqs, ev.Seq)
	}
	if b.failures > 0 || slices.Contains(seqs, b.failSeq) {
		b.failures, b.failSeq = max(b.failures-1, 0), 0
		return errBrokerDown
	}
	b.published = append(b.published, seqs...)
	b.batches = append(b.batches, seqs)
	return b.MemoryBroker.Publish(ctx, evs)
}

func (b *flakyBroker) state() []int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.published)
}

// startRelays runs n relays on o and b until the test ends.
func startRelays(t *testing.T, o Outbox, b Broker, n int, m *Metrics) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if err := NewRelay(o, b, RelayOptions{Batch: 4, Metrics: m}).Run(ctx); err != nil {
				t.Errorf("Run = %v, want nil at shutdown", err)
			}
		})
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// addEvents commits n events in one go, as concurrent transactions would
// between two relay flushes, and wakes the relay.
func addEvents(o *fakeOutbox, n int) {
	o.mu.Lock()
	for i := range n {
		o.waiting = append(o.waiting, models.Event{Type: models.EventInventoryUpdate, Topic: models.StationTopic(int64(i%2 + 1)), CreatedAt: time.Now()})
	}
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func wantPublished(t *testing.T, o *fakeOutbox, b *flakyBroker, want []int64, mark int64) {
	t.Helper()
	if got := b.state(); !slices.Equal(got, want) {
		t.Errorf("broker got %v, want %v", got, want)
	}
	if published, _, _ := o.state(); published != mark {
		t.Errorf("outbox marked published up to %d, want %d", published, mark)
	}
}

func seqRange(from, to int64) []int64 {
	var s []int64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func TestRelayPublishesInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		o, b := newFakeOutbox(), &flakyBroker{MemoryBroker: NewMemoryBroker()}
		startRelays(t, o, b, 1, NewMetrics(reg))
		addEvents(o, 10) // more than a batch
		synctest.Wait()
		wantPublished(t, o, b, seqRange(1, 10), 10)
		// One flush, one batch: at most RelayOptions.Batch events, in order.
		b.mu.Lock()
		for _, batch := range b.batches {
			if len(batch) > 4 || !slices.IsSorted(batch) {
				t.Errorf("published batch %v: want at most 4 events, in order", batch)
			}
		}
		b.mu.Unlock()
		if got := counterValue(t, reg, "batteryswap_events_published_total"); got != 10 {
			t.Errorf("events published = %v, want 10", got)
		}
		if got := counterValue(t, reg, "batteryswap_relay_lag_seconds"); got != 10 {
			t.Errorf("relay lag observations = %v, want 10", got)
		}
	})
}

// Without a wakeup (another instance committed; no NOTIFY), the poll still
// publishes.
func TestRelayPolls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o, b := newFakeOutbox(), &flakyBroker{MemoryBroker: NewMemoryBroker()}
		startRelays(t, o, b, 1, nil)
		synctest.Wait()
		o.mu.Lock()
		o.waiting = append(o.waiting, models.Event{Type: models.EventInventoryUpdate, Topic: models.StationTopic(1), CreatedAt: time.Now()})
		o.mu.Unlock()
		synctest.Wait()
		wantPublished(t, o, b, nil, 0)
		time.Sleep(time.Second)
		synctest.Wait()
		wantPublished(t, o, b, []int64{1}, 1)
	})
}

// A failed publish is retried after a backoff, from the first event not
// published, without marking or skipping anything.
func TestRelayRetriesAfterBrokerFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o, b := newFakeOutbox(), &flakyBroker{MemoryBroker: NewMemoryBroker()}
		startRelays(t, o, b, 1, nil)

		b.mu.Lock()
		b.failures = 3
		b.mu.Unlock()
		addEvents(o, 3)
		synctest.Wait()
		wantPublished(t, o, b, nil, 0) // backing off
		time.Sleep(time.Second)
		synctest.Wait()
		wantPublished(t, o, b, seqRange(1, 3), 3)

		b.mu.Lock()
		b.failSeq = 6
		b.mu.Unlock()
		addEvents(o, 4) // 4..7, one batch: 6 fails it once, all of it
		synctest.Wait()
		wantPublished(t, o, b, seqRange(1, 3), 3)
		time.Sleep(time.Second)
		synctest.Wait()
		wantPublished(t, o, b, seqRange(1, 7), 7)

		o.mu.Lock()
		o.lease.failNext = errors.New("database is down")
		o.mu.Unlock()
		addEvents(o, 1)
		synctest.Wait()
		wantPublished(t, o, b, seqRange(1, 7), 7)
		time.Sleep(time.Second)
		synctest.Wait()
		wantPublished(t, o, b, seqRange(1, 8), 8)
	})
}

// Two relays share the outbox: one works at a time, and when its lease is
// lost a new lease continues the same sequence.
func TestRelayLostLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o, b := newFakeOutbox(), &flakyBroker{MemoryBroker: NewMemoryBroker()}
		startRelays(t, o, b, 2, nil)
		addEvents(o, 3)
		synctest.Wait()
		wantPublished(t, o, b, seqRange(1, 3), 3)

		o.loseLease()
		synctest.Wait()
		if _, _, leases := o.state(); leases != 2 {
			t.Fatalf("%d leases handed out, want 2", leases)
		}
		addEvents(o, 3)
		synctest.Wait()
		wantPublished(t, o, b, seqRange(1, 6), 6)
	})
}
