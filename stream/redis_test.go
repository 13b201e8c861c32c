package stream

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"batteryswap/models"
	"batteryswap/stream/redistest"
)

func TestRedisBroker(t *testing.T) {
	client := testRedisClient(t)
	testBroker(t, func(t *testing.T) Broker {
		return NewRedisBroker(client, RedisOptions{Prefix: testPrefix()})
	})
}

// An instance joins in Redis only the topics its subscribers follow, and
// gets events published by another instance.
func TestRedisBrokerJoinsOnlyFollowedTopics(t *testing.T) {
	client := testRedisClient(t)
	ctx := context.Background()
	prefix := testPrefix()
	a, b := NewRedisBroker(client, RedisOptions{Prefix: prefix}), NewRedisBroker(client, RedisOptions{Prefix: prefix})
	ra, rb := newRecorder(), newRecorder()
	a.Start(ra)
	b.Start(rb)
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })

	mustSubscribe(t, a, models.StationTopic(1))
	mustSubscribe(t, b, models.UserTopic(9))
	channels, err := client.PubSubChannels(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(channels)
	if want := []string{prefix + "station:1", prefix + "user:9"}; !slices.Equal(channels, want) {
		t.Errorf("channels in Redis = %v, want %v", channels, want)
	}

	mustPublish(t, a, testEvent(1, models.UserTopic(9)))
	mustPublish(t, b, testEvent(2, models.StationTopic(1)))
	if d := rb.next(t); d.msg.Seq() != 1 {
		t.Errorf("instance b got event %d, want 1", d.msg.Seq())
	}
	if d := ra.next(t); d.msg.Seq() != 2 {
		t.Errorf("instance a got event %d, want 2", d.msg.Seq())
	}

	a.Unsubscribe(models.StationTopic(1))
	mustSubscribe(t, a, models.UserTopic(9)) // its barrier proves the UNSUBSCRIBE done
	channels, err = client.PubSubChannels(ctx, prefix+"station:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(channels) != 0 {
		t.Errorf("after the last Unsubscribe Redis still has %v", channels)
	}
}

// A connected subscriber loses nothing when Redis restarts: events whose
// publication failed while Redis was down reach it through the hub's
// catch-up from the outbox, exactly once and in order, and live delivery
// resumes after.
func TestRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = client.Close() })
	broker := NewRedisBroker(client, RedisOptions{
		Prefix:         testPrefix(),
		HealthInterval: time.Second,
		MinBackoff:     10 * time.Millisecond,
		MaxBackoff:     100 * time.Millisecond,
	})
	o := newFakeOutbox()
	hub := NewHub(broker, o, HubOptions{ReplayBatch: 4})
	t.Cleanup(func() { hub.Close(); _ = broker.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	one, err := hub.Subscribe(ctx, []models.Topic{models.StationTopic(1)})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	one.Start(0)
	all, err := hub.Subscribe(ctx, []models.Topic{models.TopicStations, models.StationTopic(2)})
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	all.Start(0)

	// publish plays the relay: sequence what is waiting, publish it in
	// order, and mark it published only when Redis took it.
	publish := func(n int, wantOK bool) {
		t.Helper()
		for i := range n {
			o.add(models.StationTopic(int64(i%2 + 1)))
		}
		for _, ev := range o.sequence() {
			err := broker.Publish(ctx, &ev)
			if wantOK && err != nil {
				t.Fatalf("publish %d: %v", ev.Seq, err)
			}
			if !wantOK && err == nil {
				t.Fatalf("publish %d succeeded with Redis down", ev.Seq)
			}
		}
	}

	publish(6, true)
	// With pages of 4, both replays have read their last, short page by
	// now: from here on only live delivery and the hub's catch-up count.
	expect(t, ctx, one, 1, 3, 5)
	expect(t, ctx, all, 1, 2, 3, 4, 5, 6)

	srv.Kill(t)
	publish(6, false) // events 7..12 are in the outbox, never in Redis
	srv.Restart(t)
	waitFor(t, ctx, "the broker to reconnect", func() bool { return broker.Ping(ctx) == nil })
	publish(4, true) // 13..16, live again

	expect(t, ctx, one, 7, 9, 11, 13, 15)
	expect(t, ctx, all, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)
	for _, s := range []*Subscription{one, all} {
		if m, ok := s.TryNext(); ok {
			t.Errorf("unexpected extra event %d", m.Seq())
		}
	}
}

// expect reads len(want) events from s and checks their ids.
func expect(t *testing.T, ctx context.Context, s *Subscription, want ...int64) {
	t.Helper()
	got := make([]*Message, 0, len(want))
	for range want {
		m, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("got events %v, then Next: %v; want %v", msgSeqs(got), err, want)
		}
		if got = append(got, m); m.Seq() != want[len(got)-1] {
			t.Fatalf("got events %v, want %v", msgSeqs(got), want)
		}
	}
}

