package stream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

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

// hubShards is how many parts the topic table is cut into: subscribers of
// different topics register without meeting on one lock.
const hubShards = 64

// Hub delivers events to this instance's subscribers: it joins the broker
// topics they follow, hands each delivered run to their bounded queues
// without ever blocking, and replays from the Outbox what a subscriber
// missed before it arrived or the broker missed while it reconnected.
//
// Fan-out holds no lock while it offers: each topic's subscribers are a
// copy-on-write list that the dispatching goroutine reads as it was when
// the run arrived, so a Subscribe never waits for a fan-out, and the
// writes to clients happen on the subscribers' own goroutines (see
// Subscription.Next), spread over every core. The Hub has no goroutines of
// its own: it dispatches on the broker's goroutine. All methods are safe
// for concurrent use.
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

	// seen is the highest sequence number delivered to the hub, raised
	// before the run is offered to anyone; before the first delivery, the
	// outbox head read when the first subscriber arrived. A subscriber
	// registered before a run is offered gets it live; one registered
	// after reads a seen at or above it. So seen, read after registering,
	// is a cursor a fresh subscriber may start from (Subscription.Head).
	// It is also where a catch-up after a broker reconnect starts.
	seen   atomic.Int64
	primed atomic.Bool
	// floor is the highest outbox head read for a topic's first
	// subscriber: heads never go below it, since that subscriber already
	// started there (its snapshot holds every event up to it). Unlike seen
	// it may pass events still on their way to the hub, so a catch-up
	// never starts from it.
	floor atomic.Int64
	// gens numbers the topics' broker memberships (topicSubs.gen).
	gens atomic.Uint64

	// life orders Subscribe's registration against Close: registrations
	// hold it shared, Close exclusively.
	life   sync.RWMutex
	closed bool

	seed   maphash.Seed
	shards [hubShards]shard
	subs   atomic.Int64
}

type shard struct {
	mu     sync.Mutex
	topics map[models.Topic]*topicSubs
}

// topicSubs are one topic's local subscribers.
type topicSubs struct {
	// list is read without a lock by dispatch. Registration appends in
	// place while the capacity lasts (readers of an older length never
	// look past it) and a removal publishes a fresh copy.
	list atomic.Pointer[[]*Subscription]
	// Guarded by the shard's mu: how many subscribers hold a broker
	// subscription of the topic, and which membership that is: gen
	// changes whenever joined rises from zero, so two subscribers that read
	// the same gen were both covered by one unbroken broker subscription.
	joined int
	gen    uint64
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
		seed:      maphash.MakeSeed(),
	}
	for i := range h.shards {
		h.shards[i].topics = make(map[models.Topic]*topicSubs)
	}
	b.Start(feed{h})
	return h
}

func (h *Hub) shardOf(t models.Topic) *shard {
	return &h.shards[maphash.String(h.seed, string(t))%hubShards]
}

// Delivery is how a subscriber that falls behind is served.
type Delivery int

const (
	// DeliverAll delivers every event; a subscriber whose queue fills up is
	// dropped with ErrSlowConsumer (it resumes with its cursor).
	DeliverAll Delivery = iota
	// DeliverLatest is for station topics only: a subscriber whose queue
	// fills up is never dropped; its pending events are merged instead to
	// the newest inventory_update and station_status per station (see
	// MergeLatest), so its queue is bounded by the stations it follows.
	DeliverLatest
)

// Subscribe registers a subscriber to topics: live events are queued for it
// from the moment it returns, and the broker subscription of every topic is
// active by then. The caller then calls Start or StartAtHead once, reads
// with Next, and must Close the Subscription. Topics must be valid
// (invalid_request otherwise), and station topics for DeliverLatest;
// duplicates are ignored. After Hub.Close it returns ErrClosed.
func (h *Hub) Subscribe(ctx context.Context, topics []models.Topic, delivery Delivery) (*Subscription, error) {
	topics, err := uniqueTopics(topics)
	if err != nil {
		return nil, err
	}
	if delivery == DeliverLatest {
		for _, t := range topics {
			if _, ok := t.StationID(); !ok && t != models.TopicStations {
				return nil, models.Errorf(models.CodeInvalidRequest, "latest delivery is for station topics only, not %q", string(t))
			}
		}
	}
	if err := h.prime(ctx); err != nil {
		return nil, err
	}
	s := &Subscription{hub: h, topics: topics, wake: make(chan struct{}, 1), latest: delivery == DeliverLatest, mergeAt: h.queueSize}
	if !h.register(s) {
		return nil, ErrClosed
	}
	// Registered first, joined second: an event that arrives as soon as the
	// broker subscription is active already finds the subscriber.
	if err := h.broker.Subscribe(ctx, topics...); err != nil {
		s.Close()
		return nil, fmt.Errorf("stream: subscribe: %w", err)
	}
	gen, fresh, ok := h.join(s)
	if !ok { // closed meanwhile
		h.broker.Unsubscribe(topics...)
		return nil, ErrClosed
	}
	if fresh {
		// Nobody here followed a topic until now, so seen says nothing of
		// it: its events before this moment were never delivered to the
		// hub. The outbox head, read now that the broker subscription is
		// active, is a cursor after which every event arrives live.
		last, _, err := h.outbox.Head(ctx)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("stream: outbox head: %w", err)
		}
		raise(&h.floor, last)
	}
	s.head = Head{Seq: max(h.seen.Load(), h.floor.Load()), Epoch: gen}
	return s, nil
}

