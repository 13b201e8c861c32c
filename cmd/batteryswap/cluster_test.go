package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"batteryswap/models"
	"batteryswap/sseclient"
	"batteryswap/store/storetest"
)

// instance is one in-process batteryswap server, as `serve` runs it.
type instance struct {
	app *app
	url string
	ln  net.Listener
}

func testConfig(t *testing.T, dbURL, redisURL string) Config {
	t.Helper()
	// Redis pub/sub channels are shared by every database of a server:
	// instances of one test share a prefix that no other run uses.
	prefix := "bs-test-" + rand.Text() + ":"
	if dbURL != "" {
		prefix = "bs-test-" + strconv.FormatUint(uint64(crc32.ChecksumIEEE([]byte(dbURL))), 36) + ":"
	}
	cfg, err := loadConfig(func(k string) string {
		switch k {
		case "REDIS_PREFIX":
			return prefix
		case "DATABASE_URL":
			return dbURL
		case "REDIS_URL":
			return redisURL
		case "JWT_SECRET":
			return "cluster-test-secret-of-32-bytes!"
		case "ADDR":
			return "127.0.0.1:0"
		case "AUTH_RATE_LIMIT", "BOOKING_RATE_LIMIT":
			return "-1"
		case "HEARTBEAT_INTERVAL":
			return "1s"
		case "LOG_LEVEL":
			return "error"
		}
		return ""
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func redisURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("TEST_REDIS_URL")
	if u == "" {
		if os.Getenv("REQUIRE_SERVICES") == "1" {
			t.Fatal("TEST_REDIS_URL is not set and REQUIRE_SERVICES=1")
		}
		t.Skip("TEST_REDIS_URL not set")
	}
	return u
}

func startInstance(t *testing.T, cfg Config) *instance {
	t.Helper()
	return startInstanceLogging(t, cfg, io.Discard)
}

// startInstanceLogging starts an instance whose logs go to logs.
func startInstanceLogging(t *testing.T, cfg Config, logs io.Writer) *instance {
	t.Helper()
	a, err := newApp(context.Background(), cfg, logs)
	if err != nil {
		t.Fatalf("start instance: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go a.serve(ln)
	in := &instance{app: a, url: "http://" + ln.Addr().String(), ln: ln}
	t.Cleanup(func() { in.stop(t) })
	return in
}

func (in *instance) stop(t *testing.T) {
	if in.app == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := in.app.shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	in.app = nil
}

// call makes a JSON request and decodes the answer into out (if not nil).
func call(t *testing.T, method, url, token string, body, out any) int {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, url, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// world is a small network made through the API: an admin, a rider, one station.
type world struct {
	admin, rider string
	riderID      int64
	station      int64
	battery      int64
}

func setup(t *testing.T, in *instance, s interface {
	CreateUser(context.Context, string, string, string, models.Role) (*models.User, error)
}) world {
	t.Helper()
	var w world
	var out struct {
		Token string       `json:"token"`
		User  *models.User `json:"user"`
	}
	if _, err := s.CreateUser(context.Background(), "admin@example.com", "Admin", mustHash(t, "adminpass"), models.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	call(t, "POST", in.url+"/api/v1/auth/login", "", map[string]string{"email": "admin@example.com", "password": "adminpass"}, &out)
	w.admin = out.Token
	if st := call(t, "POST", in.url+"/api/v1/auth/register", "", map[string]string{"email": "rider@example.com", "password": "riderpass", "name": "Rider"}, &out); st != 201 {
		t.Fatalf("register: %d", st)
	}
	w.rider, w.riderID = out.Token, out.User.ID
	var st models.Station
	if code := call(t, "POST", in.url+"/api/v1/stations", w.admin, map[string]any{"name": "Central", "address": "1 Main St", "latitude": 1, "longitude": 2}, &st); code != 201 {
		t.Fatalf("create station: %d", code)
	}
	w.station = st.ID
	var b models.Battery
	if code := call(t, "POST", in.url+fmt.Sprintf("/api/v1/stations/%d/batteries", st.ID), w.admin, map[string]any{"serial_number": "B-1", "charge_percent": 95}, &b); code != 201 {
		t.Fatalf("add battery: %d", code)
	}
	w.battery = b.ID
	waitPublished(t, in, 4)
	return w
}

// waitPublished waits until the relay has sequenced n events, so that a
// subscriber opened afterwards starts after them.
func waitPublished(t *testing.T, in *instance, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		last, _, err := in.app.store.Head(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if last >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay sequenced %d of %d events within 10s", last, n)
		}
		time.Sleep(20 * time.Millisecond) // polling another goroutine's database work, with a deadline
	}
}

// eventually polls cond until it holds, and fails the test with what after
// a generous limit.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling another goroutine's progress, with a deadline
	}
}

func mustHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := hashForTest(pw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// ev is a received event: its id and decoded payload.
type ev struct {
	ID   int64
	Type string
	Data map[string]any
}

func decode(t *testing.T, raw []byte) ev {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("event %q: %v", raw, err)
	}
	id, err := strconv.ParseInt(fmt.Sprint(m["id"]), 10, 64)
	if err != nil {
		t.Fatalf("event id %v: %v", m["id"], err)
	}
	return ev{ID: id, Type: fmt.Sprint(m["type"]), Data: m}
}

// subscribeSSE follows url with the wrapped r3labs client into a channel.
func subscribeSSE(t *testing.T, url string, opts sseclient.Options) <-chan ev {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan ev, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = sseclient.Follow(ctx, url, opts, func(e sseclient.Event) error {
			got := decode(t, e.Data)
			if strconv.FormatInt(got.ID, 10) != e.ID || got.Type != e.Type {
				t.Errorf("SSE id/event lines %q/%q disagree with data %v", e.ID, e.Type, got.Data)
			}
			ch <- got
			return nil
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ch
}

// subscribeNDJSON reads an NDJSON stream into a channel.
func subscribeNDJSON(t *testing.T, url string) <-chan ev {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-ndjson") {
		t.Fatalf("NDJSON content type %q", ct)
	}
	ch := make(chan ev, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" {
				ch <- decode(t, []byte(line))
			}
		}
	}()
	t.Cleanup(func() { cancel(); resp.Body.Close(); <-done })
	return ch
}

// subscribeWS reads a WebSocket stream into a channel.
func subscribeWS(t *testing.T, url string) (<-chan ev, *websocket.Conn) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn, _, err := websocket.Dial(ctx, strings.Replace(url, "http://", "ws://", 1), nil)
	if err != nil {
		t.Fatalf("dial websocket: %v", err)
	}
	ch := make(chan ev, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			_, data, err := conn.Read(ctx)
			if err != nil {
				return
			}
			var m map[string]any
			_ = json.Unmarshal(data, &m)
			if m["type"] == "pong" || m["type"] == "error" {
				ch <- ev{ID: -1, Type: fmt.Sprint(m["type"]), Data: m}
				continue
			}
			ch <- decode(t, data)
		}
	}()
	t.Cleanup(func() { cancel(); conn.CloseNow(); <-done })
	return ch, conn
}

