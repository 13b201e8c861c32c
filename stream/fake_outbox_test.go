package stream

import (
	"context"
	"slices"
	"sync"
	"time"

	"batteryswap/models"
)

// fakeOutbox is an in-memory Outbox with the store's semantics: committed
// rows wait unsequenced until a relay lease's Pending numbers them in commit
// order; one lease at a time; the published mark survives leases; trimming
// only removes published events and records the highest one removed.
type fakeOutbox struct {
	wake  chan struct{}
	token chan struct{} // holds the lease while nobody has it

	mu        sync.Mutex
	waiting   []models.Event // committed, not sequenced yet
	events    []models.Event // sequenced, in Seq order
	last      int64
	published int64
	trimmed   int64
	leases    int
	lease     *fakeLease
	failReads error // EventsAfter fails with it while set
	failHead  error
	heads     int // Head calls
	reads     int // EventsAfter calls
	trims     []time.Time
}

func newFakeOutbox() *fakeOutbox {
	o := &fakeOutbox{wake: make(chan struct{}, 1), token: make(chan struct{}, 1)}
	o.token <- struct{}{}
	return o
}

// add commits one event on topic (as a store transaction would) and wakes
// the relay.
func (o *fakeOutbox) add(topic models.Topic) {
	o.addAt(topic, time.Now())
}

// addTyped commits one event of the given type on topic.
func (o *fakeOutbox) addTyped(topic models.Topic, typ string) {
	o.mu.Lock()
	o.waiting = append(o.waiting, models.Event{Type: typ, Topic: topic, CreatedAt: time.Now()})
	o.mu.Unlock()
}

func (o *fakeOutbox) addAt(topic models.Topic, at time.Time) {
	o.mu.Lock()
	o.waiting = append(o.waiting, models.Event{Type: models.EventInventoryUpdate, Topic: topic, CreatedAt: at})
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// sequenceLocked numbers the waiting events, as Pending does first.
func (o *fakeOutbox) sequenceLocked() {
	for _, ev := range o.waiting {
		o.last++
		ev.Seq = o.last
		ev.Payload = models.NewPayload(ev.Type, ev.CreatedAt, map[string]any{"seq": ev.Seq, "topic": ev.Topic})
		o.events = append(o.events, ev)
	}
	o.waiting = nil
}

// sequence numbers the waiting events without a relay and returns them, for
// tests that publish by hand.
func (o *fakeOutbox) sequence() []models.Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := len(o.events)
	o.sequenceLocked()
	return slices.Clone(o.events[n:])
}

func (o *fakeOutbox) setFailReads(err error) {
	o.mu.Lock()
	o.failReads = err
	o.mu.Unlock()
}

// calls returns how many times Head and EventsAfter were called.
func (o *fakeOutbox) calls() (heads, reads int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.heads, o.reads
}

func (o *fakeOutbox) state() (published, trimmed int64, leases int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.published, o.trimmed, o.leases
}

// loseLease makes the current lease's connection "die".
func (o *fakeOutbox) loseLease() {
	o.mu.Lock()
	l := o.lease
	o.mu.Unlock()
	l.lose()
}

func (o *fakeOutbox) EventsAfter(ctx context.Context, cursor int64, topics []models.Topic, limit int) ([]models.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reads++
	if o.failReads != nil {
		return nil, o.failReads
	}
	var out []models.Event
	for _, ev := range o.events {
		if ev.Seq <= cursor || !deliveredOn(ev.Topic, topics) {
			continue
		}
		if out = append(out, ev); len(out) == limit {
			break
		}
	}
	return out, nil
}

func deliveredOn(topic models.Topic, topics []models.Topic) bool {
	for _, ch := range topic.Channels() {
		if slices.Contains(topics, ch) {
			return true
		}
	}
	return false
}

func (o *fakeOutbox) Head(context.Context) (last, trimmed int64, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.heads++
	return o.last, o.trimmed, o.failHead
}

func (o *fakeOutbox) TrimBefore(_ context.Context, t time.Time) (int64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.trims = append(o.trims, t)
	kept := o.events[:0]
	var n int64
	for _, ev := range o.events {
		if ev.Seq <= o.published && ev.CreatedAt.Before(t) {
			o.trimmed = max(o.trimmed, ev.Seq)
			n++
			continue
		}
		kept = append(kept, ev)
	}
	o.events = kept
	return n, nil
}

func (o *fakeOutbox) Wakeups() <-chan struct{} { return o.wake }

func (o *fakeOutbox) AcquireRelay(ctx context.Context) (RelayLease, error) {
	select {
	case <-o.token:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.leases++
	o.lease = &fakeLease{o: o, lost: make(chan struct{})}
	return o.lease, nil
}

type fakeLease struct {
	o        *fakeOutbox
	lost     chan struct{}
	loseOnce sync.Once
	relOnce  sync.Once
	failNext error // the next Pending fails with it
}

func (l *fakeLease) lose() { l.loseOnce.Do(func() { close(l.lost) }) }

func (l *fakeLease) Pending(ctx context.Context, limit int) ([]models.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o := l.o
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := l.failNext; err != nil {
		l.failNext = nil
		return nil, err
	}
	o.sequenceLocked()
	var out []models.Event
	for _, ev := range o.events {
		if ev.Seq > o.published {
			if out = append(out, ev); len(out) == limit {
				break
			}
		}
	}
	return out, nil
}

func (l *fakeLease) MarkPublished(_ context.Context, seq int64) error {
	l.o.mu.Lock()
	defer l.o.mu.Unlock()
	l.o.published = max(l.o.published, seq)
	return nil
}

func (l *fakeLease) Lost() <-chan struct{} { return l.lost }

func (l *fakeLease) Release() error {
	l.relOnce.Do(func() { l.o.token <- struct{}{} })
	return nil
}

// msgSeqs lists the sequence numbers of messages, for comparisons.
func msgSeqs(ms []*Message) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq()
	}
	return out
}