// prime starts seen at the outbox head before the first subscriber arrives:
// every subscriber's replay reads past it, so a catch-up never needs to
// reach further back, and fresh subscribers get a cursor that is current.
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

// register adds s to the list of each of its topics, unless the hub is
// closed.
func (h *Hub) register(s *Subscription) bool {
	h.life.RLock()
	defer h.life.RUnlock()
	if h.closed {
		return false
	}
	s.life.Lock()
	defer s.life.Unlock()
	for _, t := range s.topics {
		sh := h.shardOf(t)
		sh.mu.Lock()
		ts := sh.topics[t]
		if ts == nil {
			ts = &topicSubs{}
			ts.list.Store(new([]*Subscription))
			sh.topics[t] = ts
		}
		list := append(*ts.list.Load(), s)
		ts.list.Store(&list)
		sh.mu.Unlock()
	}
	s.registered = true
	h.subs.Add(1)
	return true
}

// join records that s holds a broker subscription of its topics, unless it
// was closed meanwhile, and returns the membership generation of its topic
// (0 for several topics: see Head.Epoch) and whether it is the first
// member of any of them.
func (h *Hub) join(s *Subscription) (gen uint64, fresh, ok bool) {
	s.life.Lock()
	defer s.life.Unlock()
	if !s.registered {
		return 0, false, false
	}
	for _, t := range s.topics {
		sh := h.shardOf(t)
		sh.mu.Lock()
		ts := sh.topics[t]
		if ts.joined++; ts.joined == 1 {
			ts.gen = h.gens.Add(1)
			fresh = true
		}
		gen = ts.gen
		sh.mu.Unlock()
	}
	s.joined = true
	if len(s.topics) > 1 {
		gen = 0
	}
	return gen, fresh, true
}

// leave removes s from its topics and reports whether it held a broker
// subscription, which the caller must then give up.
func (h *Hub) leave(s *Subscription) (joined bool) {
	s.life.Lock()
	defer s.life.Unlock()
	if !s.registered {
		return false
	}
	for _, t := range s.topics {
		sh := h.shardOf(t)
		sh.mu.Lock()
		ts := sh.topics[t]
		old := *ts.list.Load()
		list := make([]*Subscription, 0, len(old))
		for _, o := range old {
			if o != s {
				list = append(list, o)
			}
		}
		ts.list.Store(&list)
		if s.joined {
			ts.joined--
		}
		if len(list) == 0 {
			delete(sh.topics, t)
		}
		sh.mu.Unlock()
	}
	joined = s.joined
	s.registered, s.joined = false, false
	h.subs.Add(-1)
	return joined
}

// Bounds returns the outbox's last and trimmed sequence numbers (see
// Outbox.Head), to check a client's cursor before resuming from it.
func (h *Hub) Bounds(ctx context.Context) (last, trimmed int64, err error) {
	return h.outbox.Head(ctx)
}

// Subscribers returns how many subscriptions are registered.
func (h *Hub) Subscribers() int { return int(h.subs.Load()) }

// Close ends every subscription with ErrClosed and refuses new ones. It is
// idempotent.
func (h *Hub) Close() {
	h.life.Lock()
	if h.closed {
		h.life.Unlock()
		return
	}
	h.closed = true
	all := h.all()
	h.life.Unlock()
	h.cancel()
	for _, s := range all {
		s.Close()
	}
}

// all returns every registered subscription once.
func (h *Hub) all() []*Subscription {
	set := make(map[*Subscription]struct{})
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for _, ts := range sh.topics {
			for _, s := range *ts.list.Load() {
				set[s] = struct{}{}
			}
		}
		sh.mu.Unlock()
	}
	out := make([]*Subscription, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	return out
}

// dispatch offers msgs to every subscriber of topic; it never blocks on
// one, and holds no lock while it offers.
func (h *Hub) dispatch(topic models.Topic, msgs []*Message) {
	sh := h.shardOf(topic)
	sh.mu.Lock()
	ts := sh.topics[topic]
	sh.mu.Unlock()
	if ts == nil {
		return
	}
	for _, s := range *ts.list.Load() {
		if s.offer(msgs, h.queueSize) {
			h.metrics.slowConsumer()
		}
	}
}

