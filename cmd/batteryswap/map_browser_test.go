package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"batteryswap/models"
	"batteryswap/store"
	"batteryswap/store/storetest"
)

// marker is a JavaScript expression for station id's marker on the map.
func marker(id int64) string {
	return fmt.Sprintf(`document.querySelector('#map [data-marker-id="%d"]')`, id)
}

// availabilityColour is each availability's marker colour (app.css).
var availabilityColour = map[string]string{
	"available": "rgb(26, 127, 55)",   // green
	"charging":  "rgb(154, 103, 0)",   // amber
	"empty":     "rgb(207, 34, 46)",   // red
	"closed":    "rgb(66, 74, 83)",    // dark grey
	"offline":   "rgb(175, 184, 193)", // light grey
}

// markerIs is a JavaScript condition: station id's marker shows availability
// kind, and its circle is painted in that kind's colour, as is the legend's
// swatch for it.
func markerIs(id int64, kind string) string {
	return fmt.Sprintf(`(() => {
		const m = %s;
		const legend = document.querySelector('.legend [data-availability="%s"] .swatch');
		return !!m && !!legend && m.dataset.availability === '%s' &&
			getComputedStyle(m.querySelector('circle')).fill === '%s' && getComputedStyle(legend).backgroundColor === '%s';
	})()`, marker(id), kind, kind, availabilityColour[kind], availabilityColour[kind])
}

