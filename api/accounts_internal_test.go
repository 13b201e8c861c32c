package api

import (
	"context"
	"testing"
	"time"

	"batteryswap/models"
)

// fakeAccounts counts the reads of an accounts cache over a fixed set of
// users, on a clock the test moves.
type fakeAccounts struct {
	reads int
	now   time.Time
	role  models.Role
}

func (f *fakeAccounts) find(_ context.Context, id int64) (*models.User, error) {
	f.reads++
	if id > 1000 {
		return nil, models.Errorf(models.CodeNotFound, "user not found")
	}
	return &models.User{ID: id, Role: f.role, PasswordHash: "$2a$secret"}, nil
}

func newFakeAccounts(ttl time.Duration, max int) (*accounts, *fakeAccounts) {
	f := &fakeAccounts{now: time.Unix(1_000_000, 0), role: models.RoleAdmin}
	a := newAccounts(f.find, ttl, max)
	a.now = func() time.Time { return f.now }
	return a, f
}

// An account is read once per ttl, then again; forget reads it again at
// once; an unknown one is read every time (not cached).
func TestAccountsCacheForTTL(t *testing.T) {
	a, f := newFakeAccounts(5*time.Second, 100)
	ctx := context.Background()
	get := func() *models.User {
		t.Helper()
		u, err := a.get(ctx, 7)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	if u := get(); u.Role != models.RoleAdmin || u.PasswordHash != "" {
		t.Fatalf("first read = %+v, want the admin without its password hash", u)
	}
	f.role = models.RoleUser // demoted in the database
	f.now = f.now.Add(4 * time.Second)
	if u := get(); u.Role != models.RoleAdmin || f.reads != 1 {
		t.Fatalf("within the ttl: %+v after %d reads, want the cached admin after 1", u, f.reads)
	}
	get().Role = models.RoleAdmin // a caller's change must not reach the cache
	f.now = f.now.Add(time.Second)
	if u := get(); u.Role != models.RoleUser || f.reads != 2 {
		t.Fatalf("at the ttl: %+v after %d reads, want the demoted account read again", u, f.reads)
	}
	a.forget(7)
	get()
	if f.reads != 3 {
		t.Fatalf("after forget: %d reads, want 3", f.reads)
	}
	for range 2 {
		if _, err := a.get(ctx, 5000); !models.IsCode(err, models.CodeNotFound) {
			t.Fatalf("unknown account: %v, want not_found", err)
		}
	}
	if f.reads != 5 {
		t.Fatalf("unknown account read %d times in all, want every time", f.reads-3)
	}
}

// However many accounts sign in, the cache holds at most max of them; the
// most recent stay.
func TestAccountsCacheIsBounded(t *testing.T) {
	a, f := newFakeAccounts(time.Hour, 64)
	ctx := context.Background()
	for id := int64(1); id <= 1000; id++ {
		if _, err := a.get(ctx, id); err != nil {
			t.Fatal(err)
		}
		if n := a.size(); n > 64 {
			t.Fatalf("%d accounts cached after %d reads, want at most 64", n, id)
		}
	}
	reads := f.reads
	if _, err := a.get(ctx, 1000); err != nil || f.reads != reads {
		t.Fatalf("the latest account was not kept (%v, %d reads)", err, f.reads-reads)
	}
}

// A negative ttl reads the account on every request.
func TestAccountsWithoutCache(t *testing.T) {
	a, f := newFakeAccounts(-1, 64)
	for range 3 {
		if _, err := a.get(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
	}
	if f.reads != 3 || a.size() != 0 {
		t.Fatalf("%d reads, %d cached; want 3 and 0", f.reads, a.size())
	}
}
