package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// dialect is the one place that branches on PostgreSQL versus SQLite.
type dialect struct {
	name   string
	goose  goose.Dialect
	folder string
}

var (
	postgresDialect = dialect{name: "postgres", goose: goose.DialectPostgres, folder: "postgres"}
	sqliteDialect   = dialect{name: "sqlite", goose: goose.DialectSQLite3, folder: "sqlite"}
)

// DefaultSQLitePath is the embedded database used when nothing is configured.
const DefaultSQLitePath = "batteryswap.db"

// dialectFor reads DATABASE_URL: postgres:// (or postgresql://) selects
// PostgreSQL; sqlite://PATH, a bare file path or nothing (DefaultSQLitePath)
// selects SQLite. Anything else is refused rather than taken for the name of
// a SQLite file.
func dialectFor(url string) (dialect, string, error) {
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return postgresDialect, url, nil
	case url == "":
		url = DefaultSQLitePath
	case !strings.HasPrefix(url, "sqlite://") && strings.Contains(url, "://"):
		scheme, _, _ := strings.Cut(url, "://")
		return dialect{}, "", fmt.Errorf("store: database URL scheme %q: use postgres://… or sqlite://PATH (or a file path)", scheme)
	case strings.Contains(url, "=") && strings.ContainsAny(url, " \t"):
		return dialect{}, "", errors.New("store: the database URL looks like a list of key=value settings: use postgres://user:password@host:port/dbname?sslmode=…")
	}
	path := strings.TrimPrefix(url, "sqlite://")
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if dir := filepath.Dir(path); !isDir(dir) {
		return dialect{}, "", fmt.Errorf("store: the SQLite file's directory %q does not exist", dir)
	}
	// The path is part of a file: URI, where % and # mean something.
	path = strings.NewReplacer("%", "%25", "#", "%23").Replace(path)
	// WAL lets readers go on beside the writer; the busy timeout covers
	// another process (a CLI command) touching the file; times are written
	// in one sortable UTC format so that SQL comparisons on them hold.
	return sqliteDialect, "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_time_format=sqlite", nil
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

func (d dialect) open(dsn string) gorm.Dialector {
	if d.name == "postgres" {
		return postgres.New(postgres.Config{DSN: dsn, OptionOpenDB: []stdlib.OptionOpenDB{stdlib.OptionAfterConnect(scanTimesInUTC)}})
	}
	return sqlite.Open(dsn)
}

// scanTimesInUTC makes pgx read timestamptz columns as UTC instead of the
// process's local zone, so that times leave the store (and reach clients)
// in UTC whatever TZ the server runs in.
func scanTimesInUTC(_ context.Context, conn *pgx.Conn) error {
	conn.TypeMap().RegisterType(&pgtype.Type{Name: "timestamptz", OID: pgtype.TimestamptzOID,
		Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC}})
	return nil
}

// tune sizes the pool and returns its size.
func (d dialect) tune(db *sql.DB, opts Options) int {
	if d.name == "sqlite" {
		// One connection: SQLite has one writer anyway, and serialising in
		// the pool instead of in the file lock means no SQLITE_BUSY and the
		// station "lock" is the transaction itself.
		db.SetMaxOpenConns(1)
		return 1
	}
	n := opts.MaxOpenConns
	if n <= 0 {
		n = 32
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	return n
}

// lockStation locks the station row for the rest of the transaction:
// SELECT … FOR UPDATE on PostgreSQL; on SQLite the single connection already
// serialises writers.
func (d dialect) lockStation(tx *gorm.DB) *gorm.DB {
	if d.name == "postgres" {
		return tx.Clauses(clause.Locking{Strength: "UPDATE"})
	}
	return tx
}

// pipelines reports whether the two hot transactions (book, cancel) go
// straight to pgx, which pipelines a transaction's statements into two
// round trips (booking_pg.go), instead of through GORM a statement at a time.
func (d dialect) pipelines() bool { return d.name == "postgres" }

// notifyChannel is the PostgreSQL channel on which instances announce
// committed outbox rows to each other's relays.
const notifyChannel = "batteryswap_outbox"