// TestDashboardMap: the map draws a marker per station where its coordinates
// say, coloured by availability; a live change recolours it; the freshness
// text and the delivery delay show; a rider chooses a station with the
// keyboard and books it from beside the map.
func TestDashboardMap(t *testing.T) {
	b := newBrowser(t)
	srv := startInstance(t, testConfig(t, storetest.URL(t, "sqlite"), ""))
	ctx, st := context.Background(), srv.app.store
	station := func(name string, lat, lon float64, charges ...int) *models.Station {
		return seedStation(t, st, name, lat, lon, charges...)
	}
	// West to east, and the third one north of the others.
	west := station("West", 52.50, 13.30, 95, 95)
	mid := station("Mid", 52.50, 13.40, 30)
	east := station("East", 52.55, 13.50)
	closed := station("Shut", 52.45, 13.45, 95)
	if _, err := st.UpdateStation(ctx, closed.ID, models.StationPatch{Status: ptr(models.StationClosed)}); err != nil {
		t.Fatal(err)
	}

	p := b.page("rider")
	p.run(chromedp.Navigate(srv.url + "/"))
	p.waitFor("a marker per station", `document.querySelectorAll('#map [data-marker-id]').length === 4`)
	p.waitFor("west's marker: packs ready", markerIs(west.ID, "available"))
	p.waitFor("mid's marker: charging only", markerIs(mid.ID, "charging"))
	p.waitFor("east's marker: no packs", markerIs(east.ID, "empty"))
	p.waitFor("the closed station's marker", markerIs(closed.ID, "closed"))
	var placed bool
	p.run(chromedp.Evaluate(fmt.Sprintf(`(() => {
		const at = (m) => m.getBoundingClientRect();
		const w = at(%s), m = at(%s), e = at(%s), svg = document.querySelector('#map').getBoundingClientRect();
		const inside = (r) => r.left >= svg.left && r.right <= svg.right && r.top >= svg.top && r.bottom <= svg.bottom;
		return w.left < m.left && m.left < e.left && e.top < m.top && Math.abs(w.top - m.top) < 1 && [w, m, e].every(inside);
	})()`, marker(west.ID), marker(mid.ID), marker(east.ID)), &placed))
	if !placed {
		p.shot("misplaced")
		t.Fatal("the markers are not placed by their coordinates (west < mid < east, east north of mid, all inside the map)")
	}
	p.waitFor("the freshness text on a card", fmt.Sprintf(
		`/^updated \d+ s ago$/.test(document.querySelector('[data-station-id="%d"] [data-field="fresh"]').textContent)`, west.ID))

	// A pack arrives at the empty station: its marker turns to packs ready,
	// and the connection indicator shows that event's delivery delay.
	if _, err := st.AddBattery(ctx, east.ID, models.BatteryInput{SerialNumber: "East-0", ChargePercent: ptr(96)}); err != nil {
		t.Fatal(err)
	}
	p.waitFor("east's marker recoloured", markerIs(east.ID, "available")+` && `+marker(east.ID)+`.textContent.startsWith('1')`)
	p.waitFor("the delivery delay", `(() => {
		const d = document.querySelector('#conn-status [data-field="delay"]');
		return !d.hidden && /^delay \d+(\.\d)? (ms|s)$/.test(d.textContent) && Number(d.dataset.ms) >= 0 && Number(d.dataset.ms) < 10000;
	})()`)
	p.waitFor("east's freshness from the event", fmt.Sprintf(
		`/^updated [0-9] s ago$/.test(document.querySelector('[data-station-id="%d"] [data-field="fresh"]').textContent)`, east.ID))

	p.run(
		p.fill(map[string]string{"#register-email": "ria@example.com", "#register-password": "ria-secret", "#register-name": "Ria"}),
		chromedp.Click(`#register-form button[type="submit"]`, chromedp.ByQuery),
	)
	p.waitFor("the rider to be signed in", `!!document.querySelector('#logout-button') && document.querySelector('#logout-button').offsetParent !== null`)

	// Keyboard only: Tab from the heading lands on the map, arrows move from
	// station to station, each one chosen shows beside the map; Tab reaches
	// its Book button and Enter books.
	p.run(chromedp.Focus(`#board-title`, chromedp.ByQuery), chromedp.KeyEvent(kb.Tab))
	p.waitFor("the map's first station focused", fmt.Sprintf(`document.activeElement.dataset.markerId === '%d'`, west.ID))
	p.run(chromedp.KeyEvent(kb.ArrowRight), chromedp.KeyEvent(kb.ArrowRight))
	p.waitFor("east chosen by arrows", fmt.Sprintf(`document.activeElement.dataset.markerId === '%d' && %s.getAttribute('aria-pressed') === 'true' && `+
		`(document.querySelector('#station-detail [data-detail-id="%d"] [data-field="name"]') || {}).textContent === 'East'`, east.ID, marker(east.ID), east.ID))
	p.run(chromedp.KeyEvent(kb.ArrowLeft))
	p.waitFor("mid chosen", fmt.Sprintf(`!!document.querySelector('#station-detail [data-detail-id="%d"]') && %s.getAttribute('aria-pressed') === 'false'`, mid.ID, marker(east.ID)))
	p.run(chromedp.KeyEvent(kb.ArrowLeft), chromedp.KeyEvent(kb.Enter))
	p.waitFor("west's counts beside the map", fmt.Sprintf(
		`(document.querySelector('#station-detail [data-detail-id="%d"] [data-field="available"]') || {}).textContent === '2'`, west.ID))
	p.run(chromedp.KeyEvent(kb.Tab))
	p.waitFor("the Book button focused", `document.activeElement.matches('#station-detail [data-action="book"]') && !document.activeElement.disabled`)
	p.shot("map-chosen")
	p.run(chromedp.KeyEvent(kb.Enter))
	p.waitFor("the booking", `(document.querySelector('#my-booking [data-field="status"]') || {}).textContent === 'ready'`)
	p.waitFor("the booking's outcome beside the map", `/^Booked battery #\d+\.$/.test(document.querySelector('#station-detail [data-field="feedback"]').textContent)`)
	p.waitFor("west's counts after the booking, live", fmt.Sprintf(
		`document.querySelector('#station-detail [data-field="available"]').textContent === '1' && `+
			`document.querySelector('#station-detail [data-field="booked"]').textContent === '1' && %s.textContent.startsWith('1')`, marker(west.ID)))
	bookings, err := st.ListBookings(ctx, models.BookingFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(bookings) != 1 || bookings[0].StationID != west.ID || bookings[0].Status != models.BookingReady {
		t.Fatalf("bookings: %+v, want one ready at West", bookings)
	}
	p.shot("map-booked")
	p.noPolicyViolations()
}

// TestDashboardOnAPhone: at a phone's width the page does not scroll
// sideways, the map fits the screen and a tap on a marker chooses it.
func TestDashboardOnAPhone(t *testing.T) {
	b := newBrowser(t)
	srv := startInstance(t, testConfig(t, storetest.URL(t, "sqlite"), ""))
	ctx, st := context.Background(), srv.app.store
	var ids []int64
	for i := range 6 {
		s, err := st.CreateStation(ctx, models.StationInput{Name: fmt.Sprintf("Stop %d", i+1), Address: "Main St",
			Latitude: 48.85 + float64(i%3)*0.01, Longitude: 2.33 + float64(i)*0.01})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.ID)
	}
	p := b.page("phone")
	p.run(
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile, chromedp.EmulateTouch),
		chromedp.Navigate(srv.url+"/"),
	)
	p.waitFor("the markers", `document.querySelectorAll('#map [data-marker-id]').length === 6`)
	p.waitFor("the page within the screen's width", `document.documentElement.scrollWidth <= window.innerWidth && `+
		`document.querySelector('#map').getBoundingClientRect().right <= window.innerWidth && `+
		`document.querySelector('#map').getBoundingClientRect().width >= 300`)
	if _, err := st.AddBattery(ctx, ids[3], models.BatteryInput{SerialNumber: "P-1", ChargePercent: ptr(97)}); err != nil {
		t.Fatal(err)
	}
	p.waitFor("the live change", markerIs(ids[3], "available")+` && !document.querySelector('#conn-status [data-field="delay"]').hidden`)
	p.run(chromedp.Click(fmt.Sprintf(`#map [data-marker-id="%d"] circle`, ids[3]), chromedp.ByQuery))
	p.waitFor("the tapped station chosen", fmt.Sprintf(`!!document.querySelector('#station-detail [data-detail-id="%d"]')`, ids[3]))
	p.waitFor("the page still within the screen's width", `document.documentElement.scrollWidth <= window.innerWidth`)
	p.shot("phone")
	// What the phone's screen shows, not the whole page.
	var buf []byte
	p.run(chromedp.CaptureScreenshot(&buf))
	path := filepath.Join(b.dir, t.Name()+"-phone-screen.png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	p.noPolicyViolations()
}

