// Package store persists batteryswap in PostgreSQL or an embedded SQLite file
// through GORM. Every write is one implementation for both databases and
// runs inside db.Transaction: it locks the station row, changes battery and
// booking rows, and writes the change's events into the outbox, so a
// committed change always has its events and a rolled-back one never does;
// after the commit it wakes the relay. Where one statement does a write's
// work faster (the booking's claim-and-insert on PostgreSQL), it still runs
// through GORM (tx.Raw(...).Scan), and only its SQL text differs per
// database, beside the Go code that runs it.
//
// What differs between the databases is the dialect interface
// (dialect.go): opening and tuning the pool, locking a row, the relay lease,
// the listener that wakes other instances, and the per-dialect SQL. Driver
// errors are classified once, by their codes (classify). The store also
// implements stream.Outbox for the relay.
package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

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
	// Exclusive: on SQLite, hold an exclusive lock on the database file
	// while the store is open, and refuse to open when another process
	// holds it: one server per file (serve asks for it; the commands,
	// which may run beside a server, do not). PostgreSQL ignores it.
	Exclusive bool
	// Existing: on SQLite, open the database file only if it exists, and
	// never create it (migrate status and down, which only read or undo).
	// PostgreSQL ignores it.
	Existing bool
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
	published chan struct{} // PostgreSQL: a relay published a batch (Published)
	announce  chan struct{} // PostgreSQL: tell the other instances' relays
	instance  string        // NOTIFY payload, so the listener skips its own
	relayLock chan struct{} // SQLite: the in-process relay lease
	// slots admits transactions to the pool first come, first served.
	slots admission
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
		// Driver errors reach classify with their codes.
		TranslateError: false,
		// Every write names its own transaction (Store.tx); a single
		// statement needs none around it.
		SkipDefaultTransaction: true,
		// No GORM statement cache: inside transactions it prepares and
		// deallocates every statement each time; pgx's own per-connection
		// cache prepares each statement once.
		PrepareStmt: false,
		Logger:      logger.Discard,
		NowFunc:     func() time.Time { return opts.Now().UTC().Truncate(time.Microsecond) },
	}
	dialector, err := d.open(dsn, opts)
	if err != nil {
		return nil, err
	}
	db, err := gorm.Open(dialector, cfg)
	if err != nil {
		d.close()
		return nil, fmt.Errorf("store: open %s: %w", d.name(), err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		d.close()
		return nil, fmt.Errorf("store: %w", err)
	}
	poolSize := d.tune(sqlDB, opts)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(pctx); err != nil {
		sqlDB.Close()
		d.close()
		return nil, fmt.Errorf("store: connect to %s: %w", d.name(), err)
	}
	bg, stop := context.WithCancel(context.Background())
	s := &Store{
		db: db, sqlDB: sqlDB, dialect: d, dsn: dsn, opts: opts, log: opts.Logger,
		wake:      make(chan struct{}, 1),
		published: make(chan struct{}, 1),
		announce:  make(chan struct{}, 1),
		instance:  rand.Text(),
		relayLock: make(chan struct{}, 1),
		// One place fewer than the pool has connections: the relay lease
		// keeps one, and writes should wait here, not in the pool's queue.
		slots: make(admission, max(poolSize-1, 1)),
		stop:  stop,
	}
	s.bg.Go(func() { d.listen(bg, s) })
	return s, nil
}

// DB is the GORM handle, for tests and tools that inspect the database.
func (s *Store) DB() *gorm.DB { return s.db }

// Dialect is "postgres" or "sqlite".
func (s *Store) Dialect() string { return s.dialect.name() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.sqlDB.PingContext(ctx) }

// Close stops the background listener and closes the pool.
func (s *Store) Close() error {
	s.stop()
	s.bg.Wait()
	return errors.Join(s.sqlDB.Close(), s.dialect.close())
}

func (s *Store) now() time.Time { return s.opts.Now().UTC().Truncate(time.Microsecond) }

// ReadyCharge is the configured ready threshold.
func (s *Store) ReadyCharge() int { return s.opts.ReadyCharge }

// tx runs fn in one transaction, then wakes the relay if it committed.
// Transactions take the pool's connections in the order they asked.
func (s *Store) tx(ctx context.Context, fn func(tx *gorm.DB) error) error {
	if err := s.slots.enter(ctx); err != nil {
		return err
	}
	err := s.db.WithContext(ctx).Transaction(fn)
	s.slots.leave()
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
	switch classify(err) {
	case errDown:
		return fmt.Errorf("store: %s: %w: %w", what, errUnavailable, err)
	case errGaveWay:
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
// connect, a broken connection, or the server shutting down, starting up or
// out of connection slots. A connect refused for bad credentials, an
// unknown database or a certificate that does not verify is not: that is
// the configuration, an internal error for the log at ERROR, not a moment
// to wait out.
func unavailable(err error) bool { return classify(err) == errDown }

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

// isUniqueViolation reports whether a unique index refused a row.
func isUniqueViolation(err error) bool { return classify(err) == errUnique }
