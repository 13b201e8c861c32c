package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"batteryswap/models"
	"batteryswap/sseclient"
	"batteryswap/store/storetest"
)

// rawSSE opens an SSE request and returns the response and a line reader.
func rawSSE(t *testing.T, url string, header map[string]string) (*http.Response, *bufio.Reader) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	return resp, bufio.NewReader(resp.Body)
}

func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(line, "\n")
}

func TestSSEWireFormatAndHeartbeat(t *testing.T) {
	in := singleInstance(t, map[string]string{"HEARTBEAT_INTERVAL": "1s"}) // the shortest accepted
	setup(t, in, in.app.store)
	resp, r := rawSSE(t, in.url+"/stream/stations", nil)
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if line := readLine(t, r); !strings.HasPrefix(line, "retry: ") {
		t.Fatalf("first line %q, want retry:", line)
	}
	readLine(t, r)
	want := []string{"id: 4", "event: connection_established"}
	for _, w := range want {
		if got := readLine(t, r); got != w {
			t.Fatalf("line %q, want %q", got, w)
		}
	}
	// Skip to the heartbeat that an idle stream gets.
	for {
		line := readLine(t, r)
		if strings.HasPrefix(line, ":") {
			break
		}
		if strings.HasPrefix(line, "id:") && line != "id: 4" {
			t.Fatalf("unexpected event %q on an idle stream", line)
		}
	}
}

func TestStreamAuthAndPrivacy(t *testing.T) {
	in := singleInstance(t, nil)
	w := setup(t, in, in.app.store)
	var other struct {
		Token string `json:"token"`
	}
	call(t, "POST", in.url+"/api/v1/auth/register", "", map[string]string{"email": "other@example.com", "password": "otherpass", "name": "Other"}, &other)
	tests := []struct {
		name, path, token string
		status            int
		code              string
	}{
		{"notifications need a user", "/stream/notifications", "", 401, "unauthorized"},
		{"bad token", "/stream/notifications?access_token=nope", "", 401, "unauthorized"},
		{"another user's topic", fmt.Sprintf("/stream?topics=user:%d", w.riderID), other.Token, 403, "forbidden"},
		{"notifications topic without auth", "/stream?topics=stations,notifications", "", 401, "unauthorized"},
		{"unknown station", "/stream/stations/999", "", 404, "not_found"},
		{"unknown topic", "/stream?topics=everything", "", 400, "invalid_request"},
		{"no topics", "/stream", "", 422, "validation_failed"},
		{"garbage cursor", "/stream/stations?transport=poll&since=1.5", "", 400, "invalid_cursor"},
		{"unknown format", "/stream/stations?format=xml", "", 400, "invalid_request"},
		{"poll timeout too long", "/stream/stations?transport=poll&timeout=61", "", 422, "validation_failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e struct {
				Error struct{ Code string } `json:"error"`
			}
			if got := call(t, "GET", in.url+tt.path, tt.token, nil, &e); got != tt.status || e.Error.Code != tt.code {
				t.Fatalf("%s: %d %q, want %d %q", tt.path, got, e.Error.Code, tt.status, tt.code)
			}
		})
	}

	// The rider's own stream via the multiplexed URL carries only their events.
	mine := subscribeSSE(t, in.url+"/stream?topics=notifications,station:"+strconv.FormatInt(w.station, 10), sseclient.Options{Headers: map[string]string{"Authorization": "Bearer " + w.rider}})
	theirs := subscribeSSE(t, in.url+"/stream/notifications", sseclient.Options{Headers: map[string]string{"Authorization": "Bearer " + other.Token}})
	for _, ch := range []<-chan ev{mine, theirs} {
		next(t, ch)
		next(t, ch)
	}
	call(t, "POST", in.url+"/api/v1/bookings", w.rider, map[string]any{"station_id": w.station}, nil)
	got := until(t, mine, "booking_ready")
	types := []string{}
	for _, e := range got {
		types = append(types, e.Type)
	}
	if strings.Join(types, ",") != "battery_booked,inventory_update,booking_confirmed,booking_ready" {
		t.Fatalf("multiplexed stream got %v", types)
	}
	// A notification for the other user reaches only them.
	call(t, "POST", in.url+"/api/v1/notifications", w.admin, map[string]any{"user_id": w.riderID + 1, "title": "Hi", "message": "for other", "level": "info"}, nil)
	if e := next(t, theirs); e.Type != "notification" || e.Data["title"] != "Hi" {
		t.Fatalf("other user's stream got %v", e.Data)
	}
	call(t, "POST", in.url+"/api/v1/notifications", w.admin, map[string]any{"user_id": w.riderID, "title": "Mine", "message": "for rider", "level": "warning"}, nil)
	if e := next(t, mine); e.Type != "notification" || e.Data["title"] != "Mine" {
		t.Fatalf("rider got %v (another user's notification leaked?)", e.Data)
	}
}