// poll runs one long-poll request.
func poll(t *testing.T, url string) (events []ev, last string) {
	t.Helper()
	var out struct {
		Events      []json.RawMessage `json:"events"`
		LastEventID string            `json:"last_event_id"`
	}
	if code := call(t, "GET", url, "", nil, &out); code != 200 {
		t.Fatalf("poll %s: %d", url, code)
	}
	for _, raw := range out.Events {
		events = append(events, decode(t, raw))
	}
	return events, out.LastEventID
}

// next returns the next event of ch, failing after a generous deadline.
func next(t *testing.T, ch <-chan ev) ev {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
		return ev{}
	}
}

// until reads ch until an event of type typ, returning everything read.
func until(t *testing.T, ch <-chan ev, typ string) []ev {
	t.Helper()
	var out []ev
	for {
		e := next(t, ch)
		out = append(out, e)
		if e.Type == typ {
			return out
		}
	}
}

func cluster(t *testing.T) (a, b *instance, w world) {
	t.Helper()
	return clusterOn(t, redisURL(t))
}

// clusterOn starts two instances on one fresh PostgreSQL database and the
// Redis at rd ("": none, so PostgreSQL carries the events). A started
// first, so it holds the relay lease.
func clusterOn(t *testing.T, rd string) (a, b *instance, w world) {
	t.Helper()
	db := storetest.URL(t, "postgres")
	a = startInstance(t, testConfig(t, db, rd))
	b = startInstance(t, testConfig(t, db, rd))
	w = setup(t, a, a.app.store)
	return a, b, w
}

