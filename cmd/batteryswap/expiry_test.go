package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"batteryswap/models"
)

// TestExpiryReachesTheHolderAndTheBoard runs the serve loop's expiry sweep for
// real (a 3 s hold, warned 2 s before): the holder, following
// /ws/notifications/ with the session cookie, gets booking_confirmed,
// booking_ready, booking_expiring (once) and booking_expired; a long-poll
// asked for with Accept: application/json sees the battery go back
// (inventory_update, action expired).
func TestExpiryReachesTheHolderAndTheBoard(t *testing.T) {
	in := singleInstance(t, map[string]string{"BOOKING_HOLD": "3s", "BOOKING_WARN": "2s"})
	w := setup(t, in, in.app.store)

	// The rider's cookie from login opens the WebSocket alias.
	body := strings.NewReader(`{"email":"rider@example.com","password":"riderpass"}`)
	resp, err := http.Post(in.url+"/api/v1/auth/login", "application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "bs_token" {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatal("login set no bs_token cookie")
	}
	ctx := context.Background()
	conn, _, err := websocket.Dial(ctx, strings.Replace(in.url, "http://", "ws://", 1)+"/ws/notifications/",
		&websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {cookie.String()}}})
	if err != nil {
		t.Fatalf("dial /ws/notifications/ with the cookie: %v", err)
	}
	defer conn.CloseNow()
	read := func() map[string]any {
		t.Helper()
		_, data, err := conn.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := read(); m["type"] != "connection_established" || m["user_id"] != float64(w.riderID) {
		t.Fatalf("opened with %v", m)
	}
	snap := read()
	cursor := snap["id"].(string)

	var b models.Booking
	if code := call(t, "POST", in.url+"/api/v1/bookings", w.rider, map[string]any{"station_id": w.station}, &b); code != 201 {
		t.Fatalf("book: %d", code)
	}
	var got []string
	for len(got) == 0 || got[len(got)-1] != "booking_expired" {
		m := read()
		got = append(got, m["type"].(string))
		if m["type"] == "booking_expiring" && m["expires_at"] != b.ExpiresAt.UTC().Format(time.RFC3339Nano) {
			t.Fatalf("booking_expiring = %v, want expires_at %s", m, b.ExpiresAt)
		}
	}
	if strings.Join(got, ",") != "booking_confirmed,booking_ready,booking_expiring,booking_expired" {
		t.Fatalf("the holder got %v", got)
	}
	if bk, _ := in.app.store.FindBookingByID(ctx, b.ID); bk.Status != models.BookingExpired {
		t.Fatalf("booking is %s", bk.Status)
	}

	// Accept: application/json picks long-poll on the same URL.
	req, _ := http.NewRequest("GET", in.url+"/stream/stations?timeout=5&since="+cursor, nil)
	req.Header.Set("Accept", "application/json")
	presp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer presp.Body.Close()
	var poll struct {
		Events      []map[string]any `json:"events"`
		LastEventID string           `json:"last_event_id"`
	}
	if err := json.NewDecoder(presp.Body).Decode(&poll); err != nil {
		t.Fatalf("Accept: application/json did not answer a long-poll: %v", err)
	}
	var actions []string
	for _, e := range poll.Events {
		if e["type"] == "inventory_update" {
			actions = append(actions, e["action"].(string))
		}
	}
	if strings.Join(actions, ",") != "booked,expired" {
		t.Fatalf("the board saw %v", actions)
	}
	if last, _ := strconv.ParseInt(poll.LastEventID, 10, 64); last <= 0 {
		t.Fatalf("last_event_id %q", poll.LastEventID)
	}
}