// catchUp reads from the outbox what the broker may have missed while it
// was disconnected and dispatches it; subscribers drop what they already
// have. It runs on the broker's goroutine, before the broker delivers
// anything newer, so the queues stay in sequence order.
func (h *Hub) catchUp() {
	var topics []models.Topic
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for t := range sh.topics {
			topics = append(topics, t)
		}
		sh.mu.Unlock()
	}
	if len(topics) == 0 {
		return
	}
	from := h.seen.Load()
	for {
		evs, err := h.outbox.EventsAfter(h.ctx, from, topics, h.batch)
		if err != nil {
			if h.ctx.Err() == nil {
				h.log.Error("stream: catch-up after broker reconnect failed; subscribers must resume", "after", from, "err", err)
				for _, s := range h.all() {
					s.fail(ErrInterrupted)
				}
			}
			return
		}
		h.metrics.eventsReplayed(len(evs))
		if len(evs) > 0 {
			from = evs[len(evs)-1].Seq
			raise(&h.seen, from)
			runs(evs, func(run []models.Event) {
				msgs := messagesOf(run)
				for _, t := range run[0].Topic.Channels() {
					h.dispatch(t, msgs)
				}
			})
		}
		if len(evs) < h.batch {
			return
		}
	}
}

// feed is the Hub's Handler, kept off the Hub's own method set.
type feed struct{ h *Hub }

// Deliver implements Handler.
func (f feed) Deliver(topic models.Topic, msgs []*Message) {
	if len(msgs) == 0 {
		return
	}
	// Raised before anyone is offered the run: see Hub.seen.
	raise(&f.h.seen, msgs[len(msgs)-1].Seq())
	f.h.dispatch(topic, msgs)
}

// Resync implements Handler.
func (f feed) Resync() { f.h.catchUp() }

// Head is where a fresh subscriber's live delivery starts (see
// Subscription.StartAtHead).
type Head struct {
	// Seq is the cursor: every event at or below it committed before
	// Subscribe returned, and so did every later event of the topics that
	// the broker had published before it joined them; a snapshot read after
	// Subscribe returned includes them all. Every event published after
	// that reaches the subscriber live.
	Seq int64
	// Epoch names the unbroken broker subscription of the subscription's
	// one topic that Seq was read under (0 for several topics). Two
	// subscriptions of one topic with equal Heads may share one snapshot:
	// nothing of that topic happened between them that either would miss.
	Epoch uint64
}

// Subscription is one subscriber's feed of events: first the history after
// its cursor, read from the Outbox, then live events, each exactly once and
// in sequence order, in batches: everything pending for it at once. Start,
// StartAtHead and Next belong to one reader goroutine; Close and AfterEnd
// may be called from any goroutine.
type Subscription struct {
	hub    *Hub
	topics []models.Topic
	wake   chan struct{} // capacity 1: "the queue or err changed"
	head   Head
	latest bool // DeliverLatest

	// life guards the membership: in the topic lists, and holding a broker
	// subscription. Taken before a shard's lock, never after.
	life       sync.Mutex
	registered bool
	joined     bool

	mu       sync.Mutex
	q        []*Message // live events, in sequence order
	high     int64      // highest Seq ever queued, to drop copies from a second channel or a re-publish
	mergeAt  int        // DeliverLatest: the queue length that merges it next
	err      error
	afterEnd func(error) // see AfterEnd

	// Owned by the reader.
	started  bool
	last     int64 // Seq of the last event returned: the client's cursor
	live     bool  // replay finished
	lastPage bool  // the last history read came back short
	spare    []*Message
	ret      []*Message // the batch Next returned last
}

// Head returns where a fresh subscriber starts (see Head).
func (s *Subscription) Head() Head { return s.head }

// Start begins delivery after cursor: the outbox's events after it, then
// live events. It is called once, after Subscribe and before Next, for a
// client that resumes; it does not block: Next reads the history in pages
// of ReplayBatch events.
func (s *Subscription) Start(cursor int64) {
	s.started, s.last, s.live, s.lastPage = true, cursor, false, false
}

// StartAtHead begins live delivery after Head().Seq, reading nothing from
// the outbox: for a fresh subscriber, whose snapshot, read after Subscribe
// returned, holds every earlier change. (A resuming client uses Start even
// when its cursor equals the head: events published before this instance
// joined a topic are in its history only.)
func (s *Subscription) StartAtHead() {
	s.started, s.last, s.live = true, s.head.Seq, true
}

// keepCap is the largest queue buffer a subscriber keeps between bursts.
const keepCap = 64

