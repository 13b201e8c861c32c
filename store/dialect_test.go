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

// The SQLite file and its WAL and shared-memory files are its owner's
// only; a second store that asks for the file exclusively (a second server)
// is refused with a clear message while the first holds it, and gets it
// once the first closes; a command's store, which does not ask, opens
// beside a server.
func TestSQLiteFileIsPrivateAndExclusive(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "own.db")
	first, err := store.Open(ctx, path, store.Options{Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if err := first.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := first.CreateUser(ctx, "own@example.com", "Own", "h", "user"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(p), err)
		}
		if mode := st.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s has mode %v, want -rw-------", filepath.Base(p), mode)
		}
	}
	second, err := store.Open(ctx, "sqlite://"+path, store.Options{Exclusive: true})
	if err == nil {
		second.Close()
		t.Fatal("a second exclusive store opened the file the first one holds")
	}
	if !strings.Contains(err.Error(), "in use by another batteryswap server") || !strings.Contains(err.Error(), path) {
		t.Errorf("refusal %q does not say the file is in use, and which", err)
	}
	command, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatalf("a command's store beside the server: %v", err)
	}
	if _, err := command.FindUserByEmail(ctx, "own@example.com"); err != nil {
		t.Errorf("a command's store reads: %v", err)
	}
	command.Close()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := store.Open(ctx, path, store.Options{Exclusive: true})
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	again.Close()
}
