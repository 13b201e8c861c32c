package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
)

// postgresDialect is PostgreSQL through pgx's database/sql driver: a pool
// of connections, row locks, an advisory-lock relay lease and LISTEN/NOTIFY
// between instances.
type postgresDialect struct {
	dsn string
}

func (*postgresDialect) name() string { return "postgres" }

func (d *postgresDialect) open(dsn string, _ Options) (gorm.Dialector, error) {
	d.dsn = dsn
	return postgres.New(postgres.Config{DSN: dsn, OptionOpenDB: []stdlib.OptionOpenDB{stdlib.OptionAfterConnect(scanTimesInUTC)}}), nil
}

// scanTimesInUTC makes pgx read timestamptz columns as UTC instead of the
// process's local zone, so that times leave the store (and reach clients)
// in UTC whatever TZ the server runs in.
func scanTimesInUTC(_ context.Context, conn *pgx.Conn) error {
	conn.TypeMap().RegisterType(&pgtype.Type{Name: "timestamptz", OID: pgtype.TimestamptzOID,
		Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC}})
	return nil
}

func (*postgresDialect) tune(db *sql.DB, opts Options) int {
	n := opts.MaxOpenConns
	if n <= 0 {
		n = 32
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	return n
}

func (*postgresDialect) migrations() (goose.Dialect, string, []goose.ProviderOption, error) {
	// Instances that start together with AUTO_MIGRATE take turns.
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return "", "", nil, err
	}
	return goose.DialectPostgres, "postgres", []goose.ProviderOption{goose.WithSessionLocker(locker)}, nil
}

// lock is SELECT … FOR UPDATE.
func (*postgresDialect) lock(tx *gorm.DB) *gorm.DB {
	return tx.Clauses(clause.Locking{Strength: "UPDATE"})
}

func (*postgresDialect) close() error { return nil }

// pgKind reads PostgreSQL's SQLSTATE, which does not depend on the
// server's lc_messages. ok is false when err carries no PostgreSQL error.
func pgKind(err error) (kind errKind, ok bool) {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return errOther, false
	}
	switch pe.Code {
	case "23505": // unique_violation
		return errUnique, true
	case "40P01": // deadlock_detected
		// Two changes locked the same stations in opposite orders
		// (swap-ins of packs registered at each other's station).
		return errGaveWay, true
	case "08000", "08001", "08003", "08004", "08006", // connection_exception and kin, not 08P01 protocol_violation
		"57P01", "57P02", "57P03", // admin_shutdown, crash_shutdown, cannot_connect_now
		"53300": // too_many_connections
		return errDown, true
	case "55000": // on connect: the database does not allow connections now
		var ce *pgconn.ConnectError
		if errors.As(err, &ce) {
			return errDown, true
		}
	}
	// Anything else from the server (wrong credentials, an unknown
	// database, a statement timeout) is not an outage.
	return errOther, true
}

// netDown reports whether an error with no driver code says the database
// could not be reached or dropped the connection: a failed connect, a
// broken connection, a network error. A certificate that does not verify
// is not: that is the configuration (sslmode, sslrootcert, the host name).
func netDown(err error) bool {
	var cert *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	if errors.As(err, &cert) || errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) {
		return false
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// relayLockKey is the PostgreSQL advisory lock that elects the one relay.
const relayLockKey int64 = 0x62737770 // "bswp"

// lease is a session advisory lock held on a dedicated connection, which
// also runs the lease's queries, so a relay whose connection dies loses the
// lock and its half-done work together.
func (*postgresDialect) lease(ctx context.Context, s *Store) (*relayLease, error) {
	for {
		conn, err := s.sqlDB.Conn(ctx)
		if err == nil {
			var ok bool
			if err = conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", relayLockKey).Scan(&ok); err == nil && ok {
				var l *relayLease
				if l, err = s.pgLease(conn); err == nil {
					return l, nil
				}
				_, _ = conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", relayLockKey)
				resetLeaseSession(ctx, conn)
			}
			conn.Close()
		}
		if err != nil && ctx.Err() == nil {
			s.log.Warn("relay lease: lock attempt failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// resetLeaseSession undoes the lease's session limits before its connection
// goes back to the pool.
func resetLeaseSession(ctx context.Context, conn *sql.Conn) {
	_, _ = conn.ExecContext(ctx, "RESET idle_session_timeout")
	_, _ = conn.ExecContext(ctx, "RESET idle_in_transaction_session_timeout")
}

func (s *Store) pgLease(conn *sql.Conn) (*relayLease, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Silent for leaseIdle, in a transaction or not, the session ends.
	// idle_session_timeout is PostgreSQL 14's; on an older server the lease
	// goes without it (a frozen holder then lasts until TCP gives up).
	ms := leaseIdle.Milliseconds()
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("SET idle_in_transaction_session_timeout = %d", ms)); err != nil {
		return nil, err
	}
	var pe *pgconn.PgError
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("SET idle_session_timeout = %d", ms)); errors.As(err, &pe) && pe.Code == "42704" /* undefined_object */ {
		s.log.Warn("relay lease: this PostgreSQL has no idle_session_timeout (14 or later has); a frozen relay holder keeps the lease until its connection drops")
	} else if err != nil {
		return nil, err
	}
	// A GORM handle of its own over the one connection: every lease query
	// runs where the lock is held.
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: conn}), &gorm.Config{Logger: logger.Discard, SkipDefaultTransaction: true})
	if err != nil {
		return nil, err
	}
	stop := make(chan struct{})
	l := &relayLease{s: s, db: db, lost: make(chan struct{}), stop: stop}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(leasePing)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				// Never between the lease's own statements: pgx refuses a
				// ping while a result is still being read ("conn busy"),
				// and database/sql then closes the connection, and the
				// lease with it.
				l.mu.Lock()
				err := conn.PingContext(ctx)
				l.mu.Unlock()
				cancel()
				if err != nil {
					l.markLost()
					return
				}
			}
		}
	}()
	s.lease.Store(l)
	l.release = func() {
		s.lease.CompareAndSwap(l, nil)
		close(stop)
		wg.Wait()
		select {
		case <-l.lost:
			// A dead connection must not go back to the pool.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		default:
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, _ = conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", relayLockKey)
			// Back in the pool, the connection may sit idle.
			resetLeaseSession(ctx, conn)
			cancel()
		}
		conn.Close()
	}
	return l, nil
}

