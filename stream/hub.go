package stream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"batteryswap/models"
)

// Errors that end a Subscription. Both mean the client lost nothing: it
// reconnects and resumes with the id of the last event it received.
var (
	// ErrSlowConsumer ends a subscription whose queue filled up because its
	// reader did not keep up.
	ErrSlowConsumer = errors.New("stream: subscriber too slow, dropped")
	// ErrInterrupted ends a subscription when the hub could not read the
	// events its broker missed during a reconnect.
	ErrInterrupted = errors.New("stream: live delivery interrupted")
)

var errNotStarted = errors.New("stream: Next called before Start")

// HubOptions configure a Hub; zero values take the defaults.
type HubOptions struct {
	// QueueSize bounds each subscriber's queue of live events (default
	// 1024). A subscriber whose queue is full is dropped with ErrSlowConsumer.
	QueueSize int
	// ReplayBatch is how many events one Outbox read returns when a
	// subscriber resumes or the hub catches up (default 500).
	ReplayBatch int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics *Metrics
}

// Hub delivers events to this instance's subscribers: it joins the broker
// topics they follow, fans each event out to their bounded queues without
// ever blocking, and replays from the Outbox what a subscriber missed before
// it arrived or the broker missed while it reconnected.
//
// The Hub has no long-lived goroutines of its own, so there is nothing to
// run: events are dispatched on the broker's goroutine (helped, for a topic
// with many subscribers, by one short-lived goroutine per CPU), and each
// Subscription's reader reads its replay on its own goroutine. It is ready
// once NewHub returns. All methods are safe for concurrent use.
type Hub struct {
	broker    Broker
	outbox    Outbox
	queueSize int
	batch     int
	log       *slog.Logger
	metrics   *Metrics

	// ctx ends when the hub closes; it bounds the catch-up reads.
	ctx    context.Context
	cancel context.CancelFunc

	// seen is where a catch-up after a broker reconnect starts: every event
	// at or below it either reached the hub before the connection dropped
	// (the relay publishes in sequence order) or was sequenced before the
	// first subscriber arrived, so any subscriber's own replay covers it.
	seen   atomic.Int64
	primed atomic.Bool

	mu     sync.RWMutex
	topics map[models.Topic]map[*Subscription]struct{}
	subs   int
	closed bool
}

// NewHub returns a Hub that receives from b (it calls b.Start) and replays
// from o. Closing the Hub leaves b and o open; their owner closes them after.
func NewHub(b Broker, o Outbox, opts HubOptions) *Hub {
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		broker:    b,
		outbox:    o,
		queueSize: cmp.Or(opts.QueueSize, 1024),
		batch:     cmp.Or(opts.ReplayBatch, 500),
		log:       cmp.Or(opts.Logger, slog.Default()),
		metrics:   opts.Metrics,
		ctx:       ctx,
		cancel:    cancel,
		topics:    make(map[models.Topic]map[*Subscription]struct{}),
	}
	b.Start(feed{h})
	return h
}

// Subscribe registers a subscriber to topics: live events are queued for it
// from the moment it returns, and the broker subscription of every topic is
// active by then. The caller then calls Start once and reads with Next, and
// must Close the Subscription. Topics must be valid (invalid_request
// otherwise); duplicates are ignored. After Hub.Close it returns ErrClosed.
func (h *Hub) Subscribe(ctx context.Context, topics []models.Topic) (*Subscription, error) {
	topics, err := uniqueTopics(topics)
	if err != nil {
		return nil, err
	}
	if err := h.prime(ctx); err != nil {
		return nil, err
	}
	s := &Subscription{hub: h, topics: topics, wake: make(chan struct{}, 1)}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	for _, t := range topics {
		set := h.topics[t]
		if set == nil {
			set = make(map[*Subscription]struct{})
			h.topics[t] = set
		}
		set[s] = struct{}{}
	}
	s.registered = true
	h.subs++
	h.mu.Unlock()

	// Registered first, joined second: an event that arrives as soon as the
	// broker subscription is active already finds the subscriber.
	if err := h.broker.Subscribe(ctx, topics...); err != nil {
		s.Close()
		return nil, fmt.Errorf("stream: subscribe: %w", err)
	}
	h.mu.Lock()
	s.joined = s.registered
	joined := s.joined // read under the lock: Hub.Close may clear it
	h.mu.Unlock()
	if !joined { // the hub closed meanwhile
		h.broker.Unsubscribe(topics...)
		return nil, ErrClosed
	}
	return s, nil
}

