package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"time"

	"gorm.io/gorm"

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

// AcquireRelay implements stream.Outbox: the dialect's lease (an advisory
// lock on PostgreSQL, in-process on SQLite).
func (s *Store) AcquireRelay(ctx context.Context) (stream.RelayLease, error) {
	l, err := s.dialect.lease(ctx, s)
	if err != nil {
		return nil, err
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

// Pending implements stream.RelayLease: the dialect's pending numbers the
// committed, unsequenced events and returns those not yet published.
func (l *relayLease) Pending(ctx context.Context, limit int) ([]models.Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rows, err := l.s.dialect.pending(l.db.WithContext(ctx), limit)
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

// pending on PostgreSQL is one statement (pgPending), so that it needs no
// transaction around it: one round trip on the relay's path from a commit
// to the clients instead of six.
func (*postgresDialect) pending(db *gorm.DB, limit int) ([]eventRow, error) {
	var rows []eventRow
	err := db.Raw(pgPending, map[string]any{"batch": sequenceBatch, "limit": limit}).Find(&rows).Error
	return rows, err
}

// pgPending gives the committed, unsequenced events the next numbers in id
// order (rows still uncommitted are invisible to it and get later numbers
// once they commit), moves relay_state's last_seq past them, and returns
// the events numbered and not yet published, the ones numbered by an
// earlier call first. Its snapshot does not see its own changes: the events
// it numbers come from its RETURNING, the earlier ones from the snapshot.
// Only the lease holder changes last_seq, so the snapshot's is current.
const pgPending = `WITH st AS (
	SELECT last_seq, published_seq FROM relay_state WHERE id = 1
), todo AS (
	SELECT id, row_number() OVER (ORDER BY id) AS rn FROM events WHERE seq IS NULL ORDER BY id LIMIT @batch
), numbered AS (
	UPDATE events SET seq = st.last_seq + todo.rn FROM st, todo WHERE events.id = todo.id
	RETURNING events.id, events.seq, events.type, events.topic, events.payload, events.created_at
), bumped AS (
	UPDATE relay_state SET last_seq = relay_state.last_seq + (SELECT count(*) FROM numbered)
	WHERE relay_state.id = 1 AND EXISTS (SELECT 1 FROM numbered)
)
SELECT id, seq, type, topic, payload, created_at FROM (
	SELECT events.id, events.seq, events.type, events.topic, events.payload, events.created_at
	FROM events, st WHERE events.seq > st.published_seq
	UNION ALL
	SELECT id, seq, type, topic, payload, created_at FROM numbered
) AS pending ORDER BY seq LIMIT @limit`

// pending on SQLite is a transaction of a statement at a time (SQLite has
// no data-modifying WITH).
func (*sqliteDialect) pending(db *gorm.DB, limit int) ([]eventRow, error) {
	var rows []eventRow
	err := db.Transaction(func(tx *gorm.DB) error {
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
	return rows, err
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
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) || leaseConnLost(err) {
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