// waitFor polls cond until it holds; only for waiting on another process.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func TestEventCodec(t *testing.T) {
	for _, ev := range []models.Event{
		testEvent(1, models.StationTopic(3)),
		{Seq: 1<<63 - 1, Type: "x", Topic: models.UserTopic(1), Payload: []byte(`{}`), CreatedAt: time.Unix(-5, 999999999).UTC()},
		{},
	} {
		got, err := decodeEvent(string(encodeEvent(&ev)))
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", ev, err)
		}
		sameEvent(t, got, ev)
	}
	for _, bad := range []string{"", "\x02", "\x01", "\x01\x05\x00\x00\x09ab"} {
		if _, err := decodeEvent(bad); !errors.Is(err, errBadPayload) {
			t.Errorf("decodeEvent(%q) error = %v, want errBadPayload", bad, err)
		}
	}
}

func FuzzEventCodec(f *testing.F) {
	f.Add(int64(1), "inventory_update", "station:1", []byte(`{"a":1}`), int64(1700000000), uint32(5), []byte{})
	f.Fuzz(func(t *testing.T, seq int64, typ, topic string, payload []byte, sec int64, nsec uint32, junk []byte) {
		_, _ = decodeEvent(string(junk)) // must not panic
		if seq < 0 || nsec >= uint32(time.Second) {
			return
		}
		ev := models.Event{Seq: seq, Type: typ, Topic: models.Topic(topic), Payload: payload, CreatedAt: time.Unix(sec, int64(nsec)).UTC()}
		got, err := decodeEvent(string(encodeEvent(&ev)))
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		if got.Seq != ev.Seq || got.Type != ev.Type || got.Topic != ev.Topic || !bytes.Equal(got.Payload, ev.Payload) || !got.CreatedAt.Equal(ev.CreatedAt) {
			t.Fatalf("round trip = %+v, want %+v", *got, ev)
		}
	})
}

// testRedisClient connects to TEST_REDIS_URL, or skips (fails under
// REQUIRE_SERVICES=1) when it is not set.
func testRedisClient(t *testing.T) *redis.Client {
	t.Helper()
	url := os.Getenv("TEST_REDIS_URL")
	if url == "" {
		requireService(t, "TEST_REDIS_URL is not set")
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("TEST_REDIS_URL: %v", err)
	}
	client := redis.NewClient(opt)
	t.Cleanup(func() { _ = client.Close() })
	if err := client.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis at TEST_REDIS_URL: %v", err)
	}
	return client
}

func requireService(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("REQUIRE_SERVICES") == "1" {
		t.Fatal(why + " (REQUIRE_SERVICES=1)")
	}
	t.Skip(why)
}

// testPrefix keeps each test's channels apart from other tests and runs
// sharing the same Redis.
func testPrefix() string { return "batteryswap-test:" + rand.Text() + ":" }

// PublishBatch delivers a batch on every channel of each event, in order,
// as the relay publishes it in one round trip.
func TestRedisPublishBatch(t *testing.T) {
	client := testRedisClient(t)
	b := NewRedisBroker(client, RedisOptions{Prefix: testPrefix()})
	rec := newRecorder()
	b.Start(rec)
	t.Cleanup(func() { _ = b.Close() })
	mustSubscribe(t, b, models.TopicStations, models.UserTopic(4))
	batch := []models.Event{testEvent(1, models.StationTopic(2)), testEvent(2, models.UserTopic(4)), testEvent(3, models.StationTopic(5))}
	if err := b.PublishBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		seq   int64
		topic models.Topic
	}{{1, models.TopicStations}, {2, models.UserTopic(4)}, {3, models.TopicStations}} {
		d := rec.next(t)
		if d.msg.Seq() != want.seq || d.topic != want.topic {
			t.Fatalf("got event %d on %s, want %d on %s", d.msg.Seq(), d.topic, want.seq, want.topic)
		}
	}
	_ = b.Close()
	if err := b.PublishBatch(context.Background(), batch); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}
