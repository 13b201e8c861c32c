package api_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"batteryswap/api"
	"batteryswap/models"
	"batteryswap/store"
	"batteryswap/store/storetest"
	"batteryswap/stream"
)

// countingStore counts the reads a stream's opening makes.
type countingStore struct {
	*store.Store
	allStations, stationByID, exists atomic.Int64
}

func (c *countingStore) AllStations(ctx context.Context) ([]models.Station, error) {
	c.allStations.Add(1)
	return c.Store.AllStations(ctx)
}

func (c *countingStore) FindStationByID(ctx context.Context, id int64) (*models.Station, error) {
	c.stationByID.Add(1)
	return c.Store.FindStationByID(ctx, id)
}

func (c *countingStore) StationExists(ctx context.Context, id int64) (bool, error) {
	c.exists.Add(1)
	return c.Store.StationExists(ctx, id)
}

// gatedBroker is a memory broker whose Subscribe can be held until its
// caller gives up, as a Redis broker's does while Redis is down.
type gatedBroker struct {
	*stream.MemoryBroker
	hold atomic.Bool
}

func (g *gatedBroker) Subscribe(ctx context.Context, topics ...models.Topic) error {
	if g.hold.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return g.MemoryBroker.Subscribe(ctx, topics...)
}

type openEnv struct {
	st     *countingStore
	hub    *stream.Hub
	broker *gatedBroker
	ts     *httptest.Server
	reg    *prometheus.Registry
}

func newOpenEnv(t *testing.T, heartbeat time.Duration) *openEnv {
	t.Helper()
	st := &countingStore{Store: storetest.Open(t, "sqlite", store.Options{})}
	broker := &gatedBroker{MemoryBroker: stream.NewMemoryBroker()}
	t.Cleanup(func() { _ = broker.Close() })
	reg := prometheus.NewRegistry()
	metrics := stream.NewMetrics(reg)
	hub := stream.NewHub(broker, st, stream.HubOptions{Metrics: metrics})
	t.Cleanup(hub.Close)
	srv := api.New(api.Config{
		JWTSecret: []byte("test"), BcryptCost: 4, AuthRateLimit: -1, BookingRateLimit: -1,
		MaxStreamsPerClient: 1000, Registry: reg, StreamMetrics: metrics, HeartbeatInterval: heartbeat,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}, st, hub, broker)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &openEnv{st: st, hub: hub, broker: broker, ts: ts, reg: reg}
}

// opening reads a fresh NDJSON stream's two opening events.
func opening(t *testing.T, addr, path string) (s *rawStream, established, snapshot map[string]any) {
	t.Helper()
	s = dialStream(t, addr, path+"?format=ndjson")
	if status, _ := s.head(t); !strings.Contains(status, " 200 ") {
		t.Fatalf("status %q", status)
	}
	for _, into := range []*map[string]any{&established, &snapshot} {
		if err := json.Unmarshal([]byte(s.line(t)), into); err != nil {
			t.Fatal(err)
		}
	}
	return s, established, snapshot
}

// A storm of fresh connects to a station stream at one head costs one
// snapshot read and one existence check, however many arrive at once; the
// next event moves the head, and the next connect reads the state again.
func TestFreshStationStreamsShareTheirOpening(t *testing.T) {
	e := newOpenEnv(t, time.Minute)
	ctx := t.Context()
	st, err := e.st.CreateStation(ctx, models.StationInput{Name: "Hub", Address: "1 Road", Latitude: 1, Longitude: 2})
	if err != nil {
		t.Fatal(err)
	}
	addr := e.ts.Listener.Addr().String()
	path := "/stream/stations/" + itoa(st.ID)
	// A first subscriber keeps the topic joined, so the head holds still.
	_, _, _ = opening(t, addr, path)
	reads, checks := e.st.stationByID.Load(), e.st.exists.Load()

	const n = 40
	var wg sync.WaitGroup
	ids := make([]string, n)
	for i := range n {
		wg.Go(func() {
			_, est, snap := opening(t, addr, path)
			if est["id"] != snap["id"] {
				t.Errorf("connection_established id %v, snapshot id %v", est["id"], snap["id"])
			}
			ids[i] = snap["id"].(string)
		})
	}
	wg.Wait()
	if got := e.st.stationByID.Load() - reads; got != 0 {
		t.Errorf("%d more snapshot reads for %d connects at one head, want 0", got, n)
	}
	if got := e.st.exists.Load() - checks; got != 0 {
		t.Errorf("%d more existence checks, want 0", got)
	}
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("snapshot ids %v: want one head", ids)
		}
	}

	if _, err := e.st.UpdateStation(ctx, st.ID, models.StationPatch{Message: ptr("busy")}); err != nil {
		t.Fatal(err)
	}
	publishPending(t, e)
	_, _, snap := opening(t, addr, path)
	if snap["id"] == ids[0] {
		t.Fatalf("snapshot id %v after an event, want a later head", snap["id"])
	}
	if got := e.st.stationByID.Load() - reads; got != 1 {
		t.Errorf("%d snapshot reads after the head moved, want 1", got)
	}
}

