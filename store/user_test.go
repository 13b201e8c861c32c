package store_test

import (
	"context"
	"testing"

	"batteryswap/models"
	"batteryswap/store"
	"batteryswap/store/storetest"
)

// A database's deployment id is made once with its schema: the same on
// every read and reopen, another for another database.
func TestDeploymentID(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			url := storetest.URL(t, d)
			first := storetest.OpenURL(t, url, store.Options{})
			id, err := first.DeploymentID(ctx)
			if err != nil || len(id) < 16 {
				t.Fatalf("deployment id %q, %v", id, err)
			}
			again := storetest.OpenURL(t, url, store.Options{}) // migrate again: nothing new
			if id2, err := again.DeploymentID(ctx); err != nil || id2 != id {
				t.Fatalf("reopened: %q, %v; want %q", id2, err, id)
			}
			other, err := storetest.Open(t, d, store.Options{}).DeploymentID(ctx)
			if err != nil || other == id {
				t.Fatalf("another database's id %q, %v; want another than %q", other, err, id)
			}
		})
	}
}

// Accounts start at a random token version, logout-all's bump raises it
// by one, and so does a change of role.
func TestTokenVersionAndRole(t *testing.T) {
	eachDialect(t, func(t *testing.T, f *fixture) {
		a, b := f.user("a@example.com"), f.user("b@example.com")
		if a.TokenVersion == b.TokenVersion || a.TokenVersion <= 0 {
			t.Fatalf("token versions %d and %d: want random, positive, different", a.TokenVersion, b.TokenVersion)
		}
		admin, _, err := f.s.EnsureAdmin(f.ctx, "ops@example.com", "Ops", "hash")
		if err != nil || admin.TokenVersion == 0 {
			t.Fatalf("bootstrap admin: %+v, %v; want a random token version", admin, err)
		}
		if err := f.s.BumpTokenVersion(f.ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		got, err := f.s.FindUserByID(f.ctx, a.ID)
		if err != nil || got.TokenVersion != a.TokenVersion+1 {
			t.Fatalf("after the bump: %+v, %v; want version %d", got, err, a.TokenVersion+1)
		}
		if again, _ := f.s.FindUserByID(f.ctx, b.ID); again.TokenVersion != b.TokenVersion {
			t.Fatalf("another account's version moved: %d, want %d", again.TokenVersion, b.TokenVersion)
		}
		wantCode(t, f.s.BumpTokenVersion(f.ctx, a.ID+1000), models.CodeNotFound)

		// A role change ends the account's tokens; the same role changes nothing.
		u, err := f.s.SetUserRole(f.ctx, "B@example.com", models.RoleAdmin)
		if err != nil || u.ID != b.ID || u.Role != models.RoleAdmin || u.TokenVersion != b.TokenVersion+1 {
			t.Fatalf("set role: %+v, %v; want admin at version %d", u, err, b.TokenVersion+1)
		}
		if got, _ := f.s.FindUserByID(f.ctx, b.ID); got.Role != models.RoleAdmin || got.TokenVersion != b.TokenVersion+1 {
			t.Fatalf("after the change: %+v, want admin at version %d", got, b.TokenVersion+1)
		}
		if u, err := f.s.SetUserRole(f.ctx, "b@example.com", models.RoleAdmin); err != nil || u.TokenVersion != b.TokenVersion+1 {
			t.Fatalf("the same role again: %+v, %v; want the version unchanged", u, err)
		}
		// So does the bootstrap admin's promotion of an existing rider, and
		// only that: its restarts change nothing.
		c := f.user("c@example.com")
		for range 2 {
			if _, _, err := f.s.EnsureAdmin(f.ctx, "c@example.com", "C", "hash"); err != nil {
				t.Fatal(err)
			}
		}
		if got, _ := f.s.FindUserByID(f.ctx, c.ID); got.Role != models.RoleAdmin || got.TokenVersion != c.TokenVersion+1 {
			t.Fatalf("promoted by EnsureAdmin twice: %+v, want admin at version %d", got, c.TokenVersion+1)
		}
		_, err = f.s.SetUserRole(f.ctx, "nobody@example.com", models.RoleUser)
		wantCode(t, err, models.CodeNotFound)
		_, err = f.s.SetUserRole(f.ctx, "b@example.com", "root")
		wantCode(t, err, models.CodeValidationFailed)
	})
}
