package main

import (
	"fmt"
	"testing"

	"batteryswap/sseclient"
)

// TestStationGoesOfflineAndBackOnEveryStream runs serve's presence sweep
// for real (STATION_STALE_AFTER=1s): a station not heard from becomes
// offline on SSE and WebSocket alike (station_status with presence), its
// bookings are refused with 409 station_unavailable, and a heartbeat brings
// it back online (another station_status) so that booking works again.
func TestStationGoesOfflineAndBackOnEveryStream(t *testing.T) {
	in := singleInstance(t, map[string]string{"STATION_STALE_AFTER": "1s"})
	w := setup(t, in, in.app.store)
	// From the setup's events on, so the change is seen however soon it comes.
	path := fmt.Sprintf("%s/stream/stations/%d?last_event_id=4", in.url, w.station)
	sse := subscribeSSE(t, path, sseclient.Options{})
	ws, _ := subscribeWS(t, path)

	presence := func(ch <-chan ev, want string) ev {
		t.Helper()
		for {
			e := until(t, ch, "station_status")
			if last := e[len(e)-1]; last.Data["presence"] == want {
				if last.Data["station_id"] != float64(w.station) || last.Data["status"] != "open" {
					t.Fatalf("station_status %v", last.Data)
				}
				return last
			}
		}
	}
	off := presence(sse, "offline")
	if wsOff := presence(ws, "offline"); wsOff.ID != off.ID {
		t.Fatalf("offline as event %d on SSE, %d on WebSocket", off.ID, wsOff.ID)
	}
	var st struct {
		Presence string `json:"presence"`
	}
	call(t, "GET", fmt.Sprintf("%s/api/v1/stations/%d", in.url, w.station), "", nil, &st)
	if st.Presence != "offline" {
		t.Fatalf("GET says presence %q", st.Presence)
	}
	var refused struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if code := call(t, "POST", in.url+"/api/v1/bookings", w.rider, map[string]any{"station_id": w.station}, &refused); code != 409 || refused.Error.Code != "station_unavailable" {
		t.Fatalf("booking at an offline station: %d %+v", code, refused)
	}
	if code := call(t, "POST", fmt.Sprintf("%s/api/v1/stations/%d/heartbeat", in.url, w.station), w.admin, nil, nil); code != 204 {
		t.Fatalf("heartbeat: %d", code)
	}
	on := presence(sse, "online")
	if wsOn := presence(ws, "online"); wsOn.ID != on.ID || on.ID <= off.ID {
		t.Fatalf("online as event %d on SSE, %d on WebSocket (offline was %d)", on.ID, wsOn.ID, off.ID)
	}
	// Heard from just now (a second before the sweep could find it
	// stale), the station takes bookings again.
	if code := call(t, "POST", fmt.Sprintf("%s/api/v1/stations/%d/heartbeat", in.url, w.station), w.admin, nil, nil); code != 204 {
		t.Fatalf("heartbeat: %d", code)
	}
	if code := call(t, "POST", in.url+"/api/v1/bookings", w.rider, map[string]any{"station_id": w.station}, nil); code != 201 {
		t.Fatalf("booking after the heartbeat: %d", code)
	}
}