// When every subscriber of a topic has left, events pass the instance
// unseen; the next subscriber must not get a snapshot built before them.
func TestSnapshotAfterTheTopicWasLeftIsFresh(t *testing.T) {
	e := newOpenEnv(t, 20*time.Millisecond)
	ctx := t.Context()
	st, err := e.st.CreateStation(ctx, models.StationInput{Name: "Hub", Address: "1 Road", Latitude: 1, Longitude: 2})
	if err != nil {
		t.Fatal(err)
	}
	addr := e.ts.Listener.Addr().String()
	path := "/stream/stations/" + itoa(st.ID)
	first, _, _ := opening(t, addr, path)
	first.conn.Close()
	// Its next heartbeat finds the client gone; no event moved the head.
	eventually(t, "the first subscriber is gone", func() bool { return e.hub.Subscribers() == 0 })

	// Nobody follows the topic: the broker drops this event, the hub never
	// sees it, and its head does not move.
	if _, err := e.st.UpdateStation(ctx, st.ID, models.StationPatch{Message: ptr("unseen")}); err != nil {
		t.Fatal(err)
	}
	publishPending(t, e)
	_, _, snap := opening(t, addr, path)
	stations := snap["stations"].([]any)
	if msg := stations[0].(map[string]any)["message"]; msg != "unseen" {
		t.Fatalf("snapshot message %q, want the unseen change", msg)
	}
}

// A client that hangs up while its stream waits for the broker is not a
// server error: it is recorded as 499.
func TestStreamClientGoneWhileSubscribingIs499(t *testing.T) {
	e := newOpenEnv(t, time.Minute)
	e.broker.hold.Store(true)
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.ts.URL+"/stream/stations", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		res, err := e.ts.Client().Do(req)
		if err == nil {
			res.Body.Close()
		}
		done <- err
	}()
	eventually(t, "the stream waits for the broker", func() bool { return e.hub.Subscribers() == 1 })
	cancel()
	<-done
	eventually(t, "the request is recorded", func() bool {
		return metricValue(t, e.reg, "batteryswap_http_request_duration_seconds", "status", "499") == 1
	})
	if n := metricValue(t, e.reg, "batteryswap_http_request_duration_seconds", "status", "500"); n != 0 {
		t.Fatalf("%v requests recorded as 500", n)
	}
}

// publishPending relays what the store's outbox holds, as the relay would.
func publishPending(t *testing.T, e *openEnv) {
	t.Helper()
	lease, err := e.st.AcquireRelay(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()
	evs, err := lease.Pending(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 {
		return
	}
	if err := e.broker.Publish(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	if err := lease.MarkPublished(t.Context(), evs[len(evs)-1].Seq); err != nil {
		t.Fatal(err)
	}
}

// metricValue sums a metric's series whose labels include labels.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	e := &leanEnv{reg: reg}
	return e.metric(t, name, labels...)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func ptr[T any](v T) *T { return &v }

// delivery=latest is for station streams; other values are refused.
func TestDeliveryParameter(t *testing.T) {
	e := newOpenEnv(t, time.Minute)
	res, err := e.ts.Client().Post(e.ts.URL+"/api/v1/auth/register", "application/json",
		strings.NewReader(`{"email":"r@example.com","password":"long enough","name":"R"}`))
	if err != nil {
		t.Fatal(err)
	}
	var reg struct{ Token string }
	if err := json.NewDecoder(res.Body).Decode(&reg); err != nil || reg.Token == "" {
		t.Fatalf("register: %v %+v", err, reg)
	}
	res.Body.Close()
	token := reg.Token
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/stream/stations?delivery=latest&transport=poll&timeout=0", http.StatusOK},
		{"/stream/stations?delivery=all&transport=poll&timeout=0", http.StatusOK},
		{"/stream/stations?delivery=newest&transport=poll&timeout=0", http.StatusBadRequest},
		{"/stream?topics=stations,notifications&delivery=latest", http.StatusBadRequest},
		{"/stream/notifications?delivery=latest", http.StatusBadRequest},
		{"/stream/notifications?delivery=all&transport=poll&timeout=0", http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodGet, e.ts.URL+tc.path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := e.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("GET %s = %d, want %d", tc.path, res.StatusCode, tc.want)
		}
	}
}
