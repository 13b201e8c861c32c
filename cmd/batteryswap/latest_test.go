package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"batteryswap/models"
)

// TestLatestDeliveryKeepsASlowReaderCurrent: under a minute of load, a
// station stream opened with delivery=latest whose reader takes a tenth of
// the event rate (through a small socket buffer, so the server feels it)
// stays connected, and once the load stops its view equals the database's
// counts within a heartbeat; a delivery=all reader beside it gets every
// event, in order.
func TestLatestDeliveryKeepsASlowReaderCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute of load")
	}
	const (
		loadFor   = 60 * time.Second
		rate      = 40 // events per second
		stations  = 4
		batteries = 4 // per station
	)
	in := singleInstance(t, map[string]string{"STREAM_QUEUE": "16"})
	w := setup(t, in, in.app.store)
	ids := []int64{w.station}
	var packs []int64
	for i := range stations {
		if i > 0 {
			var st models.Station
			if code := call(t, "POST", in.url+"/api/v1/stations", w.admin, map[string]any{"name": fmt.Sprintf("S%d", i), "address": "Road", "latitude": 1, "longitude": 2}, &st); code != 201 {
				t.Fatalf("create station: %d", code)
			}
			ids = append(ids, st.ID)
		}
		for j := range batteries {
			var b models.Battery
			if code := call(t, "POST", in.url+fmt.Sprintf("/api/v1/stations/%d/batteries", ids[i]), w.admin, map[string]any{"serial_number": fmt.Sprintf("L-%d-%d", i, j), "charge_percent": 50}, &b); code != 201 {
				t.Fatalf("add battery: %d", code)
			}
			packs = append(packs, b.ID)
		}
	}

	slow := dialSmallWindow(t, in.ln.Addr().String(), "/stream/stations?format=ndjson&delivery=latest")
	normal := subscribeNDJSON(t, in.url+"/stream/stations?format=ndjson")
	var start int64
	for _, e := range []ev{next(t, normal), next(t, normal)} {
		start = e.ID // the snapshot's id
	}
	view := map[int64]map[string]any{} // station -> its last counts, as the slow reader saw them
	apply := func(e ev) {
		switch e.Type {
		case "snapshot":
			for _, s := range e.Data["stations"].([]any) {
				st := s.(map[string]any)
				view[int64(st["id"].(float64))] = st
			}
		case "inventory_update":
			view[int64(e.Data["station_id"].(float64))] = e.Data
		}
	}

	// The slow reader takes a tenth of the event rate while the load runs,
	// then reads freely.
	loadDone := make(chan struct{})
	var mu sync.Mutex
	var slowErr error
	slowRead, skipped := 0, 0
	go func() {
		tick := time.NewTicker(time.Second / (rate / 10))
		defer tick.Stop()
		for {
			line, err := slow.ReadString('\n')
			if err != nil {
				mu.Lock()
				slowErr = err
				mu.Unlock()
				return
			}
			if strings.TrimSpace(line) == "" {
				continue
			}
			e := decode(t, []byte(line))
			mu.Lock()
			apply(e)
			slowRead++
			if n, ok := e.Data["skipped"].(float64); ok {
				skipped += int(n)
			}
			mu.Unlock()
			select {
			case <-loadDone:
			default:
				<-tick.C
			}
		}
	}()

	// The load: battery telemetry flipping packs between charging and
	// available, each a real change with its inventory_update.
	tick := time.NewTicker(time.Second / rate)
	end := time.Now().Add(loadFor)
	sent := 0
	for i := 0; time.Now().Before(end); i++ {
		<-tick.C
		charge := 50
		if i/len(packs)%2 == 0 {
			charge = 95
		}
		if code := call(t, "PATCH", in.url+fmt.Sprintf("/api/v1/batteries/%d", packs[i%len(packs)]), w.admin, map[string]any{"charge_percent": charge}, nil); code != 200 {
			t.Fatalf("telemetry: %d", code)
		}
		sent++
	}
	tick.Stop()
	close(loadDone)
	last, _, err := in.app.store.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	// The normal reader: every event after its snapshot, in order.
	for want := start + 1; want <= last; want++ {
		if e := next(t, normal); e.ID != want {
			t.Fatalf("the delivery=all reader got event %d, want %d", e.ID, want)
		}
	}

	// The slow reader: connected, and current within a heartbeat.
	want := map[int64][3]float64{}
	for _, id := range ids {
		var st models.Station
		call(t, "GET", in.url+fmt.Sprintf("/api/v1/stations/%d", id), "", nil, &st)
		want[id] = [3]float64{float64(st.Available), float64(st.Charging), float64(st.Total)}
	}
	current := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for id, counts := range want {
			v := view[id]
			if v == nil || v["available_batteries"] != counts[0] || v["charging_batteries"] != counts[1] || v["total_batteries"] != counts[2] {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(in.app.cfg.HeartbeatInterval)
	for !current() {
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("the slow reader's view %v differs from the database's %v a heartbeat after the load (read %d events, err %v)", view, want, slowRead, slowErr)
		}
		time.Sleep(10 * time.Millisecond) // polling the reader goroutine's progress, with a deadline
	}
	mu.Lock()
	defer mu.Unlock()
	if slowErr != nil {
		t.Fatalf("the slow reader was disconnected: %v", slowErr)
	}
	if skipped == 0 || slowRead >= sent {
		t.Fatalf("the slow reader read %d events with %d skipped, of %d sent: want merged events", slowRead, skipped, sent)
	}
	if n := metric(t, in, "batteryswap_slow_consumer_disconnects_total"); n != 0 {
		t.Fatalf("%v slow-consumer disconnects", n)
	}
}

// dialSmallWindow opens a stream on a connection with a small receive
// buffer, so that a client that reads slowly holds the server back within
// a few events instead of megabytes, and returns a reader past the head.
func dialSmallWindow(t *testing.T, addr, path string) *bufio.Reader {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReaderSize(conn, 1024)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			return r
		}
	}
}
