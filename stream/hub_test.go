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
	s, err := h.Subscribe(context.Background(), topics)
	if err != nil {
		t.Fatalf("Subscribe(%v): %v", topics, err)
	}
	t.Cleanup(s.Close)
	s.Start(cursor)
	return s
}

// publishNow commits events on topics and publishes them, as the relay does.
func publishNow(t *testing.T, o *fakeOutbox, b Broker, topics ...models.Topic) {
	t.Helper()
	for _, topic := range topics {
		o.add(topic)
	}
	for _, ev := range o.sequence() {
		mustPublish(t, b, ev)
	}
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
		got    []*Message
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
		last, _, err := h.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r := &reader{topics: cases[i%len(cases)], cursor: max(0, last-int64(i*5))}
		readers = append(readers, r)
		s := subscribe(t, h, r.cursor, append(slices.Clone(r.topics), marker)...)
		wg.Go(func() {
			for {
				m, err := s.Next(ctx)
				if err != nil {
					r.err = err
					return
				}
				if m.Event().Topic == marker {
					return
				}
				r.got = append(r.got, m)
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
		if got := msgSeqs(r.got); !slices.Equal(got, want) {
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
	if m, ok := s.TryNext(); ok {
		t.Errorf("event %d delivered twice", m.Seq())
	}
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
	if m, err := slow.Next(ctx); !errors.Is(err, ErrSlowConsumer) {
		t.Errorf("slow Next = %v, %v; want ErrSlowConsumer", m, err)
	}
	if got := counterValue(t, reg, "batteryswap_slow_consumer_disconnects_total"); got != 1 {
		t.Errorf("slow consumer disconnects = %v, want 1", got)
	}
	slow.Close()
	if n := h.Subscribers(); n != 1 {
		t.Errorf("Subscribers() = %d after closing the slow one, want 1", n)
	}
}

// TryNext returns what is in memory, from the replay page or the live
// queue, without blocking or reading the outbox; Next reads the next page.
func TestSubscriptionTryNext(t *testing.T) {
	h, b, o := testHub(t, HubOptions{ReplayBatch: 3})
	ctx := testContext(t)
	topic := models.UserTopic(1)
	publishNow(t, o, b, topic, topic, topic, topic)
	s := subscribe(t, h, 1, topic)
	drain := func(want ...int64) {
		t.Helper()
		var got []*Message
		for m, ok := s.TryNext(); ok; m, ok = s.TryNext() {
			got = append(got, m)
		}
		if g := msgSeqs(got); !slices.Equal(g, want) && len(g)+len(want) > 0 {
			t.Fatalf("TryNext drained %v, want %v", g, want)
		}
	}
	drain()              // no history read yet
	expect(t, ctx, s, 2) // reads the full page 2, 3, 4
	drain(3, 4)
	publishNow(t, o, b, topic, topic) // 5, 6: in the outbox and the live queue
	expect(t, ctx, s, 5)              // reads the short, last page 5, 6
	drain(6)                          // then the live queue, whose 5 and 6 are dropped
	publishNow(t, o, b, topic, topic)
	drain(7, 8)
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
		_, err := subs[0].Next(ctx)
		blocked <- err
	}()
	h.Close()
	if err := <-blocked; !errors.Is(err, ErrClosed) {
		t.Errorf("blocked Next = %v, want ErrClosed", err)
	}
	for i, s := range subs {
		if _, err := s.Next(ctx); !errors.Is(err, ErrClosed) {
			t.Errorf("sub %d: Next = %v, want ErrClosed", i, err)
		}
		s.Close()
	}
	if _, err := h.Subscribe(ctx, []models.Topic{models.TopicStations}); !errors.Is(err, ErrClosed) {
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
	if _, err := s1.Next(testContext(t)); !errors.Is(err, ErrClosed) {
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

	for _, ev := range missed { // the relay's retry once the broker is back
		mustPublish(t, b, ev)
	}
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
	if _, err := s.Next(testContext(t)); !errors.Is(err, ErrInterrupted) {
		t.Errorf("Next = %v, want ErrInterrupted", err)
	}
}

func TestSubscriptionErrors(t *testing.T) {
	h, _, o := testHub(t, HubOptions{})
	ctx := testContext(t)

	for _, topics := range [][]models.Topic{nil, {"station:0"}, {"everything"}} {
		if _, err := h.Subscribe(ctx, topics); !models.IsCode(err, models.CodeInvalidRequest) {
			t.Errorf("Subscribe(%q) = %v, want invalid_request", topics, err)
		}
	}

	s, err := h.Subscribe(ctx, []models.Topic{models.TopicStations})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Next(ctx); !errors.Is(err, errNotStarted) {
		t.Errorf("Next before Start = %v, want errNotStarted", err)
	}
	s.Start(0)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Next(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("Next with a cancelled context = %v, want context.Canceled", err)
	}

	dbErr := errors.New("database is down")
	o.setFailReads(dbErr)
	if _, err := s.Next(ctx); !errors.Is(err, dbErr) {
		t.Errorf("Next with a failing outbox = %v, want %v", err, dbErr)
	}
}

func TestSubscribeFailsWithoutOutboxHead(t *testing.T) {
	h, b, o := testHub(t, HubOptions{})
	o.failHead = errors.New("database is down")
	if _, err := h.Subscribe(testContext(t), []models.Topic{models.TopicStations}); !errors.Is(err, o.failHead) {
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

// BenchmarkIdleSubscribers reports the hub's memory per idle subscriber
// (target: well under the 16 KiB budget of a whole SSE connection).
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
			s, err := h.Subscribe(context.Background(), topics)
			if err != nil {
				b.Fatal(err)
			}
			s.Start(0)
			subs[i] = s
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/sub")
		h.Close()
	}
}

// BenchmarkFanout publishes one event to 1,000 subscribers of a topic and
// has each take it: the cost per event of dispatch and delivery.
func BenchmarkFanout(b *testing.B) {
	o, br := newFakeOutbox(), NewMemoryBroker()
	h := NewHub(br, o, HubOptions{})
	defer h.Close()
	o.add(models.StationTopic(1))
	ev := o.sequence()[0]
	subs := make([]*Subscription, 1000)
	for i := range subs {
		s, err := h.Subscribe(context.Background(), []models.Topic{models.TopicStations})
		if err != nil {
			b.Fatal(err)
		}
		s.Start(0)
		if _, err := s.Next(context.Background()); err != nil { // the history: ev
			b.Fatal(err)
		}
		subs[i] = s
	}
	b.ReportAllocs()
	for b.Loop() {
		ev.Seq++
		if err := br.Publish(context.Background(), &ev); err != nil {
			b.Fatal(err)
		}
		for _, s := range subs {
			if _, ok := s.TryNext(); !ok {
				b.Fatal("event not delivered")
			}
		}
	}
}

// Poll and Ready give a reader the Next guarantee without a context per
// call: the history after the cursor in pages, then live events, each
// exactly once and in order, and nil (wait on Ready) when nothing is ready.
func TestSubscriptionPollAndReady(t *testing.T) {
	h, b, o := testHub(t, HubOptions{ReplayBatch: 3})
	ctx := testContext(t)
	topic := models.StationTopic(1)
	publishNow(t, o, b, topic, topic, topic, topic, topic) // 1..5
	s := subscribe(t, h, 1, topic)
	publishNow(t, o, b, topic) // 6: in the outbox and in the live queue

	var got []int64
	pollAll := func() {
		t.Helper()
		for {
			m, err := s.Poll(ctx)
			if err != nil {
				t.Fatalf("Poll after %v: %v", got, err)
			}
			if m == nil {
				return
			}
			got = append(got, m.Seq())
			if m, ok := s.TryNext(); ok { // mixing TryNext in changes nothing
				got = append(got, m.Seq())
			}
		}
	}
	pollAll()
	if want := []int64{2, 3, 4, 5, 6}; !slices.Equal(got, want) {
		t.Fatalf("replay then live = %v, want %v", got, want)
	}
	select {
	case <-s.Ready(): // the signal of 6, already read
	default:
	}
	if m, err := s.Poll(ctx); m != nil || err != nil {
		t.Fatalf("Poll with nothing ready = %v, %v; want nil, nil", m, err)
	}
	publishNow(t, o, b, topic, topic)
	select {
	case <-s.Ready():
	case <-ctx.Done():
		t.Fatal("Ready never signalled the new events")
	}
	got = nil
	pollAll()
	if want := []int64{7, 8}; !slices.Equal(got, want) {
		t.Fatalf("live = %v, want %v", got, want)
	}
	s.Close()
	<-s.Ready()
	if _, err := s.Poll(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Poll after Close = %v, want ErrClosed", err)
	}
}

// OnEnd runs once, with the error Next returns, however the subscription
// ends, and at once when it has ended already.
func TestSubscriptionOnEnd(t *testing.T) {
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
			var calls []error
			s.OnEnd(func(err error) { calls = append(calls, err) })
			publishNow(t, o, b, topic) // queued, not an end
			if len(calls) != 0 {
				t.Fatalf("OnEnd ran before the end: %v", calls)
			}
			tc.end(h, b, o, s)
			s.Close() // ending again does not run it again
			h.Close()
			if len(calls) != 1 || !errors.Is(calls[0], tc.want) {
				t.Fatalf("OnEnd calls = %v, want one with %v", calls, tc.want)
			}
			var late error
			s.OnEnd(func(err error) { late = err })
			if !errors.Is(late, tc.want) {
				t.Fatalf("OnEnd after the end ran with %v, want %v at once", late, tc.want)
			}
		})
	}
}

// directRecorder is a DirectFunc that records what it sends and answers as
// told.
type directRecorder struct {
	got        []int64
	sent, more bool
	calls      int
}

func (d *directRecorder) send(m *Message) (bool, bool) {
	d.calls++
	if d.sent {
		d.got = append(d.got, m.Seq())
	}
	return d.sent, d.more
}

// While direct sending is on, live events go to the DirectFunc instead of
// the queue, once each and in order; an event it does not send, or its
// saying it takes no more, turns it off and wakes the reader, and the
// events after queue up behind, until the reader enables it again.
func TestSubscriptionDirect(t *testing.T) {
	h, b, o := testHub(t, HubOptions{ReplayBatch: 2})
	ctx := testContext(t)
	topic := models.StationTopic(1)
	publishNow(t, o, b, topic, topic, topic) // 1..3, history
	s := subscribe(t, h, 0, topic)
	d := &directRecorder{sent: true, more: true}

	if s.EnableDirect(d.send) {
		t.Fatal("EnableDirect before the replay: on")
	}
	expect(t, ctx, s, 1, 2, 3)
	publishNow(t, o, b, topic) // 4, queued
	if s.EnableDirect(d.send) {
		t.Fatal("EnableDirect with an event queued: on")
	}
	expect(t, ctx, s, 4)
	if m, err := s.Poll(ctx); m != nil || err != nil {
		t.Fatalf("Poll = %v, %v; want nothing", m, err)
	}
	if !s.EnableDirect(d.send) {
		t.Fatal("EnableDirect with nothing queued: off")
	}
	publishNow(t, o, b, topic, topic) // 5, 6: sent directly
	again, err := o.EventsAfter(ctx, 4, []models.Topic{topic}, 10)
	if err != nil || len(again) != 2 {
		t.Fatalf("EventsAfter = %v, %v", again, err)
	}
	for _, ev := range again {
		mustPublish(t, b, ev) // a re-publish is not sent twice
	}
	if m, _ := s.Poll(ctx); m != nil || !slices.Equal(d.got, []int64{5, 6}) {
		t.Fatalf("direct: sent %v, queued %v; want 5, 6 sent and nothing queued", d.got, m)
	}

	select {
	case <-s.Ready():
	default:
	}
	d.sent = false // the socket is full: 7 and 8 are queued
	publishNow(t, o, b, topic, topic)
	if d.calls != 3 {
		t.Fatalf("DirectFunc called %d times, want 3: not again once it refused", d.calls)
	}
	select {
	case <-s.Ready():
	default:
		t.Fatal("a refused event did not wake the reader")
	}
	expect(t, ctx, s, 7, 8)

	d.sent, d.more = true, false // 9 is sent in part; the writer must finish it
	if !s.EnableDirect(d.send) {
		t.Fatal("EnableDirect again: off")
	}
	select {
	case <-s.Ready(): // a stale signal
	default:
	}
	publishNow(t, o, b, topic)
	select {
	case <-s.Ready():
	default:
		t.Fatal("a direct send that takes no more did not wake the reader")
	}
	publishNow(t, o, b, topic) // 10, queued behind the rest of 9
	if !slices.Equal(d.got, []int64{5, 6, 9}) {
		t.Fatalf("direct sends %v, want 5, 6, 9", d.got)
	}
	expect(t, ctx, s, 10)

	s.Close()
	if s.EnableDirect(d.send) {
		t.Fatal("EnableDirect after Close: on")
	}
}

// Events that a resuming reader replayed from the outbox before the relay
// published them are not sent again directly when they arrive live.
func TestSubscriptionDirectAfterReplay(t *testing.T) {
	h, b, o := testHub(t, HubOptions{})
	ctx := testContext(t)
	topic := models.StationTopic(1)
	publishNow(t, o, b, topic) // 1
	s := subscribe(t, h, 1, topic)
	o.add(topic)
	o.add(topic)
	late := o.sequence() // 2, 3: sequenced, not yet published
	expect(t, ctx, s, 2, 3)
	if m, err := s.Poll(ctx); m != nil || err != nil {
		t.Fatalf("Poll = %v, %v; want nothing", m, err)
	}
	d := &directRecorder{sent: true, more: true}
	if !s.EnableDirect(d.send) {
		t.Fatal("EnableDirect: off")
	}
	for _, ev := range late {
		mustPublish(t, b, ev)
	}
	publishNow(t, o, b, topic) // 4
	if !slices.Equal(d.got, []int64{4}) {
		t.Fatalf("sent directly %v, want only 4: 2 and 3 were replayed", d.got)
	}
}

// A subscriber whose direct sends keep failing (its socket is full) fills
// its queue and is dropped like any other slow consumer.
func TestSubscriptionDirectSlowConsumer(t *testing.T) {
	reg := prometheus.NewRegistry()
	h, b, o := testHub(t, HubOptions{QueueSize: 4, Metrics: NewMetrics(reg)})
	ctx := testContext(t)
	topic := models.StationTopic(1)
	s := subscribe(t, h, 0, topic)
	if m, err := s.Poll(ctx); m != nil || err != nil {
		t.Fatalf("Poll = %v, %v", m, err)
	}
	var ended error
	s.OnEnd(func(err error) { ended = err })
	full := &directRecorder{}
	for range 10 {
		s.EnableDirect(full.send) // a reader re-enabling it cannot save it: the queue is not empty
		publishNow(t, o, b, topic)
	}
	if !errors.Is(ended, ErrSlowConsumer) || counterValue(t, reg, "batteryswap_slow_consumer_disconnects_total") != 1 {
		t.Fatalf("ended with %v, %v drops; want ErrSlowConsumer, 1", ended, counterValue(t, reg, "batteryswap_slow_consumer_disconnects_total"))
	}
	if full.calls != 1 {
		t.Fatalf("DirectFunc called %d times, want once", full.calls)
	}
}

// A topic with many subscribers is offered in parallel chunks; each
// subscriber still gets every event once and in order, directly or queued.
func TestHubDispatchManySubscribers(t *testing.T) {
	h, b, o := testHub(t, HubOptions{})
	ctx := testContext(t)
	topic := models.StationTopic(1)
	const n, events = 3 * parallelOffers, 20
	subs := make([]*Subscription, n)
	direct := make([]*directRecorder, n)
	for i := range subs {
		subs[i] = subscribe(t, h, 0, topic)
		if m, err := subs[i].Poll(ctx); m != nil || err != nil {
			t.Fatalf("Poll = %v, %v", m, err)
		}
		direct[i] = &directRecorder{sent: true, more: i%2 == 0}
		subs[i].EnableDirect(direct[i].send)
	}
	for range events {
		publishNow(t, o, b, topic)
	}
	for i, s := range subs {
		got := slices.Clone(direct[i].got)
		for m, ok := s.TryNext(); ok; m, ok = s.TryNext() {
			got = append(got, m.Seq())
		}
		if len(got) != events || !slices.IsSorted(got) || got[0] != 1 || got[events-1] != events {
			t.Fatalf("subscriber %d got %v, want 1..%d", i, got, events)
		}
	}
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
			s, err := h.Subscribe(context.Background(), []models.Topic{models.TopicStations})
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