// leaseConnLost reports whether a lease query's error means PostgreSQL
// ended the lease's session (and released the lock), e.g. after leaseIdle
// of silence: a FATAL error.
// poke sends on a wake-up channel of capacity 1 without blocking.
func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func leaseConnLost(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Severity == "FATAL"
}

// notifyChannel is the PostgreSQL channel on which instances announce
// committed outbox rows to each other's relays.
const notifyChannel = "batteryswap_outbox"

// publishedChannel is the channel on which the relay announces a published
// batch, for instances whose broker is the database (stream.PostgresBroker).
const publishedChannel = "batteryswap_published"

// AnnouncePublished tells every instance listening on PostgreSQL (this one
// included) that the relay published the events up to seq; it implements
// stream.Announcer. PostgreSQL only.
func (s *Store) AnnouncePublished(ctx context.Context, seq int64) error {
	return s.db.WithContext(ctx).Exec("SELECT pg_notify(?, ?)", publishedChannel, strconv.FormatInt(seq, 10)).Error
}

// Published receives (coalesced) when any instance's relay announced a
// published batch, and after the listener (re)connects, since announcements
// may have passed meanwhile; it implements stream.Announcer. On SQLite it
// never receives.
func (s *Store) Published() <-chan struct{} { return s.published }

// listen forwards other instances' NOTIFYs to this relay and sends this
// instance's own.
func (d *postgresDialect) listen(ctx context.Context, s *Store) {
	var wg sync.WaitGroup
	wg.Go(func() { d.listenLoop(ctx, s) })
	wg.Go(func() { s.announcer(ctx) })
	wg.Wait()
}

// listenLoop forwards PostgreSQL notifications of committed outbox rows
// (from any instance) to the relay's wake channel, reconnecting until the
// store closes.
func (d *postgresDialect) listenLoop(ctx context.Context, s *Store) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := d.listenOnce(ctx, s)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("outbox listener disconnected; relay falls back to polling until it reconnects", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (d *postgresDialect) listenOnce(ctx context.Context, s *Store) error {
	// LISTEN needs a session of its own that outlives any one query: the
	// only connection the store takes outside the pool.
	conn, err := pgx.Connect(ctx, d.dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, ch := range []string{notifyChannel, publishedChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			return err
		}
	}
	poke(s.published)
	for {
		n, err := conn.WaitForNotification(ctx)
		switch {
		case err != nil:
			return err
		case n.Channel == publishedChannel:
			poke(s.published)
		case n.Payload != s.instance: // our own commits woke our relay already
			poke(s.wake)
		}
	}
}

// announceEvery bounds how often an instance NOTIFYs: at most one per
// interval however many transactions commit, so announcing costs nothing
// under load and adds at most this much to another instance's relay.
const announceEvery = 5 * time.Millisecond

// announcer sends the NOTIFY that wakes the other instances' relays after
// outbox rows commit. It runs after the commit, not inside the transaction:
// a NOTIFY in a transaction takes a database-wide lock at commit, which
// serialised every booking. Should one be lost (a crash just after commit),
// the relays' poll picks the rows up within a second.
func (s *Store) announcer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.announce:
		}
		if err := s.db.WithContext(ctx).Exec("SELECT pg_notify(?, ?)", notifyChannel, s.instance).Error; err != nil && ctx.Err() == nil {
			s.log.Warn("outbox announce failed; other instances' relays fall back to polling", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(announceEvery):
		}
	}
}