func TestClusterDeliversOnEveryTransportWithTheSameIDs(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-instance test")
	}
	a, b, w := cluster(t)
	sse := subscribeSSE(t, b.url+"/stream/stations", sseclient.Options{})
	nd := subscribeNDJSON(t, b.url+fmt.Sprintf("/stream/stations/%d?format=ndjson", w.station))
	ws, conn := subscribeWS(t, b.url+"/ws/stations/")
	mine := subscribeSSE(t, b.url+"/stream/notifications?access_token="+w.rider, sseclient.Options{})
	var cursor string
	for name, ch := range map[string]<-chan ev{"sse": sse, "ndjson": nd, "ws": ws, "notifications": mine} {
		hello := next(t, ch)
		snap := next(t, ch)
		if hello.Type != "connection_established" || snap.Type != "snapshot" || hello.ID != snap.ID {
			t.Fatalf("%s opened with %s/%s ids %d/%d", name, hello.Type, snap.Type, hello.ID, snap.ID)
		}
		if name == "sse" {
			cursor = strconv.FormatInt(snap.ID, 10)
			stations, _ := snap.Data["stations"].([]any)
			if len(stations) != 1 || snap.Data["reset"] != false {
				t.Fatalf("snapshot = %v", snap.Data)
			}
		}
		if name == "notifications" {
			if _, ok := snap.Data["unread"]; !ok || hello.Data["user_id"] != float64(w.riderID) {
				t.Fatalf("notification stream opened with %v / %v", hello.Data, snap.Data)
			}
		}
	}

	// A booking on instance A ...
	var booking models.Booking
	if code := call(t, "POST", a.url+"/api/v1/bookings", w.rider, map[string]any{"station_id": w.station}, &booking); code != 201 {
		t.Fatalf("book: %d", code)
	}
	// ... reaches every transport on instance B, with the same ids.
	want := until(t, sse, "inventory_update")
	if len(want) != 2 || want[0].Type != "battery_booked" || want[1].Data["action"] != "booked" {
		t.Fatalf("SSE got %+v", want)
	}
	for name, ch := range map[string]<-chan ev{"ndjson": nd, "ws": ws} {
		got := until(t, ch, "inventory_update")
		if len(got) != 2 || got[0].ID != want[0].ID || got[1].ID != want[1].ID {
			t.Fatalf("%s ids %v, want %v", name, got, want)
		}
	}
	events, last := poll(t, b.url+"/stream/stations?transport=poll&timeout=5&since="+cursor)
	if len(events) != 2 || events[0].ID != want[0].ID || events[1].ID != want[1].ID || last != strconv.FormatInt(want[1].ID, 10) {
		t.Fatalf("poll got %+v last %s", events, last)
	}
	for _, e := range want {
		if _, ok := e.Data["user_id"]; ok {
			t.Fatalf("public event carries a user id: %v", e.Data)
		}
	}
	got := until(t, mine, "booking_ready")
	if got[0].Type != "booking_confirmed" || got[0].Data["booking_id"] != float64(booking.ID) {
		t.Fatalf("notifications: %+v", got)
	}

	// WebSocket control messages.
	ctx := context.Background()
	_ = conn.Write(ctx, websocket.MessageText, []byte(`{"type":"ping","timestamp":12345}`))
	if e := next(t, ws); e.Type != "pong" || e.Data["timestamp"] != 12345.0 {
		t.Fatalf("pong = %v", e.Data)
	}
	_ = conn.Write(ctx, websocket.MessageText, []byte(`not json`))
	if e := next(t, ws); e.Type != "error" || e.Data["message"] == "" {
		t.Fatalf("error reply = %v", e.Data)
	}
	_ = conn.Write(ctx, websocket.MessageText, []byte(`{"type":"ping","timestamp":"x"}`))
	if e := next(t, ws); e.Type != "pong" || e.Data["timestamp"] != "x" {
		t.Fatalf("socket closed after bad input: %v", e.Data)
	}
	// An oversized message is refused, and the socket stays open too.
	_ = conn.Write(ctx, websocket.MessageText, []byte(`{"type":"ping","timestamp":"`+strings.Repeat("x", 20000)+`"}`))
	if e := next(t, ws); e.Type != "error" || !strings.Contains(fmt.Sprint(e.Data["message"]), "8 KiB") {
		t.Fatalf("reply to 20 KB = %v", e.Data)
	}
	_ = conn.Write(ctx, websocket.MessageText, []byte(`{"type":"ping","timestamp":7}`))
	if e := next(t, ws); e.Type != "pong" || e.Data["timestamp"] != 7.0 {
		t.Fatalf("socket closed after an oversized message: %v", e.Data)
	}
}

