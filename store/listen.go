package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// listen forwards PostgreSQL notifications of committed outbox rows (from any
// instance) to the relay's wake channel, reconnecting until the store closes.
func (s *Store) listen(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx)
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

func (s *Store) listenOnce(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.Payload == s.instance {
			continue // our own commits woke our relay already
		}
		select {
		case s.wake <- struct{}{}:
		default:
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