// prime starts seen at the outbox head before the first subscriber arrives:
// every subscriber's replay reads past it, so a catch-up never needs to
// reach further back.
func (h *Hub) prime(ctx context.Context) error {
	if h.primed.Load() {
		return nil
	}
	last, _, err := h.outbox.Head(ctx)
	if err != nil {
		return fmt.Errorf("stream: outbox head: %w", err)
	}
	raise(&h.seen, last)
	h.primed.Store(true)
	return nil
}

// Head returns the outbox's last and trimmed sequence numbers (see
// Outbox.Head), to check a cursor before resuming from it.
func (h *Hub) Head(ctx context.Context) (last, trimmed int64, err error) {
	return h.outbox.Head(ctx)
}

// Subscribers returns how many subscriptions are registered.
func (h *Hub) Subscribers() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.subs
}

// Close ends every subscription with ErrClosed and refuses new ones. It is
// idempotent.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	var joined []*Subscription
	var all []*Subscription
	for _, set := range h.topics {
		for s := range set {
			if !s.registered {
				continue // met already under another topic
			}
			if h.detachLocked(s) {
				joined = append(joined, s)
			}
			all = append(all, s)
		}
	}
	h.mu.Unlock()
	h.cancel()
	for _, s := range all {
		s.fail(ErrClosed)
	}
	for _, s := range joined {
		h.broker.Unsubscribe(s.topics...)
	}
}

// detachLocked removes s from the hub and reports whether it had joined the
// broker, which the caller must then leave outside the lock. h.mu is held.
func (h *Hub) detachLocked(s *Subscription) (joined bool) {
	if !s.registered {
		return false
	}
	for _, t := range s.topics {
		if set := h.topics[t]; set != nil {
			if delete(set, s); len(set) == 0 {
				delete(h.topics, t)
			}
		}
	}
	s.registered = false
	h.subs--
	joined, s.joined = s.joined, false
	return joined
}

// parallelOffers is the smallest share of a topic's subscribers worth a
// goroutine of its own in dispatch.
const parallelOffers = 512

// dispatch offers m to every subscriber of topic; it never blocks on one.
// An offer may write to a subscriber's socket (EnableDirect), a system
// call, so a large set is offered by one goroutine per CPU. The read lock
// is held until every offer is made, so Subscribe's promise holds: a
// subscriber registered before the event arrived is offered it.
func (h *Hub) dispatch(topic models.Topic, m *Message) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	set := h.topics[topic]
	workers := min(runtime.GOMAXPROCS(0), len(set)/parallelOffers)
	if workers < 2 {
		for s := range set {
			h.offer(s, m)
		}
		return
	}
	p := offerLists.Get().(*[]*Subscription)
	subs := (*p)[:0]
	for s := range set {
		subs = append(subs, s)
	}
	chunk := (len(subs) + workers - 1) / workers
	var wg sync.WaitGroup
	for i := 0; i < len(subs); i += chunk {
		part := subs[i:min(i+chunk, len(subs))]
		wg.Go(func() {
			for _, s := range part {
				h.offer(s, m)
			}
		})
	}
	wg.Wait()
	clear(subs)
	*p = subs
	offerLists.Put(p)
}

// offerLists recycles dispatch's lists of subscribers.
var offerLists = sync.Pool{New: func() any { return new([]*Subscription) }}