// Without REDIS_URL, two instances on one PostgreSQL database still deliver
// every event on both: the relay (on A) NOTIFYs, and each instance reads
// the new events from the outbox. After A stops, B relays and delivers its
// own events.
func TestClusterWithoutRedisDeliversThroughPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-instance test")
	}
	a, b, w := clusterOn(t, "")
	for _, in := range []*instance{a, b} {
		if got := in.app.brokerName(); got != "postgres" {
			t.Fatalf("broker %q without REDIS_URL on PostgreSQL, want postgres", got)
		}
	}
	onA := subscribeSSE(t, a.url+"/stream/stations", sseclient.Options{})
	onB := subscribeSSE(t, b.url+"/stream/stations", sseclient.Options{})
	mine := subscribeNDJSON(t, b.url+"/stream/notifications?format=ndjson&access_token="+w.rider)
	for _, ch := range []<-chan ev{onA, onB, mine} {
		until(t, ch, "snapshot")
	}
	// Booked on B, relayed by A, delivered on both.
	var booking models.Booking
	if code := call(t, "POST", b.url+"/api/v1/bookings", w.rider, map[string]any{"station_id": w.station}, &booking); code != 201 {
		t.Fatalf("book: %d", code)
	}
	want := until(t, onA, "inventory_update")
	got := until(t, onB, "inventory_update")
	if len(want) != 2 || len(got) != 2 || got[0].ID != want[0].ID || got[1].ID != want[1].ID || got[0].Type != "battery_booked" {
		t.Fatalf("A got %+v, B got %+v", want, got)
	}
	if n := until(t, mine, "booking_confirmed"); n[len(n)-1].Data["booking_id"] != float64(booking.ID) {
		t.Fatalf("notifications on B: %+v", n)
	}
	if code := call(t, "GET", b.url+"/readyz", "", nil, nil); code != 200 {
		t.Fatalf("readyz on B: %d", code)
	}

	// A leaves; B takes the relay lease and its own events reach its
	// subscriber, exactly those of the stream's history.
	a.stop(t)
	if code := call(t, "POST", b.url+fmt.Sprintf("/api/v1/bookings/%d/cancel", booking.ID), w.rider, nil, nil); code != 200 {
		t.Fatalf("cancel: %d", code)
	}
	after := until(t, onB, "inventory_update")
	history, _ := poll(t, b.url+fmt.Sprintf("/stream/stations?transport=poll&timeout=5&since=%d", got[1].ID))
	if len(after) != len(history) || after[0].ID != history[0].ID || after[len(after)-1].Data["action"] != "cancelled" {
		t.Fatalf("after A stopped, B got %+v; its history after %d: %+v", after, got[1].ID, history)
	}
}

