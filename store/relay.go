package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"batteryswap/models"
	"batteryswap/stream"
)

var _ stream.Outbox = (*Store)(nil)

type relayStateRow struct {
	ID           int64
	LastSeq      int64
	PublishedSeq int64
	TrimmedSeq   int64
}

func (relayStateRow) TableName() string { return "relay_state" }

// relayLockKey is the PostgreSQL advisory lock that elects the one relay.
const relayLockKey int64 = 0x62737770 // "bswp"

// sequenceBatch bounds the rows one Pending call sequences.
const sequenceBatch = 1000

// leasePing is how often an idle PostgreSQL lease checks its connection,
// and leaseIdle how long PostgreSQL lets the lease's session sit silent
// before it ends it, and the lease with it: a holder that froze (stopped,
// swapped out, cut off behind a connection that stays open) gives way to
// another instance within leaseIdle, instead of holding every event back.
// A live holder speaks at least every leasePing. Variables for tests.
var (
	leasePing = time.Second
	leaseIdle = 10 * time.Second
)

// EventsAfter implements stream.Outbox.
func (s *Store) EventsAfter(ctx context.Context, cursor int64, topics []models.Topic, limit int) ([]models.Event, error) {
	exact := make([]string, 0, len(topics))
	all := false
	for _, t := range topics {
		if t == models.TopicStations {
			all = true
		} else {
			exact = append(exact, string(t))
		}
	}
	q := s.db.WithContext(ctx).Where("seq > ?", cursor)
	switch {
	case all && len(exact) > 0:
		q = q.Where(s.db.Where("topic IN ?", exact).Or("topic LIKE ?", "station:%"))
	case all:
		q = q.Where("topic LIKE ?", "station:%")
	case len(exact) > 0:
		q = q.Where("topic IN ?", exact)
	default:
		return nil, nil
	}
	var rows []eventRow
	if err := q.Order("seq").Limit(limit).Find(&rows).Error; err != nil {
		return nil, translate(err, "events")
	}
	out := make([]models.Event, len(rows))
	for i := range rows {
		out[i] = rows[i].model()
	}
	return out, nil
}

// Head implements stream.Outbox.
func (s *Store) Head(ctx context.Context) (last, trimmed int64, err error) {
	var st relayStateRow
	if err := s.db.WithContext(ctx).Take(&st, 1).Error; err != nil {
		return 0, 0, translate(err, "relay state")
	}
	return st.LastSeq, st.TrimmedSeq, nil
}

// TrimBefore implements stream.Outbox.
func (s *Store) TrimBefore(ctx context.Context, t time.Time) (int64, error) {
	var n int64
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var st relayStateRow
		if err := tx.Take(&st, 1).Error; err != nil {
			return err
		}
		var upTo sql.NullInt64
		if err := tx.Model(&eventRow{}).Where("seq <= ? AND created_at < ?", st.PublishedSeq, t.UTC()).
			Select("MAX(seq)").Scan(&upTo).Error; err != nil {
			return err
		}
		if !upTo.Valid || upTo.Int64 <= st.TrimmedSeq {
			return nil
		}
		res := tx.Where("seq <= ?", upTo.Int64).Delete(&eventRow{})
		if res.Error != nil {
			return res.Error
		}
		n = res.RowsAffected
		return tx.Model(&relayStateRow{}).Where("id = 1").Update("trimmed_seq", upTo.Int64).Error
	})
	return n, translate(err, "events")
}

// Wakeups implements stream.Outbox.
func (s *Store) Wakeups() <-chan struct{} { return s.wake }

// AcquireRelay implements stream.Outbox. On PostgreSQL the lease is a
// session advisory lock held on a dedicated connection, which also runs the
// lease's queries, so a relay whose connection dies loses the lock and its
// half-done work together. On SQLite, one process owns the file and the lease
// is in-process.
func (s *Store) AcquireRelay(ctx context.Context) (stream.RelayLease, error) {
	if s.dialect.name != "postgres" {
		select {
		case s.relayLock <- struct{}{}:
			return &relayLease{s: s, db: s.db, lost: make(chan struct{}), release: func() { <-s.relayLock }}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
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

type relayLease struct {
	s        *Store
	mu       sync.Mutex // one statement at a time on the lease's connection
	db       *gorm.DB
	lost     chan struct{}
	stop     chan struct{}
	lostOnce sync.Once
	relOnce  sync.Once
	release  func()
}

func (l *relayLease) markLost() { l.lostOnce.Do(func() { close(l.lost) }) }

func (l *relayLease) isLost() bool {
	select {
	case <-l.lost:
		return true
	default:
		return false
	}
}

// Pending implements stream.RelayLease.
func (l *relayLease) Pending(ctx context.Context, limit int) ([]models.Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var rows []eventRow
	err := l.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var st relayStateRow
		if err := tx.Take(&st, 1).Error; err != nil {
			return err
		}
		// Give the committed, unsequenced rows the next numbers in one
		// statement, in id order; rows still uncommitted are invisible here
		// and get later numbers once they commit.
		res := tx.Exec(`UPDATE events SET seq = ? + s.rn
			FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM events WHERE seq IS NULL ORDER BY id LIMIT ?) AS s
			WHERE events.id = s.id`, st.LastSeq, sequenceBatch)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected > 0 {
			if err := tx.Model(&relayStateRow{}).Where("id = 1").Update("last_seq", st.LastSeq+res.RowsAffected).Error; err != nil {
				return err
			}
		}
		return tx.Where("seq > ?", st.PublishedSeq).Order("seq").Limit(limit).Find(&rows).Error
	})
	if err != nil {
		l.checkConn(err)
		return nil, fmt.Errorf("store: relay pending: %w", err)
	}
	out := make([]models.Event, len(rows))
	for i := range rows {
		out[i] = rows[i].model()
	}
	return out, nil
}

// MarkPublished implements stream.RelayLease.
func (l *relayLease) MarkPublished(ctx context.Context, seq int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.db.WithContext(ctx).Model(&relayStateRow{}).Where("id = 1 AND published_seq < ?", seq).Update("published_seq", seq).Error
	if err != nil {
		l.checkConn(err)
		return fmt.Errorf("store: relay mark published: %w", err)
	}
	return nil
}

// checkConn treats a broken lease connection as a lost lease.
func (l *relayLease) checkConn(err error) {
	if l.stop == nil || errors.Is(err, context.Canceled) {
		return
	}
	// A FATAL error means PostgreSQL ended the session (and released the
	// lock), e.g. after leaseIdle of silence.
	var pe *pgconn.PgError
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) || (errors.As(err, &pe) && pe.Severity == "FATAL") {
		l.markLost()
	}
}

// Lost implements stream.RelayLease.
func (l *relayLease) Lost() <-chan struct{} { return l.lost }

// Release implements stream.RelayLease.
func (l *relayLease) Release() error {
	l.relOnce.Do(l.release)
	return nil
}
