package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"

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
	// file is the database file, open for the store's life while it holds
	// the exclusive lock (Options.Exclusive).
	file *os.File
}

func (*sqliteDialect) name() string { return "sqlite" }

// open creates the file (unless the store asks for an existing one),
// readable by its owner only (SQLite gives the WAL and shared-memory files
// the database file's mode), and, for a store that asks for it, locks it
// exclusively: a second instance on the same file refuses to start instead
// of sharing it (two relays, lost live events, "database is locked").
func (d *sqliteDialect) open(dsn string, opts Options) (gorm.Dialector, error) {
	flags := os.O_RDWR | os.O_CREATE
	if opts.Existing {
		flags = os.O_RDWR
	}
	f, err := os.OpenFile(d.path, flags, 0o600)
	if errors.Is(err, fs.ErrNotExist) && opts.Existing {
		return nil, fmt.Errorf("store: the SQLite file %s does not exist (serve or migrate up creates it)", d.path)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open the SQLite file: %w", err)
	}
	if opts.Existing {
		dsn += "&mode=rw" // nor may SQLite create it, should it go meanwhile
	}
	if !opts.Exclusive {
		f.Close()
		return sqlite.Open(dsn), nil
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, errFileInUse) {
			return nil, fmt.Errorf("store: the SQLite file %s is in use by another batteryswap server: one server per SQLite file (run several on PostgreSQL)", d.path)
		}
		return nil, fmt.Errorf("store: lock the SQLite file %s: %w", d.path, err)
	}
	d.file = f
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

// close lets the file go, after the pool has closed it: closing another
// descriptor of the file while SQLite has it open would drop SQLite's own
// POSIX locks.
func (d *sqliteDialect) close() error {
	if d.file == nil {
		return nil
	}
	err := d.file.Close()
	d.file = nil
	return err
}

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
