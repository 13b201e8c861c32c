package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"batteryswap/store/storetest"
)

// nearIDs is a JavaScript expression: the ids the "near me" list shows, in order.
const nearIDs = `[...document.querySelectorAll('#near-list [data-near-id]')].map((li) => li.dataset.nearId).join(',')`

// TestDashboardNearMeAndOffline: a typed location lists the nearest stations
// closest first with their distances, the browser's location does the same,
// and a station that goes offline turns grey with "last seen" on the map,
// on its card and in the list, and cannot be booked.
func TestDashboardNearMeAndOffline(t *testing.T) {
	b := newBrowser(t)
	srv := startInstance(t, testConfig(t, storetest.URL(t, "sqlite"), ""))
	ctx, st := context.Background(), srv.app.store
	station := func(name string, lat, lon float64, charges ...int) int64 {
		return seedStation(t, st, name, lat, lon, charges...).ID
	}
	// Ids in an order unlike their distances from (52.52, 13.40).
	far := station("Far", 52.60, 13.55)           // ~13.5 km, no packs
	here := station("Here", 52.52, 13.40, 95)     // 0 m
	near := station("Near", 52.521, 13.41, 95)    // ~690 m
	munich := station("Munich", 48.14, 11.58, 95) // ~504 km, will go offline

	p := b.page("rider")
	p.run(chromedp.Navigate(srv.url + "/"))
	p.waitFor("the markers", `document.querySelectorAll('#map [data-marker-id]').length === 4`)

	// A location that is not two numbers is refused next to the field.
	p.run(p.fill(map[string]string{"#near-location": "the station"}), chromedp.Click(`#near-form button[type="submit"]`, chromedp.ByQuery))
	p.waitFor("the location's field error", `document.querySelector('#near-location').getAttribute('aria-invalid') === 'true' && !!document.querySelector('#near-location-error')`)

	p.run(p.fill(map[string]string{"#near-location": "52.52, 13.40"}), chromedp.Click(`#near-form button[type="submit"]`, chromedp.ByQuery))
	p.waitFor("the nearest stations, closest first", fmt.Sprintf(`%s === '%d,%d,%d,%d'`, nearIDs, here, near, far, munich))
	var distances []string
	p.run(chromedp.Evaluate(`[...document.querySelectorAll('#near-list [data-field="distance"]')].map((d) => d.textContent)`, &distances))
	if want := []string{"0 m", "690 m", "13 km", "504 km"}; strings.Join(distances, "|") != strings.Join(want, "|") {
		t.Errorf("distances %q, want %q", distances, want)
	}
	// The map frames you and the three closest; Munich is out of view
	// until "Show all stations".
	inView := func(id int64) string {
		return fmt.Sprintf(`(() => {
			const r = %s.getBoundingClientRect(), m = document.querySelector('#map').getBoundingClientRect();
			return r.left >= m.left && r.right <= m.right && r.top >= m.top && r.bottom <= m.bottom;
		})()`, marker(id))
	}
	p.waitFor("you and the closest stations framed", fmt.Sprintf(`document.querySelector('#map .you').getAttribute('visibility') === 'visible' && `+
		`%s && %s && %s && !%s && %s.getBoundingClientRect().left - %s.getBoundingClientRect().left > 15`,
		inView(here), inView(near), inView(far), inView(munich), marker(near), marker(here)))
	p.run(chromedp.Click(`#map-all`, chromedp.ByQuery))
	p.waitFor("every station in view", fmt.Sprintf(`%s && %s && document.querySelector('#map-all').hidden && document.activeElement.matches('#map [data-marker-id]')`, inView(munich), inView(here)))

	// Only stations with a ready pack: the empty one drops out.
	p.run(chromedp.Click(`#near-available`, chromedp.ByQuery), chromedp.Click(`#near-form button[type="submit"]`, chromedp.ByQuery))
	p.waitFor("only stations with a ready pack", fmt.Sprintf(`%s === '%d,%d,%d'`, nearIDs, here, near, munich))

	// A name in the list shows that station on the map.
	p.run(chromedp.Click(fmt.Sprintf(`#near-list [data-near-id="%d"] button`, near), chromedp.ByQuery))
	p.waitFor("the station shown on the map", fmt.Sprintf(`!!document.querySelector('#station-detail [data-detail-id="%d"]') && document.activeElement === %s`, near, marker(near)))
	p.shot("near-typed")

	// The browser's own location, granted and emulated: Munich comes first.
	p.run(
		cdpbrowser.GrantPermissions([]cdpbrowser.PermissionType{cdpbrowser.PermissionTypeGeolocation}).WithOrigin(srv.url),
		emulation.SetGeolocationOverride().WithLatitude(48.137).WithLongitude(11.575).WithAccuracy(10),
		chromedp.Click(`#near-available`, chromedp.ByQuery),
		chromedp.Click(`#near-geo`, chromedp.ByQuery),
	)
	p.waitFor("the location filled in", `document.querySelector('#near-location').value === '48.13700,11.57500'`)
	p.waitFor("Munich first", fmt.Sprintf(`%s.startsWith('%d,')`, nearIDs, munich))

	// Munich's controller falls silent: every station is marked stale and
	// the others report in again, so only Munich goes offline, live.
	p.run(chromedp.Click(fmt.Sprintf(`#near-list [data-near-id="%d"] button`, munich), chromedp.ByQuery))
	p.waitFor("Munich chosen, bookable", fmt.Sprintf(`!!document.querySelector('#station-detail [data-detail-id="%d"]') && `+
		`!document.querySelector('#station-detail [data-action="book"]').disabled`, munich))
	if _, err := st.MarkStaleStations(ctx, time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{far, here, near} {
		if err := st.StationHeartbeat(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	lastSeen := `/^Offline · last seen \d+ s ago$/`
	p.waitFor("Munich's marker greyed", markerIs(munich, "offline")+` && /^last seen \d+ s ago$/.test(`+marker(munich)+`.querySelector('.tag').textContent)`)
	p.waitFor("Munich's card greyed with last seen", fmt.Sprintf(`document.querySelector('[data-station-id="%d"]').dataset.presence === 'offline' && `+
		`%s.test(document.querySelector('[data-station-id="%d"] [data-field="presence"]').textContent) && `+
		`getComputedStyle(document.querySelector('[data-station-id="%d"]')).borderStyle === 'dashed'`, munich, lastSeen, munich, munich))
	p.waitFor("Munich greyed in the near list", fmt.Sprintf(`(() => {
		const li = document.querySelector('#near-list [data-near-id="%d"]');
		return li.dataset.presence === 'offline' && /Offline · last seen/.test(li.textContent);
	})()`, munich))
	p.waitFor("no booking at an offline station", `document.querySelector('#station-detail [data-field="presence"]').textContent.startsWith('Offline') && `+
		`document.querySelector('#station-detail [data-action="book"]').disabled`)
	for _, id := range []int64{far, here, near} {
		p.waitFor(fmt.Sprintf("station %d still online", id), fmt.Sprintf(`%s.dataset.availability !== 'offline'`, marker(id)))
	}
	p.shot("offline")

	// It reports in again: back in colour, bookable.
	if err := st.StationHeartbeat(ctx, munich); err != nil {
		t.Fatal(err)
	}
	p.waitFor("Munich back online", markerIs(munich, "available")+fmt.Sprintf(` && document.querySelector('[data-station-id="%d"]').dataset.presence === 'online' && `+
		`document.querySelector('[data-station-id="%d"] [data-field="presence"]').hidden && !document.querySelector('#station-detail [data-action="book"]').disabled`, munich, munich))
	p.noPolicyViolations()
}
