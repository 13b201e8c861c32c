// Package storetest opens real, migrated, throw-away stores for tests: an
// SQLite file in a temp folder always, and a fresh PostgreSQL database when
// TEST_DATABASE_URL is set (REQUIRE_SERVICES=1 turns its absence into a
// failure instead of a skip).
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"

	"batteryswap/store"
)

// Dialects are the databases every store test runs on.
var Dialects = []string{"sqlite", "postgres"}

// URL returns a database URL for a fresh, empty database of the dialect,
// dropped when the test ends. It skips (or fails under REQUIRE_SERVICES=1)
// when PostgreSQL is not configured.
func URL(t testing.TB, dialect string) string {
	t.Helper()
	if dialect == "sqlite" {
		return "sqlite://" + filepath.Join(t.TempDir(), "test.db")
	}
	base := BaseURL(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to %s: %v", redact(base), err)
	}
	defer admin.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "bs_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse TEST_DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// BaseURL returns TEST_DATABASE_URL, the PostgreSQL database the tests may
// create databases from. It skips (or fails under REQUIRE_SERVICES=1) when
// it is not set.
func BaseURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		if os.Getenv("REQUIRE_SERVICES") == "1" {
			t.Fatal("TEST_DATABASE_URL is not set and REQUIRE_SERVICES=1")
		}
		t.Skip("TEST_DATABASE_URL not set")
	}
	return base
}

// Open returns a migrated store on a fresh database of the dialect, closed
// when the test ends.
func Open(t testing.TB, dialect string, opts store.Options) *store.Store {
	t.Helper()
	return OpenURL(t, URL(t, dialect), opts)
}

// OpenURL opens and migrates a store on url, closed when the test ends.
func OpenURL(t testing.TB, url string, opts store.Options) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), url, opts)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return s
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable url)"
	}
	return u.Redacted()
}
