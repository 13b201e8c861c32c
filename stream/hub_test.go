package stream

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"batteryswap/models"
)

// testHub wires a Hub to a MemoryBroker and a fake outbox.
func testHub(t *testing.T, opts HubOptions) (*Hub, *MemoryBroker, *fakeOutbox) {
	t.Helper()
	b, o := NewMemoryBroker(), newFakeOutbox()
	h := NewHub(b, o, opts)
	t.Cleanup(func() { h.Close(); _ = b.Close() })
	return h, b, o
}

// runRelay runs a Relay until the test ends.
func runRelay(t *testing.T, o Outbox, b Broker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = NewRelay(o, b, RelayOptions{PollInterval: 10 * time.Millisecond, Batch: 16}).Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func subscribe(t *testing.T, h *Hub, cursor int64, topics ...models.Topic) *Subscription {
	t.Helper()
	s, err := h.Subscribe(context.Background(), topics, DeliverAll)
	if err != nil {
		t.Fatalf("Subscribe(%v): %v", topics, err)
	}
	t.Cleanup(s.Close)
	s.Start(cursor)
	return s
}

// publishNow commits events on topics and publishes them as one batch, as
// the relay does.
func publishNow(t *testing.T, o *fakeOutbox, b Broker, topics ...models.Topic) {
	t.Helper()
	for _, topic := range topics {
		o.add(topic)
	}
	mustPublish(t, b, o.sequence()...)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Subscribers arriving at any moment while events are being written get,
// from their cursor on, every event of their topics exactly once and in
// order: the replay from the outbox, in several pages, joins the live
// events without a gap or a duplicate.
func TestHubReplayThenLiveUnderConcurrentWrites(t *testing.T) {
	h, b, o := testHub(t, HubOptions{ReplayBatch: 7})
	runRelay(t, o, b)
	ctx := testContext(t)
	stations := []models.Topic{models.StationTopic(1), models.StationTopic(2), models.StationTopic(3)}
	const before, during = 40, 400
	for i := range before {
		o.add(stations[i%3])
	}

	writing := make(chan struct{})
	go func() {
		defer close(writing)
		for i := range during {
			o.add(stations[i%3])
		}
	}()

	// Every reader also follows a marker topic, written last, so it knows
	// when it has everything.
	marker := models.UserTopic(99)
	type reader struct {
		topics []models.Topic
		cursor int64
		got    []int64
		err    error
	}
	cases := [][]models.Topic{
		{models.TopicStations},
		{models.StationTopic(1)},
		{models.StationTopic(2), models.StationTopic(3)},
		{models.TopicStations, models.StationTopic(1)},
	}
	var readers []*reader
	var wg sync.WaitGroup
	for i := range 16 {
		last, _, err := h.Bounds(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r := &reader{topics: cases[i%len(cases)], cursor: max(0, last-int64(i*5))}
		readers = append(readers, r)
		s := subscribe(t, h, r.cursor, append(slices.Clone(r.topics), marker)...)
		wg.Go(func() {
			for {
				batch, err := s.Next(ctx, nil)
				if err != nil {
					r.err = err
					return
				}
				for _, m := range batch {
					if m.Event().Topic == marker {
						return
					}
					r.got = append(r.got, m.Seq())
				}
			}
		})
	}
	<-writing
	o.add(marker)
	wg.Wait()

	o.mu.Lock()
	all := slices.Clone(o.events)
	o.mu.Unlock()
	if len(all) != before+during+1 {
		t.Fatalf("outbox holds %d events, want %d", len(all), before+during+1)
	}
	for i, r := range readers {
		if r.err != nil {
			t.Errorf("reader %d: %v", i, r.err)
			continue
		}
		var want []int64
		for _, ev := range all {
			if ev.Seq > r.cursor && deliveredOn(ev.Topic, r.topics) {
				want = append(want, ev.Seq)
			}
		}
		if got := r.got; !slices.Equal(got, want) {
			t.Errorf("reader %d (%v after %d): got %d events, want %d\ngot  %v\nwant %v", i, r.topics, r.cursor, len(got), len(want), got, want)
		}
	}
}

// An event on "station:3" reaches a subscriber of both "stations" and
// "station:3" once, and takes one place in its queue.
func TestHubDeliversOnceAcrossChannels(t *testing.T) {
	h, b, o := testHub(t, HubOptions{QueueSize: 3})
	s := subscribe(t, h, 0, models.TopicStations, models.StationTopic(3))
	publishNow(t, o, b, models.StationTopic(3), models.StationTopic(4), models.StationTopic(3))
	expect(t, testContext(t), s, 1, 2, 3)
	expectNothing(t, s)
}

// A subscriber that stops reading is dropped when its queue is full, while
// one reading on the same topic gets every event.
func TestHubDropsSlowConsumer(t *testing.T) {
	reg := prometheus.NewRegistry()
	h, b, o := testHub(t, HubOptions{QueueSize: 4, Metrics: NewMetrics(reg)})
	ctx := testContext(t)
	fast := subscribe(t, h, 0, models.StationTopic(1))
	slow := subscribe(t, h, 0, models.StationTopic(1))
	for i := range int64(20) {
		publishNow(t, o, b, models.StationTopic(1))
		expect(t, ctx, fast, i+1)
	}
	if batch, err := slow.Next(ctx, nil); !errors.Is(err, ErrSlowConsumer) {
		t.Errorf("slow Next = %v, %v; want ErrSlowConsumer", msgSeqs(batch), err)
	}
	if got := counterValue(t, reg, "batteryswap_slow_consumer_disconnects_total"); got != 1 {
		t.Errorf("slow consumer disconnects = %v, want 1", got)
	}
	slow.Close()
	if n := h.Subscribers(); n != 1 {
		t.Errorf("Subscribers() = %d after closing the slow one, want 1", n)
	}
}

// Everything pending for a subscriber comes out of one Next: a reader that
// falls behind gets bigger batches, not more of them. A batch of several
// runs (several topics) arrives in order.
func TestSubscriptionBatches(t *testing.T) {
	h, b, o := testHub(t, HubOptions{})
	ctx := testContext(t)
	s := subscribe(t, h, 0, models.StationTopic(1), models.UserTopic(1))
	expectNothing(t, s)                                                                                              // the (empty) history
	publishNow(t, o, b, models.StationTopic(1), models.StationTopic(1), models.UserTopic(1), models.StationTopic(1)) // one batch, three runs
	publishNow(t, o, b, models.UserTopic(1))                                                                         // a second batch
	publishNow(t, o, b, models.StationTopic(2))                                                                      // not followed
	batch, err := s.Next(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := msgSeqs(batch), []int64{1, 2, 3, 4, 5}; !slices.Equal(got, want) {
		t.Fatalf("one Next returned %v, want %v", got, want)
	}
	expectNothing(t, s)
}

// Next returns nil, nil when its idle channel fires first: the heartbeat.
func TestSubscriptionIdle(t *testing.T) {
	h, _, _ := testHub(t, HubOptions{})
	s := subscribe(t, h, 0, models.TopicStations)
	idle := make(chan time.Time, 1)
	idle <- time.Now()
	batch, err := s.Next(testContext(t), idle)
	if batch != nil || err != nil {
		t.Fatalf("Next = %v, %v; want nil, nil when idle fires", msgSeqs(batch), err)
	}
}

// A fresh subscriber starts at the hub's head, read from memory: after the
// first subscriber, connecting reads nothing from the outbox, and the head
// is the cursor of everything the hub has seen.
func TestSubscriptionStartAtHead(t *testing.T) {
	h, b, o := testHub(t, HubOptions{})
	ctx := testContext(t)
	topic := models.StationTopic(1)
	publishNow(t, o, b, topic, topic) // before anyone subscribed: only in the outbox
	first, err := h.Subscribe(ctx, []models.Topic{topic}, DeliverAll)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if got := first.Head().Seq; got != 2 {
		t.Fatalf("first subscriber's head = %d, want the outbox's 2", got)
	}
	publishNow(t, o, b, topic, models.StationTopic(2)) // 3 reaches the hub; 4 (not followed) does not
	heads, reads := o.calls()
	var subs []*Subscription
	for range 10 {
		s, err := h.Subscribe(ctx, []models.Topic{topic}, DeliverAll)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got := s.Head().Seq; got != 3 {
			t.Fatalf("head = %d, want 3, the last event the hub saw", got)
		}
		s.StartAtHead()
		subs = append(subs, s)
	}
	publishNow(t, o, b, topic) // 5
	for _, s := range subs {
		expect(t, ctx, s, 5)
	}
	if h2, r2 := o.calls(); h2 != heads || r2 != reads {
		t.Fatalf("fresh subscribers read the outbox: Head %d more times, EventsAfter %d more", h2-heads, r2-reads)
	}

	// The first subscriber of a topic nobody here followed: the hub never
	// saw its events, so its head comes from the outbox (6), not from the
	// last event the hub saw (5); starting there it gets 7 and no event
	// after its head is missing.
	other := models.StationTopic(2)
	publishNow(t, o, b, other) // 6
	s, err := h.Subscribe(ctx, []models.Topic{other}, DeliverAll)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Head().Seq; got != 6 {
		t.Fatalf("first subscriber of %s: head %d, want the outbox's 6", other, got)
	}
	s.StartAtHead()
	// A second subscriber of that topic never starts below the first.
	s2, err := h.Subscribe(ctx, []models.Topic{other}, DeliverAll)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := s2.Head().Seq; got != 6 {
		t.Fatalf("second subscriber of %s: head %d, want 6 as the first", other, got)
	}
	s2.StartAtHead()
	publishNow(t, o, b, other) // 7
	expect(t, ctx, s, 7)
	expect(t, ctx, s2, 7)
}

// Two subscribers of one topic share an epoch while the topic stays joined
// in the broker between them; once every subscriber has left (events may
// then pass unseen), the next one gets a new epoch. Several topics: 0.
func TestSubscriptionHeadEpoch(t *testing.T) {
	h, _, _ := testHub(t, HubOptions{})
	ctx := testContext(t)
	topic := models.StationTopic(1)
	sub := func(topics ...models.Topic) *Subscription {
		t.Helper()
		s, err := h.Subscribe(ctx, topics, DeliverAll)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a := sub(topic)
	b := sub(topic)
	if a.Head() != b.Head() || a.Head().Epoch == 0 {
		t.Fatalf("heads %+v and %+v: want equal, with an epoch", a.Head(), b.Head())
	}
	a.Close()
	c := sub(topic) // b kept the topic joined
	if c.Head() != b.Head() {
		t.Fatalf("head %+v after one of two left, want %+v", c.Head(), b.Head())
	}
	b.Close()
	c.Close()
	d := sub(topic)
	defer d.Close()
	if d.Head().Epoch == b.Head().Epoch {
		t.Fatalf("epoch %d again after the topic was left", d.Head().Epoch)
	}
	m := sub(topic, models.TopicStations)
	defer m.Close()
	if m.Head().Epoch != 0 {
		t.Fatalf("several topics: epoch %d, want 0", m.Head().Epoch)
	}
}

// Hub.Close ends every subscription, blocked or not, with ErrClosed and
// leaves no broker subscription behind.
func TestHubClose(t *testing.T) {
	h, b, _ := testHub(t, HubOptions{})
	ctx := testContext(t)
	var subs []*Subscription
	for i := range 5 {
		subs = append(subs, subscribe(t, h, 0, models.TopicStations, models.UserTopic(int64(i+1))))
	}
	blocked := make(chan error)
	go func() {
		_, err := subs[0].Next(ctx, nil)
		blocked <- err
	}()
	h.Close()
	if err := <-blocked; !errors.Is(err, ErrClosed) {
		t.Errorf("blocked Next = %v, want ErrClosed", err)
	}
	for i, s := range subs {
		if _, err := s.Next(ctx, nil); !errors.Is(err, ErrClosed) {
			t.Errorf("sub %d: Next = %v, want ErrClosed", i, err)
		}
		s.Close()
	}
	if _, err := h.Subscribe(ctx, []models.Topic{models.TopicStations}, DeliverAll); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
	}
	if n := h.Subscribers(); n != 0 {
		t.Errorf("Subscribers() = %d, want 0", n)
	}
	if len(b.refs) != 0 {
		t.Errorf("broker still subscribed to %v", b.refs)
	}
	h.Close()
}

// Closing a subscription leaves the broker topic with the last local
// subscriber, and closing twice is harmless.
func TestSubscriptionClose(t *testing.T) {
	h, b, _ := testHub(t, HubOptions{})
	topic := models.StationTopic(1)
	s1 := subscribe(t, h, 0, topic, topic)
	s2 := subscribe(t, h, 0, topic)
	s1.Close()
	s1.Close()
	if n := b.refs[topic]; n != 1 {
		t.Errorf("broker count for %s = %d after one of two closed, want 1", topic, n)
	}
	if _, err := s1.Next(testContext(t), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Next after Close = %v, want ErrClosed", err)
	}
	s2.Close()
	if _, ok := b.refs[topic]; ok || h.Subscribers() != 0 {
		t.Errorf("after both closed: broker count %v, subscribers %d", b.refs, h.Subscribers())
	}
}

// After a broker reconnect the hub reads what the broker missed from the
// outbox; the relay publishing the same events later changes nothing.
func TestHubCatchUp(t *testing.T) {
	h, b, o := testHub(t, HubOptions{ReplayBatch: 2})
	ctx := testContext(t)
	s := subscribe(t, h, 0, models.StationTopic(1))
	other := subscribe(t, h, 0, models.UserTopic(1))
	publishNow(t, o, b, models.StationTopic(1))
	expect(t, ctx, s, 1)

	// The broker is "down": events are sequenced but not delivered.
	for range 5 {
		o.add(models.StationTopic(1))
	}
	o.add(models.UserTopic(1))
	missed := o.sequence()
	feed{h}.Resync()
	expect(t, ctx, s, 2, 3, 4, 5, 6)
	expect(t, ctx, other, 7)

	mustPublish(t, b, missed...) // the relay's retry once the broker is back
	publishNow(t, o, b, models.StationTopic(1))
	expect(t, ctx, s, 8)
}

// When the catch-up cannot read the outbox, subscribers are told to resume
// instead of silently missing events.
func TestHubCatchUpFailureInterrupts(t *testing.T) {
	h, _, o := testHub(t, HubOptions{})
	s := subscribe(t, h, 0, models.StationTopic(1))
	o.setFailReads(errors.New("database is down"))
	feed{h}.Resync()
	if _, err := s.Next(testContext(t), nil); !errors.Is(err, ErrInterrupted) {
		t.Errorf("Next = %v, want ErrInterrupted", err)
	}
}

func TestSubscriptionErrors(t *testing.T) {
	h, _, o := testHub(t, HubOptions{})
	ctx := testContext(t)

	for _, topics := range [][]models.Topic{nil, {"station:0"}, {"everything"}} {
		if _, err := h.Subscribe(ctx, topics, DeliverAll); !models.IsCode(err, models.CodeInvalidRequest) {
			t.Errorf("Subscribe(%q) = %v, want invalid_request", topics, err)
		}
	}

	s, err := h.Subscribe(ctx, []models.Topic{models.TopicStations}, DeliverAll)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Next(ctx, nil); !errors.Is(err, errNotStarted) {
		t.Errorf("Next before Start = %v, want errNotStarted", err)
	}
	s.Start(0)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Next(cancelled, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Next with a cancelled context = %v, want context.Canceled", err)
	}

	dbErr := errors.New("database is down")
	o.setFailReads(dbErr)
	if _, err := s.Next(ctx, nil); !errors.Is(err, dbErr) {
		t.Errorf("Next with a failing outbox = %v, want %v", err, dbErr)
	}
}

func TestSubscribeFailsWithoutOutboxHead(t *testing.T) {
	h, b, o := testHub(t, HubOptions{})
	o.failHead = errors.New("database is down")
	if _, err := h.Subscribe(testContext(t), []models.Topic{models.TopicStations}, DeliverAll); !errors.Is(err, o.failHead) {
		t.Errorf("Subscribe = %v, want the Head error", err)
	}
	if h.Subscribers() != 0 || len(b.refs) != 0 {
		t.Errorf("a failed Subscribe left %d subscribers, broker %v", h.Subscribers(), b.refs)
	}
}

// counterValue returns a counter's value, or a histogram's sample count.
func counterValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// BenchmarkIdleSubscribers reports the hub's memory per idle subscriber.
func BenchmarkIdleSubscribers(b *testing.B) {
	const n = 10000
	topics := []models.Topic{models.TopicStations}
	for b.Loop() {
		h := NewHub(NewMemoryBroker(), newFakeOutbox(), HubOptions{})
		subs := make([]*Subscription, n)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range subs {
			s, err := h.Subscribe(context.Background(), topics, DeliverAll)
			if err != nil {
				b.Fatal(err)
			}
			s.StartAtHead()
			subs[i] = s
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/sub")
		h.Close()
	}
}

// BenchmarkFanout publishes one event to 1,000 subscribers of a topic and
// has each take it: the cost per event of dispatch and delivery, without
// the writes to clients.
func BenchmarkFanout(b *testing.B) {
	o, br := newFakeOutbox(), NewMemoryBroker()
	h := NewHub(br, o, HubOptions{})
	defer h.Close()
	o.add(models.StationTopic(1))
	ev := o.sequence()
	subs := make([]*Subscription, 1000)
	for i := range subs {
		s, err := h.Subscribe(context.Background(), []models.Topic{models.TopicStations}, DeliverAll)
		if err != nil {
			b.Fatal(err)
		}
		s.StartAtHead()
		subs[i] = s
	}
	b.ReportAllocs()
	for b.Loop() {
		ev[0].Seq++
		if err := br.Publish(context.Background(), ev); err != nil {
			b.Fatal(err)
		}
		for _, s := range subs {
			if batch, err := s.Next(context.Background(), nil); len(batch) != 1 || err != nil {
				b.Fatal("event not delivered")
			}
		}
	}
}

// BenchmarkSubscribe is the hub's share of a connect to a topic with
// 10,000 subscribers: register, join, read the head, and leave.
func BenchmarkSubscribe(b *testing.B) {
	h := NewHub(NewMemoryBroker(), newFakeOutbox(), HubOptions{})
	defer h.Close()
	topics := []models.Topic{models.StationTopic(1)}
	for range 10000 {
		if _, err := h.Subscribe(context.Background(), topics, DeliverAll); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		s, err := h.Subscribe(context.Background(), topics, DeliverAll)
		if err != nil {
			b.Fatal(err)
		}
		s.StartAtHead()
		s.Close()
	}
}

// A topic with many subscribers: each gets every event once and in order,
// whatever batches its reads make of them, while others subscribe and
// leave during the fan-out (run with -race).
func TestHubDispatchManySubscribers(t *testing.T) {
	h, b, o := testHub(t, HubOptions{})
	ctx := testContext(t)
	topic := models.StationTopic(1)
	const n, events = 500, 50
	subs := make([]*Subscription, n)
	for i := range subs {
		subs[i] = subscribe(t, h, 0, topic)
	}
	churn := make(chan struct{})
	go func() {
		defer close(churn)
		for range 200 {
			s, err := h.Subscribe(ctx, []models.Topic{topic}, DeliverAll)
			if err != nil {
				t.Error(err)
				return
			}
			s.Close()
		}
	}()
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Go(func() {
			var got []int64
			for len(got) < events {
				batch, err := s.Next(ctx, nil)
				if err != nil {
					t.Errorf("after %v: %v", got, err)
					return
				}
				got = append(got, msgSeqs(batch)...)
			}
			if len(got) != events || !slices.IsSorted(got) || got[0] != 1 || got[events-1] != events {
				t.Errorf("got %v, want 1..%d", got, events)
			}
		})
	}
	for range events {
		publishNow(t, o, b, topic)
	}
	wg.Wait()
	<-churn
}

// Hub.Close while subscriptions are being made and held leaves no
// subscription behind and races with none of them (run with -race).
func TestHubCloseWhileSubscribing(t *testing.T) {
	h, b, _ := testHub(t, HubOptions{})
	const n = 20
	hold := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			s, err := h.Subscribe(context.Background(), []models.Topic{models.TopicStations}, DeliverAll)
			if err != nil {
				return
			}
			<-hold // open while the hub closes
			s.Close()
		})
	}
	for h.Subscribers() < n/2 {
		runtime.Gosched() // no sleep: nothing may order the Subscribe calls before Close
	}
	h.Close()
	close(hold)
	wg.Wait()
	if n := h.Subscribers(); n != 0 || len(b.refs) != 0 {
		t.Fatalf("after Close: %d subscribers, broker refs %v", n, b.refs)
	}
}

// AfterEnd's function runs once the subscription ends, whatever ends it,
// with the error Next returns; one registered after the end runs at once.
func TestSubscriptionAfterEnd(t *testing.T) {
	topic := models.StationTopic(1)
	for _, tc := range []struct {
		name string
		end  func(h *Hub, b *MemoryBroker, o *fakeOutbox, s *Subscription)
		want error
	}{
		{"dropped for a full queue", func(h *Hub, b *MemoryBroker, o *fakeOutbox, s *Subscription) {
			for range 5 {
				publishNow(t, o, b, topic)
			}
		}, ErrSlowConsumer},
		{"closed", func(h *Hub, b *MemoryBroker, o *fakeOutbox, s *Subscription) { s.Close() }, ErrClosed},
		{"hub closed", func(h *Hub, b *MemoryBroker, o *fakeOutbox, s *Subscription) { h.Close() }, ErrClosed},
		{"interrupted", func(h *Hub, b *MemoryBroker, o *fakeOutbox, s *Subscription) {
			o.setFailReads(errors.New("database is down"))
			feed{h}.Resync()
		}, ErrInterrupted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, b, o := testHub(t, HubOptions{QueueSize: 4})
			s := subscribe(t, h, 0, topic)
			ended := make(chan error, 2)
			s.AfterEnd(func(err error) { ended <- err })
			publishNow(t, o, b, topic) // queued, not an end
			select {
			case err := <-ended:
				t.Fatalf("ended before the subscription: %v", err)
			default:
			}
			tc.end(h, b, o, s)
			s.Close() // ending again changes nothing
			if err := <-ended; !errors.Is(err, tc.want) {
				t.Fatalf("AfterEnd got %v, want %v", err, tc.want)
			}
			if _, err := s.Next(testContext(t), nil); !errors.Is(err, tc.want) {
				t.Fatalf("Next = %v, want %v", err, tc.want)
			}
			select {
			case err := <-ended:
				t.Fatalf("called twice, again with %v", err)
			default:
			}
		})
	}
	h, _, _ := testHub(t, HubOptions{})
	s := subscribe(t, h, 0, topic)
	s.Close()
	ended := make(chan error, 1)
	s.AfterEnd(func(err error) { ended <- err })
	if err := <-ended; !errors.Is(err, ErrClosed) {
		t.Fatalf("registered after the end: %v, want ErrClosed", err)
	}
}