// Next returns everything pending for the subscriber, in order, waiting
// until there is at least one event. It returns nil, nil when idle fires
// first (a nil idle never does), ErrSlowConsumer if the subscriber was
// dropped, ErrInterrupted if the hub lost track of live events, ErrClosed
// once the subscription or the hub is closed, ctx.Err() when ctx ends, or an
// error reading the history. The batch is valid until the next call.
func (s *Subscription) Next(ctx context.Context, idle <-chan time.Time) ([]*Message, error) {
	if !s.started {
		return nil, errNotStarted
	}
	if s.ret != nil {
		clear(s.ret)
		if cap(s.ret) <= keepCap {
			s.spare = s.ret[:0]
		}
		s.ret = nil
	}
	if !s.live {
		if msgs, err := s.replay(ctx); msgs != nil || err != nil {
			return msgs, err
		}
	}
	for {
		s.mu.Lock()
		err := s.err
		var batch []*Message
		if err == nil && len(s.q) > 0 {
			batch, s.q, s.spare = s.q, s.spare, nil
			s.mergeAt = s.hub.queueSize
		}
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if batch != nil {
			// Live events queued during the replay, or again after a
			// catch-up, may already have been returned.
			if batch[0].Seq() <= s.last {
				batch = slices.DeleteFunc(batch, func(m *Message) bool { return m.Seq() <= s.last })
			}
			if s.latest && len(batch) >= s.hub.queueSize {
				// Behind: the reader gets the newest state, not the
				// history since the last merge.
				batch = MergeLatest(batch)
			}
			if len(batch) > 0 {
				s.last, s.ret = batch[len(batch)-1].Seq(), batch
				return batch, nil
			}
			s.spare = batch
			continue
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-idle:
			return nil, nil
		}
	}
}

// replay returns the next page of history, or nil once it is done.
func (s *Subscription) replay(ctx context.Context) ([]*Message, error) {
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if !s.lastPage {
		h := s.hub
		evs, err := h.outbox.EventsAfter(ctx, s.last, s.topics, h.batch)
		if err != nil {
			return nil, fmt.Errorf("stream: replay after %d: %w", s.last, err)
		}
		h.metrics.eventsReplayed(len(evs))
		s.lastPage = len(evs) < h.batch
		if len(evs) > 0 {
			s.last = evs[len(evs)-1].Seq
			return messagesOf(evs), nil
		}
	}
	s.live = true
	return nil, nil
}

// AfterEnd arranges for f to be called, on a goroutine of its own, with
// the error Next then returns, once the subscription ends, however it ends
// (at once if it has): for a writer that may be blocked elsewhere (on a
// socket) to be woken. It is context.AfterFunc without a context, which
// would cost every stream several allocations. Call it at most once.
func (s *Subscription) AfterEnd(f func(cause error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		go f(s.err)
		return
	}
	s.afterEnd = f
}

// Close ends the subscription and releases its queue and, with the last
// local subscriber of a topic, the broker subscription. It is idempotent.
func (s *Subscription) Close() {
	joined := s.hub.leave(s)
	s.fail(ErrClosed)
	if joined {
		s.hub.broker.Unsubscribe(s.topics...)
	}
}

// offer queues what of msgs the subscriber does not have yet, unless it is
// done; it reports whether this dropped the subscriber for a full queue (a
// DeliverLatest subscriber's is merged instead).
func (s *Subscription) offer(msgs []*Message, limit int) (dropped bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || msgs[len(msgs)-1].Seq() <= s.high {
		return false
	}
	for _, m := range msgs {
		if m.Seq() <= s.high {
			continue
		}
		if len(s.q) >= limit {
			if !s.latest {
				s.endLocked(ErrSlowConsumer)
				return true
			}
			if len(s.q) >= s.mergeAt {
				// Merging again only once the queue has doubled keeps the
				// cost per offer constant while it stays bounded: at most
				// twice the limit or four events per station followed.
				s.q = MergeLatest(s.q)
				s.mergeAt = max(limit, 2*len(s.q))
			}
		}
		s.q = append(s.q, m)
		s.high = m.Seq()
	}
	s.signal()
	return false
}

// fail ends the subscription with err unless it has ended already.
func (s *Subscription) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.endLocked(err)
	}
}

// endLocked sets err, drops the queue, wakes the reader and cancels the
// context. s.mu is held.
func (s *Subscription) endLocked(err error) {
	s.err, s.q = err, nil
	s.signal()
	if s.afterEnd != nil {
		go s.afterEnd(err)
		s.afterEnd = nil
	}
}

func (s *Subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// messagesOf encodes evs, which must not change afterwards.
func messagesOf(evs []models.Event) []*Message {
	msgs := make([]*Message, len(evs))
	for i := range evs {
		msgs[i] = NewMessage(&evs[i])
	}
	return msgs
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