func TestClusterResumeOnTheOtherInstance(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-instance test")
	}
	a, b, w := cluster(t)
	// Follow on A, remember the cursor, disconnect.
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan ev, 16)
	go sseclient.Follow(ctx, a.url+"/stream/stations", sseclient.Options{}, func(e sseclient.Event) error {
		first <- decode(t, e.Data)
		return nil
	})
	next(t, first)
	cursor := next(t, first).ID
	cancel()

	// Changes while away: three telemetry readings and a booking.
	for _, c := range []int{40, 90, 50} {
		if code := call(t, "PATCH", a.url+fmt.Sprintf("/api/v1/batteries/%d", w.battery), w.admin, map[string]int{"charge_percent": c}, nil); code != 200 {
			t.Fatalf("telemetry: %d", code)
		}
	}
	// Resume on B with the cursor: exactly the missed events, in order, then live ones.
	ch := subscribeSSE(t, b.url+"/stream/stations", sseclient.Options{LastEventID: strconv.FormatInt(cursor, 10)})
	var actions []string
	prev := cursor
	for range 3 {
		e := next(t, ch)
		if e.ID <= prev || e.Type != "inventory_update" {
			t.Fatalf("replayed %+v after %d", e, prev)
		}
		prev = e.ID
		actions = append(actions, fmt.Sprint(e.Data["action"]))
	}
	if got := strings.Join(actions, ","); got != "updated,charged,updated" {
		t.Fatalf("replayed actions %s", got)
	}
	call(t, "PATCH", a.url+fmt.Sprintf("/api/v1/batteries/%d", w.battery), w.admin, map[string]int{"charge_percent": 95}, nil)
	if e := next(t, ch); e.ID != prev+1 || e.Data["action"] != "charged" {
		t.Fatalf("live event %+v after %d", e, prev)
	}
	// The query parameter works too; the header wins over it.
	events, _ := poll(t, b.url+fmt.Sprintf("/stream/stations?transport=poll&timeout=0&last_event_id=%d", cursor))
	if len(events) != 4 {
		t.Fatalf("poll with last_event_id got %d events", len(events))
	}
	// A cursor beyond the head (unknown) gets a fresh snapshot with reset.
	events, _ = poll(t, b.url+"/stream/stations?transport=poll&timeout=0&since=999999")
	if len(events) != 1 || events[0].Type != "snapshot" || events[0].Data["reset"] != true {
		t.Fatalf("unknown cursor got %+v", events)
	}
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if code := call(t, "GET", b.url+"/stream/stations?last_event_id=abc", "", nil, &e); code != 400 || e.Error.Code != "invalid_cursor" {
		t.Fatalf("garbage cursor: %d %s", code, e.Error.Code)
	}
}

func TestClusterRelayFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-instance test")
	}
	a, b, w := cluster(t)
	ch := subscribeSSE(t, b.url+"/stream/stations", sseclient.Options{})
	next(t, ch)
	last := next(t, ch).ID
	telemetry := func(in *instance, c int) {
		t.Helper()
		if code := call(t, "PATCH", in.url+fmt.Sprintf("/api/v1/batteries/%d", w.battery), w.admin, map[string]int{"charge_percent": c}, nil); code != 200 {
			t.Fatalf("telemetry: %d", code)
		}
	}
	telemetry(a, 40)
	if e := next(t, ch); e.ID != last+1 {
		t.Fatalf("id %d after %d", e.ID, last)
	}
	last++
	// A holds the relay lease (it started first); stop it. B takes over
	// within seconds and continues the same sequence.
	a.stop(t)
	start := time.Now()
	telemetry(b, 90)
	e := next(t, ch)
	if e.ID != last+1 || e.Data["action"] != "charged" {
		t.Fatalf("after failover got %+v, want id %d", e, last+1)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("failover took %s", d)
	}
	t.Logf("failover delivered after %s", time.Since(start))
	last++

	// A relay whose database connection dies (a crashed host, a killed
	// backend) loses the advisory lock with it; the relay takes the lease
	// again on a new connection and the sequence goes on.
	var killed int
	if err := b.app.store.DB().Raw(`SELECT COUNT(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&killed).Error; err != nil || killed != 1 {
		t.Fatalf("terminated %d lease holders: %v", killed, err)
	}
	start = time.Now()
	telemetry(b, 40)
	e = next(t, ch)
	if e.ID != last+1 || e.Data["action"] != "updated" {
		t.Fatalf("after the lease connection died got %+v, want id %d", e, last+1)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("recovery took %s", d)
	}
	t.Logf("lease recovered after %s", time.Since(start))
}
