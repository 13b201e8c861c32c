package store

import (
	"context"
	"database/sql"
	"errors"

	sqlitedriver "github.com/glebarez/go-sqlite"
	"github.com/glebarez/sqlite"
	"github.com/pressly/goose/v3"
	"gorm.io/gorm"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteDialect is an embedded SQLite file, owned by one process: one
// connection, so one writer at a time, and the relay lease in-process.
type sqliteDialect struct {
	path string
}

func (*sqliteDialect) name() string { return "sqlite" }

func (d *sqliteDialect) open(dsn string) (gorm.Dialector, error) {
	return sqlite.Open(dsn), nil
}

// tune keeps one connection: SQLite has one writer anyway, and serialising
// in the pool instead of in the file lock means no SQLITE_BUSY, and the
// station "lock" is the transaction itself.
func (*sqliteDialect) tune(db *sql.DB, _ Options) int {
	db.SetMaxOpenConns(1)
	return 1
}

func (*sqliteDialect) migrations() (goose.Dialect, string, []goose.ProviderOption, error) {
	return goose.DialectSQLite3, "sqlite", nil, nil
}

// lock changes nothing: the one connection already serialises writers.
func (*sqliteDialect) lock(tx *gorm.DB) *gorm.DB { return tx }

// lease is in-process: one process owns the file.
func (*sqliteDialect) lease(ctx context.Context, s *Store) (*relayLease, error) {
	select {
	case s.relayLock <- struct{}{}:
		return &relayLease{s: s, db: s.db, lost: make(chan struct{}), release: func() { <-s.relayLock }}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// listen has nothing to do: no other instance shares the file.
func (*sqliteDialect) listen(context.Context, *Store) {}

func (d *sqliteDialect) close() error { return nil }

// sqliteKind reads SQLite's extended result code. ok is false when err
// carries no SQLite error.
func sqliteKind(err error) (kind errKind, ok bool) {
	var se *sqlitedriver.Error
	if !errors.As(err, &se) {
		return errOther, false
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return errUnique, true
	}
	switch se.Code() & 0xff { // the primary code
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		// Another process holds the file past the busy timeout.
		return errDown, true
	}
	return errOther, true
}
