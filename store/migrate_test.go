package store_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"batteryswap/models"
	"batteryswap/store"
	"batteryswap/store/storetest"
)

// TestMigrationsGoDownAndUpAgain: every migration has a working down, and
// the schema comes back whole.
func TestMigrationsGoDownAndUpAgain(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			s := storetest.Open(t, d, store.Options{})
			var status bytes.Buffer
			if err := s.MigrationStatus(ctx, &status); err != nil || strings.Count(status.String(), "applied") != 2 {
				t.Fatalf("status after up:\n%s %v", status.String(), err)
			}
			for range 2 {
				if err := s.MigrateDown(ctx); err != nil {
					t.Fatalf("down: %v", err)
				}
			}
			if _, err := s.CreateUser(ctx, "a@example.com", "A", "h", models.RoleUser); err == nil {
				t.Fatal("users table still there after migrating down")
			}
			if err := s.Migrate(ctx); err != nil {
				t.Fatalf("up again: %v", err)
			}
			if _, err := s.CreateUser(ctx, "a@example.com", "A", "h", models.RoleUser); err != nil {
				t.Fatalf("after up again: %v", err)
			}
		})
	}
}
