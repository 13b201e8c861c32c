package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/pressly/goose/v3"

	"batteryswap/migrations"
)

func (s *Store) provider() (*goose.Provider, error) {
	dialect, folder, opts, err := s.dialect.migrations()
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(migrations.FS, folder)
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(dialect, s.sqlDB, sub, opts...)
}

// Migrate applies every pending migration.
func (s *Store) Migrate(ctx context.Context) error {
	p, err := s.provider()
	if err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("store: migrate up: %w", err)
	}
	return nil
}

// MigrationsPending reports whether the database lacks migrations this
// binary has.
func (s *Store) MigrationsPending(ctx context.Context) (bool, error) {
	p, err := s.provider()
	if err != nil {
		return false, fmt.Errorf("store: migrations: %w", err)
	}
	pending, err := p.HasPending(ctx)
	if err != nil {
		return false, fmt.Errorf("store: migration status: %w", err)
	}
	return pending, nil
}

// MigrateDown rolls back the latest migration. It reports false, and no
// error, when no migration is applied.
func (s *Store) MigrateDown(ctx context.Context) (rolledBack bool, err error) {
	p, err := s.provider()
	if err != nil {
		return false, fmt.Errorf("store: migrations: %w", err)
	}
	if _, err := p.Down(ctx); errors.Is(err, goose.ErrNoNextVersion) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("store: migrate down: %w", err)
	}
	return true, nil
}

// MigrationStatus writes one line per migration: version, state, file.
func (s *Store) MigrationStatus(ctx context.Context, w io.Writer) error {
	p, err := s.provider()
	if err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	st, err := p.Status(ctx)
	if err != nil {
		return fmt.Errorf("store: migration status: %w", err)
	}
	for _, m := range st {
		at := ""
		if !m.AppliedAt.IsZero() {
			at = m.AppliedAt.UTC().Format("2006-01-02T15:04:05Z")
		}
		fmt.Fprintf(w, "%05d  %-8s %-22s %s\n", m.Source.Version, m.State, at, m.Source.Path)
	}
	return nil
}
