package store_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"batteryswap/store"
)

// DATABASE_URL: what is not PostgreSQL or a usable SQLite path is refused
// with a clear error, instead of becoming an oddly named SQLite file; a path
// with characters that mean something in a URI opens the file it names.
func TestDatabaseURLForms(t *testing.T) {
	ctx := context.Background()
	for url, want := range map[string]string{
		"mysql://bs@db/bs":                       `scheme "mysql"`,
		"host=db user=bs dbname=bs sslmode=none": "key=value",
		"/nonexistent-dir/bs.db":                 "does not exist",
		"sqlite:///nonexistent-dir/bs.db":        "does not exist",
	} {
		if s, err := store.Open(ctx, url, store.Options{}); err == nil || !strings.Contains(err.Error(), want) {
			if s != nil {
				s.Close()
			}
			t.Errorf("Open(%q): %v, want an error saying %s", url, err, want)
		}
	}
	dir := t.TempDir()
	for _, name := range []string{"data#1.db", "a%41.db"} {
		path := filepath.Join(dir, name)
		for _, url := range []string{path, "sqlite://" + path} {
			s, err := store.Open(ctx, url, store.Options{})
			if err != nil {
				t.Fatalf("Open(%q): %v", url, err)
			}
			if err := s.Migrate(ctx); err != nil {
				t.Fatalf("migrate %q: %v", url, err)
			}
			s.Close()
			if _, err := os.Stat(path); err != nil {
				t.Errorf("Open(%q) did not make %s: %v", url, name, err)
			}
		}
	}
}
