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

// notNewer refuses a database whose schema is newer than this binary's
// migrations (a newer version migrated it): this binary would run on a
// schema it does not know, silently. It names both versions.
func notNewer(ctx context.Context, p *goose.Provider) error {
	have, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("store: migration status: %w", err)
	}
	var latest int64
	for _, src := range p.ListSources() {
		latest = max(latest, src.Version)
	}
	if have > latest {
		return fmt.Errorf("store: the database's schema is at migration %05d, newer than this binary's migrations (up to %05d): "+
			"run a batteryswap that has migration %05d, or roll the database back with that version's \"batteryswap migrate down\"", have, latest, have)
	}
	return nil
}

// Migrate applies every pending migration. A database whose schema is
// newer than this binary's migrations is refused.
func (s *Store) Migrate(ctx context.Context) error {
	p, err := s.provider()
	if err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	if err := notNewer(ctx, p); err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("store: migrate up: %w", err)
	}
	return nil
}

// MigrationsPending reports whether the database lacks migrations this
// binary has. A database whose schema is newer than this binary's
// migrations is an error.
func (s *Store) MigrationsPending(ctx context.Context) (bool, error) {
	p, err := s.provider()
	if err != nil {
		return false, fmt.Errorf("store: migrations: %w", err)
	}
	if err := notNewer(ctx, p); err != nil {
		return false, err
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
