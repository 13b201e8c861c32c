package web

import (
	"io/fs"
	"path"
	"regexp"
	"strings"
	"testing"
)

var (
	htmlRef   = regexp.MustCompile(`(?i)\b(?:src|href)\s*=\s*["']([^"']+)["']`)
	moduleRef = regexp.MustCompile(`\b(?:from|import)\s*["']([^"']+)["']`)
)

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := fs.ReadFile(FS, name)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return string(b)
}

// TestIndexHooks checks that index.html is embedded and carries the element
// ids that browser tests and the dashboard script rely on.
func TestIndexHooks(t *testing.T) {
	index := readFile(t, "index.html")
	for _, want := range []string{
		`<meta name="viewport"`,
		`id="conn-status"`, `data-state="reconnecting"`,
		`id="login-form"`, `id="login-email"`, `id="login-password"`,
		`id="register-form"`, `id="register-email"`, `id="register-password"`, `id="register-name"`,
		`id="add-battery-form"`, `id="add-battery-station"`, `id="add-battery-serial"`, `id="add-battery-charge"`,
		`id="create-station-form"`, `id="station-name"`, `id="station-address"`, `id="station-lat"`, `id="station-lon"`,
		`id="my-booking"`, `id="unread-count"`,
		`id="map"`, `id="station-detail"`, `id="near-form"`, `id="near-location"`, `id="near-available"`, `id="near-geo"`, `id="near-list"`,
	} {
		if !strings.Contains(index, want) {
			t.Errorf("index.html lacks %s", want)
		}
	}
}

// TestEveryInputHasALabel checks that each id'd form control in index.html
// has a <label for> naming it.
func TestEveryInputHasALabel(t *testing.T) {
	index := readFile(t, "index.html")
	control := regexp.MustCompile(`<(?:input|select|textarea)\b[^>]*\bid="([^"]+)"`)
	for _, m := range control.FindAllStringSubmatch(index, -1) {
		if !strings.Contains(index, `for="`+m[1]+`"`) {
			t.Errorf("control #%s has no label", m[1])
		}
	}
}

// TestNoRemoteURLs checks that no embedded file points off the machine: the
// dashboard must work offline.
func TestNoRemoteURLs(t *testing.T) {
	err := fs.WalkDir(FS, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body := readFile(t, name)
		for _, remote := range []string{"http://", "https://", `"//`, `'//`} {
			if strings.Contains(body, remote) {
				t.Errorf("%s contains a remote reference %q", name, remote)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReferencedAssetsExist checks that every asset index.html loads and
// every module a script imports is embedded.
func TestReferencedAssetsExist(t *testing.T) {
	type ref struct{ from, target string }
	var refs []ref
	for _, m := range htmlRef.FindAllStringSubmatch(readFile(t, "index.html"), -1) {
		if !strings.HasPrefix(m[1], "#") {
			refs = append(refs, ref{"index.html", strings.TrimPrefix(m[1], "/")})
		}
	}
	scripts, err := fs.Glob(FS, "static/*.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range scripts {
		for _, m := range moduleRef.FindAllStringSubmatch(readFile(t, s), -1) {
			refs = append(refs, ref{s, path.Join(path.Dir(s), m[1])})
		}
	}
	for _, want := range []string{"static/app.js", "static/app.css", "static/live.js"} {
		found := false
		for _, r := range refs {
			found = found || r.target == want
		}
		if !found {
			t.Errorf("nothing references %s", want)
		}
	}
	for _, r := range refs {
		if _, err := fs.Stat(FS, r.target); err != nil {
			t.Errorf("%s references %s, which is not embedded: %v", r.from, r.target, err)
		}
	}
}
