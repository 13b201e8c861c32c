// Package store persists batteryswap in PostgreSQL or an embedded SQLite file
// through GORM. Every change runs in one transaction that locks the station
// row, changes battery and booking rows, and writes the change's events into
// the outbox, so a committed change always has its events and a rolled-back
// one never does. The store also implements stream.Outbox for the relay.
package store

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"batteryswap/models"
)

// Options tune the booking rules and the clock.
type Options struct {
	// ReadyCharge is the charge percent at or above which a battery is ready.
	ReadyCharge int
	// BookingHold is how long a booking holds its battery.
	BookingHold time.Duration
	// BookingWarn is how long before expiry the holder is warned.
	BookingWarn time.Duration
	// Now is the clock; time.Now when nil. Tests inject their own.
	Now func() time.Time
	// MaxOpenConns bounds the PostgreSQL pool (SQLite always uses one).
	MaxOpenConns int
	// Logger receives background errors (the NOTIFY listener).
	Logger *slog.Logger
}

// Store is the database. It is safe for concurrent use.
type Store struct {
	db      *gorm.DB
	sqlDB   *sql.DB
	dialect dialect
	dsn     string
	opts    Options
	log     *slog.Logger

	wake      chan struct{} // this instance's relay
	announce  chan struct{} // PostgreSQL: tell the other instances' relays
	instance  string        // NOTIFY payload, so the listener skips its own
	relayLock chan struct{} // SQLite: the in-process relay lease
	// pgSlots admits the pipelined transactions to the pool first come,
	// first served.
	pgSlots admission
	// lease is this instance's live PostgreSQL relay lease, if it holds one:
	// its own commits then need no NOTIFY, since no other relay is active.
	lease     atomic.Pointer[relayLease]
	announces atomic.Int64 // NOTIFYs asked for, for tests
	stop      context.CancelFunc
	bg        sync.WaitGroup
}

// Open connects to the database that url names: "postgres://…" or
// "postgresql://…" selects PostgreSQL; "sqlite://PATH", a file path, or ""
// (batteryswap.db) selects SQLite. It does not migrate; see Migrate.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	if opts.ReadyCharge <= 0 {
		opts.ReadyCharge = models.DefaultReadyCharge
	}
	if opts.BookingHold <= 0 {
		opts.BookingHold = models.DefaultBookingHold
	}
	if opts.BookingWarn <= 0 {
		opts.BookingWarn = models.DefaultBookingWarn
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	d, dsn, err := dialectFor(url)
	if err != nil {
		return nil, err
	}
	cfg := &gorm.Config{
		TranslateError:         true,
		SkipDefaultTransaction: true,
		// No GORM statement cache: inside transactions it prepares and
		// deallocates every statement each time; pgx's own per-connection
		// cache prepares each statement once.
		PrepareStmt: false,
		Logger:      logger.Discard,
		NowFunc:     func() time.Time { return opts.Now().UTC().Truncate(time.Microsecond) },
	}
	db, err := gorm.Open(d.open(dsn), cfg)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", d.name, err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	poolSize := d.tune(sqlDB, opts)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(pctx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("store: connect to %s: %w", d.name, err)
	}
	bg, stop := context.WithCancel(context.Background())
	s := &Store{
		db: db, sqlDB: sqlDB, dialect: d, dsn: dsn, opts: opts, log: opts.Logger,
		wake:      make(chan struct{}, 1),
		announce:  make(chan struct{}, 1),
		instance:  rand.Text(),
		relayLock: make(chan struct{}, 1),
		// One place fewer than the pool has connections: the relay lease
		// keeps one, and bookings should wait here, not in the pool's queue.
		pgSlots: make(admission, max(poolSize-1, 1)),
		stop:    stop,
	}
	if d.name == "postgres" {
		s.bg.Add(2)
		go func() { defer s.bg.Done(); s.listen(bg) }()
		go func() { defer s.bg.Done(); s.announcer(bg) }()
	}
	return s, nil
}

// DB is the GORM handle, for tests and tools that inspect the database.
func (s *Store) DB() *gorm.DB { return s.db }

// Dialect is "postgres" or "sqlite".
func (s *Store) Dialect() string { return s.dialect.name }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.sqlDB.PingContext(ctx) }