func (h *Hub) offer(s *Subscription, m *Message) {
	if s.offer(m, h.queueSize) {
		h.metrics.slowConsumer()
	}
}

// catchUp reads from the outbox what the broker may have missed while it
// was disconnected and dispatches it; subscribers drop what they already
// have. It runs on the broker's goroutine, before the broker delivers
// anything newer, so the queues stay in sequence order.
func (h *Hub) catchUp() {
	h.mu.RLock()
	topics := make([]models.Topic, 0, len(h.topics))
	for t := range h.topics {
		topics = append(topics, t)
	}
	h.mu.RUnlock()
	if len(topics) == 0 {
		return
	}
	from := h.seen.Load()
	for {
		evs, err := h.outbox.EventsAfter(h.ctx, from, topics, h.batch)
		if err != nil {
			if h.ctx.Err() == nil {
				h.log.Error("stream: catch-up after broker reconnect failed; subscribers must resume", "after", from, "err", err)
				h.interruptAll()
			}
			return
		}
		h.metrics.eventsReplayed(len(evs))
		for i := range evs {
			m := NewMessage(&evs[i])
			for _, t := range evs[i].Topic.Channels() {
				h.dispatch(t, m)
			}
			from = evs[i].Seq
		}
		raise(&h.seen, from)
		if len(evs) < h.batch {
			return
		}
	}
}

// interruptAll ends every subscription with ErrInterrupted: after a failed
// catch-up their queues may have a gap, and resuming closes it.
func (h *Hub) interruptAll() {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, set := range h.topics {
		for s := range set {
			s.fail(ErrInterrupted)
		}
	}
}

// feed is the Hub's Handler, kept off the Hub's own method set.
type feed struct{ h *Hub }

// Deliver implements Handler.
func (f feed) Deliver(topic models.Topic, m *Message) {
	f.h.dispatch(topic, m)
	raise(&f.h.seen, m.Seq())
}

// Resync implements Handler.
func (f feed) Resync() { f.h.catchUp() }

// Subscription is one subscriber's feed of events: first the history after
// its cursor, read from the Outbox, then live events, each exactly once and
// in sequence order. Start, Next, TryNext and Poll belong to one reader
// goroutine; Close, Ready and OnEnd may be called from any goroutine.
type Subscription struct {
	hub    *Hub
	topics []models.Topic
	wake   chan struct{} // capacity 1: "the queue or err changed"

	// Guarded by hub.mu.
	registered bool // in hub.topics
	joined     bool // holds a broker subscription of topics

	mu    sync.Mutex
	q     ring  // live events, in sequence order
	high  int64 // highest Seq ever queued or sent directly, to drop copies from a second channel or a re-publish
	err   error
	onEnd func(error) // run once when err is set (see OnEnd)
	// direct, when not nil, is offered each live event before it would be
	// queued (see EnableDirect); it is only set while q is empty.
	direct DirectFunc

	// Owned by the reader.
	started  bool
	last     int64 // Seq of the last event returned: the client's cursor
	live     bool  // replay finished
	page     []models.Event
	pos      int
	lastPage bool
}

// Start begins delivery after cursor (0: from the first retained event).
// It is called once, after Subscribe and before Next. It does not block:
// Next reads the history in pages of ReplayBatch events. A fresh client
// without a cursor starts from Head's last, read before its snapshot is
// built, so that nothing committed in between is missed.
func (s *Subscription) Start(cursor int64) {
	s.started, s.last = true, cursor
	s.live, s.page, s.pos, s.lastPage = false, nil, 0, false
}