func TestCursorPrecedenceAndRetentionReset(t *testing.T) {
	in := singleInstance(t, nil)
	w := setup(t, in, in.app.store)
	for _, c := range []int{40, 90} {
		call(t, "PATCH", in.url+fmt.Sprintf("/api/v1/batteries/%d", w.battery), w.admin, map[string]int{"charge_percent": c}, nil)
	}
	waitPublished(t, in, 6)
	// Header 5 beats query 1: only event 6 comes.
	_, r := rawSSE(t, in.url+"/stream/stations?last_event_id=1", map[string]string{"Last-Event-ID": "5"})
	readLine(t, r)
	readLine(t, r)
	if got := readLine(t, r); got != "id: 6" {
		t.Fatalf("resumed with %q, want id: 6", got)
	}
	// Trim history: a cursor older than retention gets a snapshot with reset.
	if _, err := in.app.store.TrimBefore(context.Background(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	events, last := poll(t, in.url+"/stream/stations?transport=poll&since=2")
	if len(events) != 1 || events[0].Type != "snapshot" || events[0].Data["reset"] != true || last != "6" {
		t.Fatalf("old cursor got %+v last %s", events, last)
	}
	// Numbers no event can have are unknown cursors too (CONTRACT §4): only
	// a cursor that is not a number is 400.
	for _, cursor := range []string{"-5", "99999999999999999999999"} {
		events, last = poll(t, in.url+"/stream/stations?transport=poll&since="+cursor)
		if len(events) != 1 || events[0].Type != "snapshot" || events[0].Data["reset"] != true || last != "6" {
			t.Fatalf("cursor %s got %+v last %s", cursor, events, last)
		}
	}
	// A cursor at the trim point still resumes (nothing lost).
	events, _ = poll(t, in.url+"/stream/stations?transport=poll&since=6&timeout=0")
	if len(events) != 0 {
		t.Fatalf("cursor at head got %+v", events)
	}
}

func TestWebSocketOriginCheck(t *testing.T) {
	in := singleInstance(t, map[string]string{"ALLOWED_ORIGINS": "https://app.example"})
	ctx := context.Background()
	ws := strings.Replace(in.url, "http://", "ws://", 1)
	_, resp, err := websocket.Dial(ctx, ws+"/ws/stations/", &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: err %v, resp %v", err, resp)
	}
	conn, _, err := websocket.Dial(ctx, ws+"/ws/stations/", &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://app.example"}}})
	if err != nil {
		t.Fatalf("allowed origin refused: %v", err)
	}
	conn.CloseNow()
}

// TestWebSocketHandshakeErrorsAreJSON: a broken handshake is refused like
// any other bad request (CONTRACT §2), not in the library's plain text.
func TestWebSocketHandshakeErrorsAreJSON(t *testing.T) {
	in := singleInstance(t, nil)
	good := map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
	for _, tt := range []struct{ name, header, value string }{
		{"no Connection: Upgrade", "Connection", ""},
		{"version 8", "Sec-WebSocket-Version", "8"},
		{"no key", "Sec-WebSocket-Key", ""},
		{"a key of 5 bytes", "Sec-WebSocket-Key", "aGVsbG8="},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, in.url+"/stream/stations", nil)
			for k, v := range good {
				req.Header.Set(k, v)
			}
			req.Header.Del(tt.header)
			if tt.value != "" {
				req.Header.Set(tt.header, tt.value)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.NewDecoder(res.Body).Decode(&e); err != nil || res.StatusCode != http.StatusBadRequest || e.Error.Code != "invalid_request" {
				t.Fatalf("status %d, %v, error %+v", res.StatusCode, err, e.Error)
			}
			if tt.header == "Sec-WebSocket-Version" && res.Header.Get("Sec-WebSocket-Version") != "13" {
				t.Errorf("no Sec-WebSocket-Version: 13 in the refusal")
			}
		})
	}
}

func TestStreamCapPerClient(t *testing.T) {
	in := singleInstance(t, map[string]string{"MAX_STREAMS_PER_CLIENT": "2"})
	setup(t, in, in.app.store)
	for range 2 {
		rawSSE(t, in.url+"/stream/stations", nil)
	}
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if code := call(t, "GET", in.url+"/stream/stations?transport=poll&timeout=0", "", nil, &e); code != 429 || e.Error.Code != "rate_limited" {
		t.Fatalf("third stream: %d %s", code, e.Error.Code)
	}
}

// syncBuffer is a log sink that tests read while the server writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLogsCarryRequestIDsButNoSecrets: every request is logged as one
// structured line with its request id; tokens and passwords never are.
func TestLogsCarryRequestIDsButNoSecrets(t *testing.T) {
	cfg := testConfig(t, storetest.URL(t, "sqlite"), "")
	cfg.LogLevel, cfg.LogFormat = "debug", "json"
	logs := &syncBuffer{}
	in := startInstanceLogging(t, cfg, logs)

	const password = "very-secret-password"
	var reg struct {
		Token string `json:"token"`
	}
	call(t, "POST", in.url+"/api/v1/auth/register", "", map[string]string{"email": "log@example.com", "password": password, "name": "Log"}, &reg)
	call(t, "POST", in.url+"/api/v1/auth/login", "", map[string]string{"email": "log@example.com", "password": password}, nil)
	call(t, "GET", in.url+"/api/v1/me", reg.Token, nil, nil)
	call(t, "GET", in.url+"/stream/notifications?transport=poll&timeout=0&access_token="+reg.Token, "", nil, nil)
	in.stop(t)

	out := logs.String()
	if reg.Token == "" || strings.Contains(out, reg.Token) || strings.Contains(out, password) {
		t.Fatalf("a token or password reached the log:\n%s", out)
	}
	lines := 0
	for _, line := range strings.Split(out, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || m["msg"] != "request" {
			continue
		}
		lines++
		if id, _ := m["request_id"].(string); id == "" || m["route"] == "" || m["status"] == nil {
			t.Fatalf("request line without request id, route or status: %s", line)
		}
	}
	if lines < 4 {
		t.Fatalf("%d request lines, want 4:\n%s", lines, out)
	}
}

// TestShortJWTSecretWarns: a JWT_SECRET of 16 to 31 bytes starts, with a
// warning that says why and how to make a good one (under 16 is refused:
// TestConfigPrecedence).
func TestShortJWTSecretWarns(t *testing.T) {
	for _, tt := range []struct {
		secret string
		warned bool
	}{{strings.Repeat("k", 16), true}, {strings.Repeat("k", 31), true}, {strings.Repeat("k", 32), false}} {
		cfg := testConfig(t, storetest.URL(t, "sqlite"), "")
		cfg.JWTSecret, cfg.LogLevel = tt.secret, "warn"
		logs := &syncBuffer{}
		startInstanceLogging(t, cfg, logs)
		if got := strings.Contains(logs.String(), "JWT_SECRET is short"); got != tt.warned {
			t.Errorf("JWT_SECRET of %d bytes: warned %v, want %v; logs:\n%s", len(tt.secret), got, tt.warned, logs)
		}
	}
}

// TestNotificationSnapshotSaysWhenUnreadAreCut: the snapshot carries the
// newest 100 unread notifications, oldest first, and unread_more says older
// ones exist, so a client's unread count is not silently wrong.
func TestNotificationSnapshotSaysWhenUnreadAreCut(t *testing.T) {
	in := singleInstance(t, nil)
	w := setup(t, in, in.app.store)
	ctx := context.Background()
	snapshot := func() ([]any, any) {
		t.Helper()
		events, _ := poll(t, in.url+"/stream/notifications?transport=poll&access_token="+w.rider)
		if len(events) != 2 || events[1].Type != "snapshot" {
			t.Fatalf("opened with %+v", events)
		}
		unread, _ := events[1].Data["unread"].([]any)
		return unread, events[1].Data["unread_more"]
	}
	var newest int64
	for i := 0; ; i++ {
		have, err := in.app.store.UnreadNotifications(ctx, w.riderID, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(have) == 100 {
			if unread, more := snapshot(); len(unread) != 100 || more != false {
				t.Fatalf("100 unread: snapshot of %d, unread_more %v", len(unread), more)
			}
		}
		if len(have) == 101 {
			break
		}
		n, err := in.app.store.CreateNotification(ctx, models.NotificationInput{UserID: w.riderID, Title: fmt.Sprint("n", i), Message: "m", Level: models.LevelInfo})
		if err != nil {
			t.Fatal(err)
		}
		newest = n.ID
	}
	unread, more := snapshot()
	if len(unread) != 100 || more != true {
		t.Fatalf("101 unread: snapshot of %d, unread_more %v", len(unread), more)
	}
	if last := unread[99].(map[string]any)["id"]; last != float64(newest) {
		t.Errorf("the snapshot ends with notification %v, want the newest, %d", last, newest)
	}
}

// TestClosedStreamsFreeTheirSlotsAtOnce: a client at its limit of streams
// closes them and opens new ones (a page reloaded). The server notices a
// closed stream only at its next heartbeat, an hour away here; the new
// streams must not be refused meanwhile.
func TestClosedStreamsFreeTheirSlotsAtOnce(t *testing.T) {
	in := singleInstance(t, map[string]string{"MAX_STREAMS_PER_CLIENT": "2", "HEARTBEAT_INTERVAL": "1h"})
	setup(t, in, in.app.store)
	host := strings.TrimPrefix(in.url, "http://")
	open := func() net.Conn {
		t.Helper()
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET /stream/stations HTTP/1.1\r\nHost: %s\r\n\r\n", host)
		head, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || !strings.Contains(head, " 200 ") {
			t.Fatalf("stream: %q, %v", head, err)
		}
		return conn
	}
	first := []net.Conn{open(), open()}
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if code := call(t, "GET", in.url+"/stream/stations?transport=poll&timeout=0", "", nil, &e); code != 429 {
		t.Fatalf("a third stream while two are open: %d, want 429", code)
	}
	for _, c := range first {
		c.Close()
	}
	second := []net.Conn{open(), open()} // refused before the fix: 429 for an hour
	// The closed streams ended too: the client holds what it may, two
	// subscriptions, not four with two of them uncounted.
	eventually(t, "2 subscriptions after two streams closed and two opened", func() bool { return in.app.hub.Subscribers() == 2 })
	for _, c := range second {
		c.Close()
	}
}