// Close stops the background listener and closes the pool.
func (s *Store) Close() error {
	s.stop()
	s.bg.Wait()
	return s.sqlDB.Close()
}

func (s *Store) now() time.Time { return s.opts.Now().UTC().Truncate(time.Microsecond) }

// ReadyCharge is the configured ready threshold.
func (s *Store) ReadyCharge() int { return s.opts.ReadyCharge }

// tx runs fn in one transaction, then wakes the relay if it committed.
func (s *Store) tx(ctx context.Context, fn func(tx *gorm.DB) error) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error { return fn(tx) })
	if err == nil {
		s.signal()
	}
	return err
}

// signal wakes this instance's relay and, unless that relay holds the one
// lease, asks the announcer to tell the other instances, without blocking; a
// burst of commits coalesces into one wakeup of each.
func (s *Store) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if l := s.lease.Load(); l != nil && !l.isLost() {
		return
	}
	s.announces.Add(1)
	select {
	case s.announce <- struct{}{}:
	default:
	}
}

// translate turns driver errors into domain errors at the store's boundary.
// what names the thing looked up, for not-found messages.
func translate(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gorm.ErrRecordNotFound):
		return models.Errorf(models.CodeNotFound, "%s not found", what)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	var de *models.Error
	if errors.As(err, &de) {
		return err
	}
	if unavailable(err) {
		return fmt.Errorf("store: %s: %w: %w", what, errUnavailable, err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "40P01" /* deadlock_detected */ {
		// Two changes locked the same stations in opposite orders (swap-ins
		// of packs registered at each other's station); one gave way.
		return models.Errorf(models.CodeConflict, "%s: a concurrent change got in the way; try again", what)
	}
	return fmt.Errorf("store: %s: %w", what, err)
}

// errUnavailable is what a request that found the database out of reach
// answers: 503 with Retry-After, not a 500. The driver's error stays
// wrapped beside it, for the log.
var errUnavailable = models.Errorf(models.CodeServiceUnavailable, "the database is unavailable; try again shortly")

// unavailable reports whether err says the database could not be reached or
// dropped the connection, rather than that the request was wrong: a failed
// connect, a broken connection, or PostgreSQL shutting down, starting up or
// out of connection slots. A connect refused for bad credentials, an
// unknown database or a certificate that does not verify is not: that is
// the configuration, an internal error for the log at ERROR, not a moment
// to wait out. (Context errors never get
// here: translate returns them first.)
func unavailable(err error) bool {
	var ce *pgconn.ConnectError
	connecting := errors.As(err, &ce)
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "08000", "08001", "08003", "08004", "08006", // connection_exception and kin, not 08P01 protocol_violation
			"57P01", "57P02", "57P03", // admin_shutdown, crash_shutdown, cannot_connect_now
			"53300": // too_many_connections
			return true
		case "55000": // on connect: the database does not allow connections now
			return connecting
		}
		return false
	}
	var cert *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	if errors.As(err, &cert) || errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) {
		return false // the TLS set-up (sslmode, sslrootcert, the host name): configuration
	}
	if connecting || errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// page applies keyset pagination on col: ascending after the cursor, or,
// newestFirst, descending below it.
func page(q *gorm.DB, p models.Page, col string, newestFirst bool) *gorm.DB {
	limit := p.Limit
	if limit <= 0 || limit > models.MaxPageLimit+1 { // +1: Page.Ahead
		limit = models.DefaultPageLimit
	}
	after, order := " > ?", col
	if newestFirst {
		after, order = " < ?", col+" DESC"
	}
	if p.Cursor > 0 {
		q = q.Where(col+after, p.Cursor)
	}
	return q.Order(order).Limit(limit)
}

func isUniqueViolation(err error) bool {
	// GORM translates the dialects' errors; the pipelined path (pgx) hands
	// back PostgreSQL's own, whose code does not depend on lc_messages.
	var pe *pgconn.PgError
	return errors.Is(err, gorm.ErrDuplicatedKey) || (errors.As(err, &pe) && pe.Code == "23505" /* unique_violation */) ||
		(err != nil && strings.Contains(strings.ToLower(err.Error()), "unique constraint"))
}
