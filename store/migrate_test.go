package store_test

import (
	"bytes"
	"context"
	"io/fs"
	"path"
	"strings"
	"testing"

	"batteryswap/migrations"
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
			files, err := fs.Glob(migrations.FS, d+"/*.sql")
			if err != nil || len(files) < 3 {
				t.Fatalf("migrations of %s: %v %v", d, files, err)
			}
			var status bytes.Buffer
			if err := s.MigrationStatus(ctx, &status); err != nil || strings.Count(status.String(), "applied") != len(files) {
				t.Fatalf("status after up (want %d applied):\n%s %v", len(files), status.String(), err)
			}
			for range files {
				if ok, err := s.MigrateDown(ctx); err != nil || !ok {
					t.Fatalf("down: %v, %v", ok, err)
				}
			}
			if ok, err := s.MigrateDown(ctx); err != nil || ok {
				t.Fatalf("down with nothing applied: rolled back %v, %v; want false, nil", ok, err)
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

// A database migrated by a newer binary (a migration this one lacks) is
// refused by Migrate and by MigrationsPending, naming both versions,
// instead of being served silently.
func TestSchemaNewerThanTheBinaryIsRefused(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			s := storetest.Open(t, d, store.Options{})
			files, err := fs.Glob(migrations.FS, d+"/*.sql")
			if err != nil || len(files) == 0 {
				t.Fatal(files, err)
			}
			latest := strings.SplitN(path.Base(files[len(files)-1]), "_", 2)[0]
			if err := s.DB().Exec("INSERT INTO goose_db_version (version_id, is_applied) VALUES (?, ?)", 90001, true).Error; err != nil {
				t.Fatal(err)
			}
			if err := s.Migrate(ctx); err == nil || !strings.Contains(err.Error(), "90001") || !strings.Contains(err.Error(), latest) {
				t.Errorf("Migrate on a newer schema: %v, want a refusal naming 90001 and %s", err, latest)
			}
			if _, err := s.MigrationsPending(ctx); err == nil || !strings.Contains(err.Error(), "90001") || !strings.Contains(err.Error(), latest) {
				t.Errorf("MigrationsPending on a newer schema: %v, want a refusal naming 90001 and %s", err, latest)
			}
		})
	}
}
