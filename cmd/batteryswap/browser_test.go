package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"batteryswap/models"
	"batteryswap/store/storetest"
)

// chromium finds Debian's Chromium, or skips (fails under REQUIRE_SERVICES=1).
func chromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test")
	}
	for _, p := range []string{os.Getenv("CHROMIUM_PATH"), "chromium", "chromium-browser"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("REQUIRE_SERVICES") == "1" {
		t.Fatal("chromium is not installed and REQUIRE_SERVICES=1 (apt-get install chromium)")
	}
	t.Skip("chromium not installed")
	return ""
}

// screenshotDir is where browser tests leave their screenshots: testout/browser
// at the repository root, or BROWSER_TEST_OUT.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("BROWSER_TEST_OUT")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "testout", "browser")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

type browser struct {
	t    *testing.T
	path string
	dir  string
}

// newBrowser finds Chromium; each page() is its own headless Chromium with
// its own profile (its own cookies and storage), like a second person's
// window.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	return &browser{t: t, path: chromium(t), dir: screenshotDir(t)}
}

type page struct {
	b    *browser
	name string
	ctx  context.Context
}

func (b *browser) page(name string) *page {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(b.path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(filepath.Join(os.TempDir(), fmt.Sprintf("bs-chromium-%d-%s", os.Getpid(), name))),
		chromedp.WindowSize(1280, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	b.t.Cleanup(func() {
		cancel()
		cancelAlloc()
		_ = os.RemoveAll(filepath.Join(os.TempDir(), fmt.Sprintf("bs-chromium-%d-%s", os.Getpid(), name)))
	})
	// Every page records what the Content-Security-Policy blocks, for
	// noPolicyViolations.
	if err := chromedp.Run(ctx, chromedp.ActionFunc(func(ctx context.Context) error {
		_, err := cdppage.AddScriptToEvaluateOnNewDocument(`window.__blocked = [];
			document.addEventListener('securitypolicyviolation', (e) => window.__blocked.push(e.violatedDirective + ' ' + e.blockedURI));`).Do(ctx)
		return err
	})); err != nil {
		b.t.Fatalf("start chromium: %v", err)
	}
	return &page{b: b, name: name, ctx: ctx}
}

// noPolicyViolations fails the test if the page's Content-Security-Policy
// blocked anything: the dashboard must live within it.
func (p *page) noPolicyViolations() {
	p.b.t.Helper()
	var blocked []string
	p.run(chromedp.Evaluate(`window.__blocked || []`, &blocked))
	if len(blocked) > 0 {
		p.b.t.Errorf("%s: the Content-Security-Policy blocked %q", p.name, blocked)
	}
}

func (p *page) run(actions ...chromedp.Action) {
	p.b.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		p.shot("failure")
		p.b.t.Fatalf("%s: %v", p.name, err)
	}
}

// waitFor polls a JavaScript condition in the page until it is true.
func (p *page) waitFor(what, js string) {
	p.b.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	// An element the page has not drawn yet makes a predicate throw: that
	// is "not yet", not a failure; one that never holds times out.
	js = "(() => { try { return !!(" + js + "); } catch (e) { return false; } })()"
	var ok bool
	if err := chromedp.Run(ctx, chromedp.Poll(js, &ok, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil || !ok {
		p.shot("timeout")
		var body string
		_ = chromedp.Run(p.ctx, chromedp.Evaluate(`document.body.innerText.slice(0, 2000)`, &body))
		p.b.t.Fatalf("%s: waiting for %s: %v\npage text:\n%s", p.name, what, err, body)
	}
}

func (p *page) shot(label string) {
	var buf []byte
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&buf, 100)); err == nil {
		path := filepath.Join(p.b.dir, fmt.Sprintf("%s-%s-%s.png", p.b.t.Name(), p.name, label))
		if err := os.WriteFile(path, buf, 0o644); err == nil {
			p.b.t.Logf("screenshot: %s", path)
		}
	}
}

func (p *page) fill(fields map[string]string) chromedp.Action {
	var acts chromedp.Tasks
	for sel, v := range fields {
		acts = append(acts, chromedp.SetValue(sel, v, chromedp.ByQuery))
	}
	return acts
}

func count(station int64, field string) string {
	return fmt.Sprintf(`(document.querySelector('[data-station-id="%d"] [data-field="%s"]') || {}).textContent`, station, field)
}

// TestDashboardLiveAcrossWindowsAndRestart: an admin and a rider in two
// browser windows; the admin adds a battery and the rider books it, and each
// window's board follows the other's change without a reload. Then the
// server restarts, the connection indicator goes to reconnecting and comes
// back, and the board keeps following changes.
func TestDashboardLiveAcrossWindowsAndRestart(t *testing.T) {
	b := newBrowser(t)
	cfg := testConfig(t, storetest.URL(t, "sqlite"), "")
	srv := startInstance(t, cfg)
	addr := srv.ln.Addr().String()
	if _, err := srv.app.store.CreateUser(context.Background(), "admin@example.com", "Admin", mustHash(t, "adminpass"), models.RoleAdmin); err != nil {
		t.Fatal(err)
	}

	admin := b.page("admin")
	admin.run(chromedp.Navigate(srv.url + "/"))
	admin.waitFor("the live indicator", `document.querySelector('#conn-status').dataset.state === 'live'`)
	admin.run(
		admin.fill(map[string]string{"#login-email": "admin@example.com", "#login-password": "adminpass"}),
		chromedp.Click(`#login-form button[type="submit"]`, chromedp.ByQuery),
	)
	admin.waitFor("the admin panel", `!!document.querySelector('#admin') && !document.querySelector('#admin').hidden && document.querySelector('#admin').offsetParent !== null`)
	admin.run(
		admin.fill(map[string]string{"#station-name": "Harbour", "#station-address": "1 Quay", "#station-lat": "51.5", "#station-lon": "-0.1"}),
		chromedp.Click(`#create-station-form button[type="submit"]`, chromedp.ByQuery),
	)
	admin.waitFor("the new station's card", `!!document.querySelector('[data-station-id="1"]')`)

	rider := b.page("rider")
	rider.run(chromedp.Navigate(srv.url + "/"))
	rider.waitFor("the station on the rider's board", count(1, "total")+` === '0'`)
	rider.run(
		rider.fill(map[string]string{"#register-email": "ria@example.com", "#register-password": "ria-secret", "#register-name": "Ria"}),
		chromedp.Click(`#register-form button[type="submit"]`, chromedp.ByQuery),
	)
	rider.waitFor("the rider to be signed in", `!!document.querySelector('#logout-button') && document.querySelector('#logout-button').offsetParent !== null`)

	// The admin adds a battery: the rider's board shows it without a reload.
	admin.run(
		admin.fill(map[string]string{"#add-battery-station": "1", "#add-battery-serial": "HB-1", "#add-battery-charge": "95"}),
		chromedp.Click(`#add-battery-form button[type="submit"]`, chromedp.ByQuery),
	)
	rider.waitFor("the added battery on the rider's board", count(1, "available")+` === '1' && `+count(1, "total")+` === '1'`)
	rider.shot("battery-added")

	// The rider books it: the admin's board moves it to booked.
	rider.run(chromedp.Click(`[data-station-id="1"] button[data-action="book"]`, chromedp.ByQuery))
	rider.waitFor("the rider's booking", `(document.querySelector('#my-booking [data-field="status"]') || {}).textContent === 'ready'`)
	admin.waitFor("the booking on the admin's board", count(1, "booked")+` === '1' && `+count(1, "available")+` === '0'`)
	admin.shot("booked")
	rider.waitFor("the rider's unread notifications", `Number((document.querySelector('#unread-count') || {}).textContent) >= 1`)

	// Restart the server: the indicator shows the outage and recovers by
	// resuming with its cursor; a change made after the restart arrives.
	srv.stop(t)
	admin.waitFor("the indicator to show the outage", `document.querySelector('#conn-status').dataset.state === 'reconnecting'`)
	second := startOn(t, cfg, addr)
	admin.waitFor("the indicator to recover", `['live', 'resumed'].includes(document.querySelector('#conn-status').dataset.state)`)
	if _, err := second.app.store.UpdateStation(context.Background(), 1, models.StationPatch{Status: ptr(models.StationMaintenance), Message: ptr("pump check")}); err != nil {
		t.Fatal(err)
	}
	admin.waitFor("the status change after the restart", `(document.querySelector('[data-station-id="1"] [data-field="status"]') || {dataset: {}}).dataset.status === 'maintenance'`)
	rider.waitFor("the status change on the rider's board", `(document.querySelector('[data-station-id="1"] [data-field="status"]') || {dataset: {}}).dataset.status === 'maintenance'`)
	admin.shot("after-restart")
	rider.shot("after-restart")
	admin.noPolicyViolations()
	rider.noPolicyViolations()
}

func ptr[T any](v T) *T { return &v }

// TestDashboardFindsTheActiveBookingAmongMany: the booking panel shows the
// signed-in user's active booking however many bookings came before it —
// the rider's own older ones, or, for an admin, everyone else's newer ones.
func TestDashboardFindsTheActiveBookingAmongMany(t *testing.T) {
	b := newBrowser(t)
	srv := startInstance(t, testConfig(t, storetest.URL(t, "sqlite"), ""))
	ctx, st := context.Background(), srv.app.store
	admin, err := st.CreateUser(ctx, "admin@example.com", "Admin", mustHash(t, "adminpass"), models.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	rider, err := st.CreateUser(ctx, "ria@example.com", "Ria", mustHash(t, "ria-secret"), models.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	station, err := st.CreateStation(ctx, models.StationInput{Name: "Harbour", Address: "1 Quay"})
	if err != nil {
		t.Fatal(err)
	}
	for _, serial := range []string{"HB-1", "HB-2"} {
		if _, err := st.AddBattery(ctx, station.ID, models.BatteryInput{SerialNumber: serial, ChargePercent: ptr(95)}); err != nil {
			t.Fatal(err)
		}
	}
	book := func(u *models.User) *models.Booking {
		bk, _, err := st.CreateBooking(ctx, u.ID, station.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		return bk
	}
	// The admin's booking first; then more than a page (50) of the rider's.
	mine := book(admin)
	for range 51 {
		if _, err := st.CancelBooking(ctx, book(rider).ID, rider); err != nil {
			t.Fatal(err)
		}
	}
	active := book(rider)

	for _, who := range []struct {
		name, email, password string
		want                  *models.Booking
		unread                string // the unread count, as a pattern
	}{
		// Three notifications per booking: more unread than the snapshot
		// holds, and the count says so.
		{"rider", "ria@example.com", "ria-secret", active, `^[0-9]+\+$`},
		{"admin", "admin@example.com", "adminpass", mine, `^[1-9][0-9]*$`},
	} {
		p := b.page(who.name)
		p.run(chromedp.Navigate(srv.url + "/"))
		p.waitFor("the login form", `!!document.querySelector('#login-form')`)
		p.run(
			p.fill(map[string]string{"#login-email": who.email, "#login-password": who.password}),
			chromedp.Click(`#login-form button[type="submit"]`, chromedp.ByQuery),
		)
		p.waitFor(fmt.Sprintf("%s's active booking (battery %d)", who.name, who.want.BatteryID), fmt.Sprintf(
			`(document.querySelector('#my-booking [data-field="status"]') || {}).textContent === 'ready' && `+
				`(document.querySelector('#my-booking [data-field="battery"]') || {}).textContent === '#%d'`, who.want.BatteryID))
		p.waitFor(fmt.Sprintf("%s's unread count to match %s", who.name, who.unread), fmt.Sprintf(
			`/%s/.test((document.querySelector('#unread-count') || {}).textContent || '')`, who.unread))
	}
}
