package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pressly/goose/v3"
	"gorm.io/gorm"
)

// dialect is the seam between the store and its database: everything that
// differs between PostgreSQL (dialect_postgres.go) and SQLite
// (dialect_sqlite.go) is a method here, and nothing else in the package
// asks which database it runs on. The per-dialect SQL text of the booking
// path (book, release, the outbox write) and of the relay (pending) sits
// beside the Go code that runs it, in booking.go, outbox.go and relay.go.
type dialect interface {
	// name is "postgres" or "sqlite".
	name() string
	// open returns GORM's dialector for dsn.
	open(dsn string, opts Options) (gorm.Dialector, error)
	// tune sizes the pool and returns its size.
	tune(db *sql.DB, opts Options) int
	// migrations names goose's dialect, the migrations folder and the
	// provider's options.
	migrations() (goose.Dialect, string, []goose.ProviderOption, error)
	// lock makes a query lock the rows it reads until the transaction ends.
	lock(tx *gorm.DB) *gorm.DB
	// lease waits for the relay lease.
	lease(ctx context.Context, s *Store) (*relayLease, error)
	// listen runs, until ctx ends, whatever wakes this instance's relay for
	// other instances' commits and tells them of this one's (s.announce).
	listen(ctx context.Context, s *Store)
	// close releases what open took beyond the pool (a file lock).
	close() error

	// book claims the best free battery of a locked, open station and
	// inserts the booking for it (bookArgs, booking.go).
	book(tx *gorm.DB, a bookArgs) (*bookResult, error)
	// release ends an active booking as cancelled or expired and puts its
	// battery back (releaseArgs, booking.go); nil when no booking matched.
	release(tx *gorm.DB, a releaseArgs) (*releaseResult, error)
	// writeOutbox inserts notifications whose ids were reserved (by book or
	// release) and the change's events (outbox.go).
	writeOutbox(tx *gorm.DB, notes []notificationRow, evs []eventRow) error
	// pending numbers the committed, unsequenced events and returns, in
	// sequence order, at most limit of those not yet published (relay.go).
	pending(db *gorm.DB, limit int) ([]eventRow, error)
}

// DefaultSQLitePath is the embedded database used when nothing is configured.
const DefaultSQLitePath = "batteryswap.db"

// dialectFor reads DATABASE_URL: postgres:// (or postgresql://) selects
// PostgreSQL; sqlite://PATH, a bare file path or nothing (DefaultSQLitePath)
// selects SQLite. Anything else is refused rather than taken for the name of
// a SQLite file.
func dialectFor(url string) (dialect, string, error) {
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return &postgresDialect{}, url, nil
	case url == "":
		url = DefaultSQLitePath
	case !strings.HasPrefix(url, "sqlite://") && strings.Contains(url, "://"):
		scheme, _, _ := strings.Cut(url, "://")
		return nil, "", fmt.Errorf("store: database URL scheme %q: use postgres://… or sqlite://PATH (or a file path)", scheme)
	case strings.Contains(url, "=") && strings.ContainsAny(url, " \t"):
		return nil, "", errors.New("store: the database URL looks like a list of key=value settings: use postgres://user:password@host:port/dbname?sslmode=…")
	}
	path := strings.TrimPrefix(url, "sqlite://")
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if dir := filepath.Dir(path); !isDir(dir) {
		return nil, "", fmt.Errorf("store: the SQLite file's directory %q does not exist", dir)
	}
	d := &sqliteDialect{path: path}
	// The path is part of a file: URI, where % and # mean something.
	path = strings.NewReplacer("%", "%25", "#", "%23").Replace(path)
	// WAL lets readers go on beside the writer; the busy timeout covers
	// another process (a CLI command) touching the file; times are written
	// in one sortable UTC format so that SQL comparisons on them hold.
	return d, "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_time_format=sqlite", nil
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// errKind is what a driver error means to the store, read from the
// driver's codes (classify), never from its message text.
type errKind int

const (
	errOther errKind = iota
	// errUnique: a unique index refused the row.
	errUnique
	// errGaveWay: the database ended this transaction to let a concurrent
	// one on (a deadlock); trying again may work.
	errGaveWay
	// errDown: the database could not be reached or dropped the connection.
	errDown
)

// classify reads a driver error's kind from its codes: PostgreSQL's
// SQLSTATE (pgKind) or SQLite's extended result code (sqliteKind). The two
// drivers' error types differ, so an error is only ever one of them.
func classify(err error) errKind {
	if err == nil {
		return errOther
	}
	if k, ok := pgKind(err); ok {
		return k
	}
	if k, ok := sqliteKind(err); ok {
		return k
	}
	if netDown(err) {
		return errDown
	}
	return errOther
}