// TestDashboardWithAClockThatIsOff: on a device whose clock is 90 s ahead
// the freshness text and the delivery delay still tell the truth: the page
// reads the server's time from the stream's connection_established.
func TestDashboardWithAClockThatIsOff(t *testing.T) {
	b := newBrowser(t)
	srv := startInstance(t, testConfig(t, storetest.URL(t, "sqlite"), ""))
	ctx, st := context.Background(), srv.app.store
	s, err := st.CreateStation(ctx, models.StationInput{Name: "Harbour", Address: "1 Quay", Latitude: 51.5, Longitude: -0.1})
	if err != nil {
		t.Fatal(err)
	}
	p := b.page("ahead")
	p.run(chromedp.ActionFunc(func(ctx context.Context) error {
		_, err := cdppage.AddScriptToEvaluateOnNewDocument(`{ const real = Date.now; Date.now = () => real.call(Date) + 90000; }`).Do(ctx)
		return err
	}), chromedp.Navigate(srv.url+"/"))
	p.waitFor("the clock to be off in the page", `Date.now() - new Date().getTime() > 89000`)
	fresh := fmt.Sprintf(`document.querySelector('[data-station-id="%d"] [data-field="fresh"]').textContent`, s.ID)
	p.waitFor("the freshness on the server's clock", `/^updated [0-9] s ago$/.test(`+fresh+`)`)
	if _, err := st.AddBattery(ctx, s.ID, models.BatteryInput{SerialNumber: "HB-1", ChargePercent: ptr(95)}); err != nil {
		t.Fatal(err)
	}
	p.waitFor("the delivery delay on the server's clock", `(() => {
		const d = document.querySelector('#conn-status [data-field="delay"]');
		return !d.hidden && Number(d.dataset.ms) < 2000;
	})()`)
	p.waitFor("the freshness after the event", `/^updated [0-9] s ago$/.test(`+fresh+`)`)
}

// seedStation makes a station at lat, lon with a pack at each of charges,
// through the store as the API would.
func seedStation(t *testing.T, st *store.Store, name string, lat, lon float64, charges ...int) *models.Station {
	t.Helper()
	ctx := context.Background()
	s, err := st.CreateStation(ctx, models.StationInput{Name: name, Address: name + " St", Latitude: lat, Longitude: lon})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range charges {
		if _, err := st.AddBattery(ctx, s.ID, models.BatteryInput{SerialNumber: fmt.Sprintf("%s-%d", name, i), ChargePercent: ptr(c)}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}