// Next returns the next event, blocking until there is one. It returns
// ErrSlowConsumer if the subscriber was dropped, ErrInterrupted if the hub
// lost track of live events, ErrClosed once the subscription or the hub is
// closed, ctx.Err() when ctx ends, or an error reading the history.
func (s *Subscription) Next(ctx context.Context) (*Message, error) {
	for {
		m, err := s.poll(ctx, true)
		if m != nil || err != nil {
			return m, err
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// TryNext returns the next event if one is ready without waiting or reading
// the outbox, so a writer can send what is queued and flush once. When it
// returns false, Next tells what comes next (an event or an error).
func (s *Subscription) TryNext() (*Message, bool) {
	m, _ := s.poll(context.Background(), false)
	return m, m != nil
}

// Poll is Next without the wait, for a reader that waits on Ready together
// with its own timers instead of a context per call: it returns the next
// event if one is ready, reading a page of the history with ctx while the
// replay needs one; the error that ended the subscription (as Next does);
// or nil, nil when nothing is ready yet. The same guarantee holds: the
// history after the cursor, then live events, each exactly once and in
// order, whichever of Next, TryNext and Poll the reader mixes.
func (s *Subscription) Poll(ctx context.Context) (*Message, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	return s.poll(ctx, true)
}

// Ready receives after an event was queued or the subscription ended. It
// does not say that Poll has an event: a reader loops "Poll until nil, then
// wait on Ready". A signal sent while nobody waits is kept (one), so none is
// lost between a Poll that returned nil and the wait.
func (s *Subscription) Ready() <-chan struct{} { return s.wake }

// DirectFunc sends a live event to the subscriber's client at once, on the
// goroutine that dispatches it, instead of queuing it for the reader (see
// Subscription.EnableDirect). It must never block and must not call the
// Subscription or the Hub: it runs with the hub's read lock and the
// subscription's lock held, while the other subscribers wait their turn
// (those of other subscriptions may run at the same time). It reports
// whether it sent m (wrote it, or took it to finish writing later) and
// whether it can take more. If it did not send m, m is queued as if there
// were no DirectFunc, and the dispatcher stops calling it.
type DirectFunc func(m *Message) (sent, more bool)

// EnableDirect lets the dispatcher send live events through f while the
// queue is empty, sparing the reader a wake-up per event. The reader calls
// it once it has written everything it has taken (Poll returned nil). It
// reports false, changing nothing, while the replay is not finished, an
// event is queued, or the subscription has ended. Direct sending stops when
// f does not send an event or says it takes no more: that event and the
// following ones are queued, and Ready fires, until the reader enables it
// again. Events keep their order and are sent once either way, and a
// subscriber whose f keeps refusing fills its queue and is dropped with
// ErrSlowConsumer as usual.
func (s *Subscription) EnableDirect(f DirectFunc) bool {
	if !s.started || !s.live {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || s.q.n > 0 {
		return false
	}
	// The queue's copies of replayed events are dropped by poll, which
	// compares with last; f gets no such check, so offer must drop them:
	// the relay may publish an event after a resuming reader has read it
	// from the outbox.
	s.high = max(s.high, s.last)
	s.direct = f
	return true
}

// OnEnd arranges for f to run once when the subscription ends, with the
// error Next then returns: ErrSlowConsumer for a full queue,
// ErrInterrupted, or ErrClosed (Close, or Hub.Close).
// It lets the reader's owner wake a reader that is blocked elsewhere, on a
// socket write, since that reader cannot watch Ready meanwhile. f runs on
// the goroutine that ends the subscription, which may be the broker's
// dispatching goroutine while it holds the hub's lock: it must return at
// once and must not call the Subscription or the Hub. If the subscription
// has already ended, f runs before OnEnd returns. A later call replaces an
// earlier f that has not run.
func (s *Subscription) OnEnd(f func(err error)) {
	s.mu.Lock()
	err := s.err
	if err == nil {
		s.onEnd = f
	}
	s.mu.Unlock()
	if err != nil {
		f(err)
	}
}

// poll returns the next event if it is ready, or nil. Only with history set
// does it read a page of history from the outbox (with ctx).
func (s *Subscription) poll(ctx context.Context, history bool) (*Message, error) {
	if !s.started {
		return nil, errNotStarted
	}
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	for !s.live {
		if s.pos < len(s.page) {
			ev := &s.page[s.pos]
			s.pos++
			s.last = ev.Seq
			return NewMessage(ev), nil
		}
		if s.lastPage {
			s.live, s.page = true, nil
			break
		}
		if !history {
			return nil, nil
		}
		h := s.hub
		evs, err := h.outbox.EventsAfter(ctx, s.last, s.topics, h.batch)
		if err != nil {
			return nil, fmt.Errorf("stream: replay after %d: %w", s.last, err)
		}
		h.metrics.eventsReplayed(len(evs))
		s.page, s.pos, s.lastPage = evs, 0, len(evs) < h.batch
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for m := s.q.pop(); m != nil; m = s.q.pop() {
		// Live events queued during the replay, or again after a catch-up,
		// may already have been returned.
		if m.Seq() > s.last {
			s.last = m.Seq()
			return m, nil
		}
	}
	return nil, nil
}

// Close ends the subscription and releases its queue and, with the last
// local subscriber of a topic, the broker subscription. It is idempotent.
func (s *Subscription) Close() {
	h := s.hub
	h.mu.Lock()
	joined := h.detachLocked(s)
	h.mu.Unlock()
	s.fail(ErrClosed)
	if joined {
		h.broker.Unsubscribe(s.topics...)
	}
}

// offer queues m unless the subscriber has it or is done; it reports
// whether this dropped the subscriber for a full queue.
func (s *Subscription) offer(m *Message, limit int) (dropped bool) {
	s.mu.Lock()
	if s.err != nil || m.Seq() <= s.high {
		s.mu.Unlock()
		return false
	}
	if s.direct != nil {
		// The queue is empty and the reader has returned every event
		// before m, so writing m now keeps the order.
		sent, more := s.direct(m)
		if sent {
			s.high = m.Seq()
		}
		if !sent || !more {
			s.direct = nil // back to the queue, until the reader enables it again
			s.signal()
		}
		if sent {
			s.mu.Unlock()
			return false
		}
	}
	if s.q.n >= limit {
		s.endLocked(ErrSlowConsumer)
		return true
	}
	s.q.push(m)
	s.high = m.Seq()
	s.signal()
	s.mu.Unlock()
	return false
}

// fail ends the subscription with err unless it has ended already.
func (s *Subscription) fail(err error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.endLocked(err)
}

// endLocked sets err, drops the queue, wakes the reader, unlocks s.mu and
// then runs the OnEnd function, outside the lock.
func (s *Subscription) endLocked(err error) {
	s.err, s.q, s.direct = err, ring{}, nil
	s.signal()
	f := s.onEnd
	s.onEnd = nil
	s.mu.Unlock()
	if f != nil {
		f(err)
	}
}

func (s *Subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// ring is a FIFO of messages that grows on demand, so an idle subscriber
// costs no queue memory, and gives a large buffer back once it drains.
type ring struct {
	buf     []*Message
	head, n int
}

func (r *ring) push(m *Message) {
	if r.n == len(r.buf) {
		buf := make([]*Message, max(2*len(r.buf), 8))
		for i := range r.n {
			buf[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = buf, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = m
	r.n++
}

func (r *ring) pop() *Message {
	if r.n == 0 {
		return nil
	}
	m := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	if r.n--; r.n == 0 {
		r.head = 0
		if len(r.buf) > 64 {
			r.buf = nil
		}
	}
	return m
}

func uniqueTopics(topics []models.Topic) ([]models.Topic, error) {
	if len(topics) == 0 {
		return nil, models.Errorf(models.CodeInvalidRequest, "no topic to follow")
	}
	out := make([]models.Topic, 0, len(topics))
	for _, t := range topics {
		if !t.Valid() {
			return nil, models.Errorf(models.CodeInvalidRequest, "unknown topic %q", string(t))
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// raise sets v to n if n is higher.
func raise(v *atomic.Int64, n int64) {
	for {
		old := v.Load()
		if n <= old || v.CompareAndSwap(old, n) {
			return
		}
	}
}
