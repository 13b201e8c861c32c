package stream

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"batteryswap/models"
)

// The shared Broker suite: every implementation runs it.

func TestMemoryBroker(t *testing.T) {
	testBroker(t, func(*testing.T) Broker { return NewMemoryBroker() })
}

func testBroker(t *testing.T, newBroker func(t *testing.T) Broker) {
	start := func(t *testing.T) (Broker, *recorder) {
		b := newBroker(t)
		r := newRecorder()
		b.Start(r)
		t.Cleanup(func() { _ = b.Close() })
		return b, r
	}

	t.Run("DeliversOnEveryChannelOfTheTopic", func(t *testing.T) {
		b, r := start(t)
		mustSubscribe(t, b, models.StationTopic(1), models.TopicStations)
		ev := testEvent(7, models.StationTopic(1))
		mustPublish(t, b, ev)
		var topics []models.Topic
		for range 2 {
			d := r.next(t)
			if len(d.msgs) != 1 {
				t.Fatalf("delivered %d events, want 1", len(d.msgs))
			}
			sameEvent(t, d.msgs[0].Event(), ev)
			topics = append(topics, d.topic)
		}
		slices.Sort(topics)
		if want := []models.Topic{models.StationTopic(1), models.TopicStations}; !slices.Equal(topics, want) {
			t.Errorf("delivered on %v, want %v", topics, want)
		}
	})

	t.Run("DeliversOnlySubscribedTopics", func(t *testing.T) {
		b, r := start(t)
		mustSubscribe(t, b, models.TopicStations, models.UserTopic(1))
		mustPublish(t, b, testEvent(1, models.UserTopic(2)))
		mustPublish(t, b, testEvent(2, models.StationTopic(5)))
		mustPublish(t, b, testEvent(3, models.UserTopic(1)))
		// Delivery keeps publish order, so anything unwanted would come first.
		for _, want := range []delivery{{models.TopicStations, nil}, {models.UserTopic(1), nil}} {
			if d := r.next(t); d.topic != want.topic {
				t.Fatalf("delivery of %v on %s, want one on %s", d.seqs(), d.topic, want.topic)
			}
		}
	})

	t.Run("CountsSubscriptionsPerTopic", func(t *testing.T) {
		b, r := start(t)
		topic, marker := models.UserTopic(1), models.UserTopic(2)
		mustSubscribe(t, b, topic)
		mustSubscribe(t, b, topic, marker)
		b.Unsubscribe(topic)
		mustPublish(t, b, testEvent(1, topic))
		if d := r.next(t); !slices.Equal(d.seqs(), []int64{1}) {
			t.Fatalf("got events %v, want [1] while one subscription remains", d.seqs())
		}
		b.Unsubscribe(topic)
		// A Subscribe returning proves the earlier Unsubscribe took effect.
		mustSubscribe(t, b, marker)
		mustPublish(t, b, testEvent(2, topic))
		mustPublish(t, b, testEvent(3, marker))
		if d := r.next(t); !slices.Equal(d.seqs(), []int64{3}) {
			t.Fatalf("got events %v on %s after the last Unsubscribe, want only the marker 3", d.seqs(), d.topic)
		}
	})

	t.Run("KeepsPublishOrder", func(t *testing.T) {
		b, r := start(t)
		mustSubscribe(t, b, models.TopicStations)
		const n = 200
		for i := range int64(n) {
			mustPublish(t, b, testEvent(i+1, models.StationTopic(i%3+1)))
		}
		for i := range int64(n) {
			if d := r.next(t); !slices.Equal(d.seqs(), []int64{i + 1}) {
				t.Fatalf("delivery %d is events %v", i+1, d.seqs())
			}
		}
	})

	// A batch arrives in runs of one topic, one delivery per run and
	// channel, in order: whichever channels a subscriber joined, what it
	// gets from them, taken in arrival order, is in Seq order.
	t.Run("DeliversABatchInRuns", func(t *testing.T) {
		b, r := start(t)
		st1, st2, u4 := models.StationTopic(1), models.StationTopic(2), models.UserTopic(4)
		mustSubscribe(t, b, st1, st2, u4, models.TopicStations)
		mustPublish(t, b, testEvent(1, st1), testEvent(2, st1), testEvent(3, u4), testEvent(4, st2), testEvent(5, st1))
		got := map[models.Topic][]int64{}
		var prev delivery
		for range 7 { // runs [1 2] [3] [4] [5]; station runs arrive twice
			d := r.next(t)
			same := prev.msgs != nil && slices.Equal(d.seqs(), prev.seqs())
			if prev.msgs != nil && !same && d.msgs[0].Seq() <= prev.msgs[len(prev.msgs)-1].Seq() {
				t.Fatalf("delivery %v on %s after %v on %s: out of order", d.seqs(), d.topic, prev.seqs(), prev.topic)
			}
			got[d.topic] = append(got[d.topic], d.seqs()...)
			prev = d
		}
		want := map[models.Topic][]int64{st1: {1, 2, 5}, st2: {4}, u4: {3}, models.TopicStations: {1, 2, 4, 5}}
		for topic, seqs := range want {
			if !slices.Equal(got[topic], seqs) {
				t.Errorf("on %s got %v, want %v", topic, got[topic], seqs)
			}
		}
	})

	t.Run("Close", func(t *testing.T) {
		b, _ := start(t)
		ctx := context.Background()
		mustSubscribe(t, b, models.TopicStations) // connected by now
		if err := b.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		if err := b.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := b.Ping(ctx); !errors.Is(err, ErrClosed) {
			t.Errorf("Ping after Close = %v, want ErrClosed", err)
		}
		if err := b.Subscribe(ctx, models.TopicStations); !errors.Is(err, ErrClosed) {
			t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
		}
		if err := b.Publish(ctx, []models.Event{testEvent(1, models.TopicStations)}); !errors.Is(err, ErrClosed) {
			t.Errorf("Publish after Close = %v, want ErrClosed", err)
		}
		if err := b.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

type delivery struct {
	topic models.Topic
	msgs  []*Message
}

func (d delivery) seqs() []int64 { return msgSeqs(d.msgs) }

// recorder is a Handler that hands deliveries to the test.
type recorder struct {
	deliveries chan delivery
	resyncs    chan struct{}
}

func newRecorder() *recorder {
	return &recorder{deliveries: make(chan delivery, 1024), resyncs: make(chan struct{}, 16)}
}

func (r *recorder) Deliver(topic models.Topic, msgs []*Message) {
	r.deliveries <- delivery{topic, slices.Clone(msgs)}
}
func (r *recorder) Resync() { r.resyncs <- struct{}{} }

func (r *recorder) next(t *testing.T) delivery {
	t.Helper()
	select {
	case d := <-r.deliveries:
		return d
	case <-time.After(5 * time.Second): // a failure guard, not a synchronisation
		t.Fatal("no delivery within 5s")
		return delivery{}
	}
}

func testEvent(seq int64, topic models.Topic) models.Event {
	at := time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC)
	return models.Event{
		Seq:       seq,
		Type:      models.EventInventoryUpdate,
		Topic:     topic,
		Payload:   models.NewPayload(models.EventInventoryUpdate, at, map[string]any{"station_name": "Nørrebro \"1\"\n"}),
		CreatedAt: at,
	}
}

func sameEvent(t *testing.T, got *models.Event, want models.Event) {
	t.Helper()
	if got.Seq != want.Seq || got.Type != want.Type || got.Topic != want.Topic ||
		!bytes.Equal(got.Payload, want.Payload) || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("event = %+v\nwant %+v", *got, want)
	}
}

func mustSubscribe(t *testing.T, b Broker, topics ...models.Topic) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Subscribe(ctx, topics...); err != nil {
		t.Fatalf("Subscribe(%v): %v", topics, err)
	}
}

// mustPublish publishes evs as one batch.
func mustPublish(t *testing.T, b Broker, evs ...models.Event) {
	t.Helper()
	if err := b.Publish(context.Background(), evs); err != nil {
		t.Fatalf("Publish(%d..%d): %v", evs[0].Seq, evs[len(evs)-1].Seq, err)
	}
}
