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
	if d := rb.next(t); !slices.Equal(d.seqs(), []int64{1}) {
		t.Errorf("instance b got events %v, want [1]", d.seqs())
	}
	if d := ra.next(t); !slices.Equal(d.seqs(), []int64{2}) {
		t.Errorf("instance a got events %v, want [2]", d.seqs())
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

// A Subscribe that only adds a reference to channels already joined and
// confirmed on the live connection writes no barrier PING and waits for
// none; a new channel, or one given up and joined again, still does. The
// subscriptions so made get their events.
func TestRedisBrokerSkipsTheBarrierForActiveChannels(t *testing.T) {
	client := testRedisClient(t)
	b := NewRedisBroker(client, RedisOptions{Prefix: testPrefix()})
	rec := newRecorder()
	b.Start(rec)
	t.Cleanup(func() { _ = b.Close() })
	tokens := func() uint64 {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.token
	}
	st := models.StationTopic(1)

	mustSubscribe(t, b, st)
	first := tokens()
	mustSubscribe(t, b, st)
	mustSubscribe(t, b, st)
	if got := tokens(); got != first {
		t.Fatalf("subscribing an active channel wrote barriers %d..%d", first+1, got)
	}
	mustPublish(t, b, testEvent(1, st))
	if d := rec.next(t); !slices.Equal(d.seqs(), []int64{1}) {
		t.Fatalf("got events %v, want [1]", d.seqs())
	}

	b.Unsubscribe(st, st) // one reference left: still joined
	mustSubscribe(t, b, st)
	if got := tokens(); got != first {
		t.Fatalf("with a reference left, Subscribe wrote barriers %d..%d", first+1, got)
	}
	b.Unsubscribe(st, st) // the last references: the channel is left
	mustSubscribe(t, b, st)
	if got := tokens(); got != first+1 {
		t.Fatalf("joining again: barrier token %d, want %d", got, first+1)
	}
	mustSubscribe(t, b, st, models.UserTopic(2)) // one new channel: a barrier
	if got := tokens(); got != first+2 {
		t.Fatalf("with a new channel: barrier token %d, want %d", got, first+2)
	}
	mustPublish(t, b, testEvent(2, models.UserTopic(2)))
	if d := rec.next(t); !slices.Equal(d.seqs(), []int64{2}) {
		t.Fatalf("got events %v, want [2]", d.seqs())
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
	one, err := hub.Subscribe(ctx, []models.Topic{models.StationTopic(1)}, DeliverAll)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	one.Start(0)
	all, err := hub.Subscribe(ctx, []models.Topic{models.TopicStations, models.StationTopic(2)}, DeliverAll)
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
		err := broker.Publish(ctx, o.sequence())
		if wantOK && err != nil {
			t.Fatalf("publish: %v", err)
		}
		if !wantOK && err == nil {
			t.Fatal("publish succeeded with Redis down")
		}
	}

	publish(6, true)
	// With pages of 4, both replays have read their last, short page by
	// now: from here on only live delivery and the hub's catch-up count.
	expect(t, ctx, one, 1, 3, 5)
	expect(t, ctx, all, 1, 2, 3, 4, 5, 6)

	srv.Kill(t)
	publish(6, false) // events 7..12 are in the outbox, never in Redis
	// While the connection is down, a Subscribe to a channel already
	// joined waits for the next connection's confirmation; it is not
	// taken as active.
	waitFor(t, ctx, "the broker to see the connection down", func() bool {
		broker.mu.Lock()
		defer broker.mu.Unlock()
		return !broker.live
	})
	down, cancelDown := context.WithTimeout(ctx, 200*time.Millisecond)
	err = broker.Subscribe(down, models.StationTopic(1))
	cancelDown()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Subscribe to a joined channel with Redis down = %v, want it to wait for the reconnection", err)
	}
	srv.Restart(t)
	waitFor(t, ctx, "the broker to reconnect", func() bool { return broker.Ping(ctx) == nil })
	publish(4, true) // 13..16, live again

	expect(t, ctx, one, 7, 9, 11, 13, 15)
	expect(t, ctx, all, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)
	for _, s := range []*Subscription{one, all} {
		expectNothing(t, s)
	}
}

// expect reads events from s until it has len(want) and checks their ids.
func expect(t *testing.T, ctx context.Context, s *Subscription, want ...int64) {
	t.Helper()
	var got []int64
	for len(got) < len(want) {
		batch, err := s.Next(ctx, nil)
		if err != nil {
			t.Fatalf("got events %v, then Next: %v; want %v", got, err, want)
		}
		got = append(got, msgSeqs(batch)...)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got events %v, want %v", got, want)
	}
}

// expectNothing checks that s has nothing pending.
func expectNothing(t *testing.T, s *Subscription) {
	t.Helper()
	now := make(chan time.Time, 1)
	now <- time.Time{}
	if batch, err := s.Next(context.Background(), now); batch != nil || err != nil {
		t.Errorf("Next = %v, %v; want nothing pending", msgSeqs(batch), err)
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

func TestRunCodec(t *testing.T) {
	for _, run := range [][]models.Event{
		{testEvent(1, models.StationTopic(3))},
		{testEvent(1, models.StationTopic(3)), testEvent(2, models.StationTopic(3))},
		{{Seq: 1<<63 - 1, Type: "x", Topic: models.UserTopic(1), Payload: []byte(`{}`), CreatedAt: time.Unix(-5, 999999999).UTC()}},
		{{}},
	} {
		got, err := decodeRun(string(encodeRun(run)))
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", run, err)
		}
		if len(got) != len(run) {
			t.Fatalf("decoded %d events, want %d", len(got), len(run))
		}
		for i := range run {
			sameEvent(t, &got[i], run[i])
		}
	}
	for _, bad := range []string{"", "\x01", "\x02", "\x02\x00", "\x02\x01", "\x02\x01\x05\x00\x00\x09ab", "\x02\xff\xff\xff\x0f"} {
		if _, err := decodeRun(bad); !errors.Is(err, errBadPayload) {
			t.Errorf("decodeRun(%q) error = %v, want errBadPayload", bad, err)
		}
	}
	ok := encodeRun([]models.Event{testEvent(1, models.StationTopic(3))})
	if _, err := decodeRun(string(append(ok, 'x'))); !errors.Is(err, errBadPayload) {
		t.Errorf("trailing byte: error = %v, want errBadPayload", err)
	}
}

func FuzzRunCodec(f *testing.F) {
	f.Add(int64(1), "inventory_update", "station:1", []byte(`{"a":1}`), int64(1700000000), uint32(5), uint8(2), []byte{})
	f.Fuzz(func(t *testing.T, seq int64, typ, topic string, payload []byte, sec int64, nsec uint32, n uint8, junk []byte) {
		_, _ = decodeRun(string(junk)) // must not panic
		if seq < 0 || nsec >= uint32(time.Second) || n == 0 {
			return
		}
		run := make([]models.Event, n)
		for i := range run {
			run[i] = models.Event{Seq: seq, Type: typ, Topic: models.Topic(topic), Payload: payload, CreatedAt: time.Unix(sec, int64(nsec)).UTC()}
		}
		got, err := decodeRun(string(encodeRun(run)))
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		for i, ev := range run {
			g := got[i]
			if g.Seq != ev.Seq || g.Type != ev.Type || g.Topic != ev.Topic || !bytes.Equal(g.Payload, ev.Payload) || !g.CreatedAt.Equal(ev.CreatedAt) {
				t.Fatalf("round trip = %+v, want %+v", g, ev)
			}
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
