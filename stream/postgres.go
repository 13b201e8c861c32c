package stream

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"batteryswap/models"
)

var _ Broker = (*PostgresBroker)(nil)

// PostgresOptions configure a PostgresBroker; zero values take the defaults.
type PostgresOptions struct {
	// Channel is the NOTIFY channel (default "batteryswap_published").
	Channel string
	// Poll is how often the broker reads the outbox when no notification
	// came (default 1s): a lost NOTIFY delays events by at most this much.
	Poll time.Duration
	// Batch is how many events one outbox read returns (default 512).
	Batch int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// PostgresBroker is the Broker for several instances on one PostgreSQL
// database without Redis: the database is the bus. The relay's Publish
// sends a NOTIFY; every instance (the relay's own included) LISTENs, and on
// a notification reads the events after the last one it delivered, for
// the topics its Hub follows, from the outbox, and delivers them in Seq
// order. The outbox is the only path, so nothing is lost while a
// connection is down: the reader catches up from its cursor, and polls as
// a safety net for a lost NOTIFY. It never calls Handler.Resync.
//
// It costs a query per published batch per instance, against none for
// Redis, and NOTIFY takes a database-wide lock at commit: Redis stays the
// broker for clusters under load.
type PostgresBroker struct {
	dsn     string
	outbox  Outbox
	channel string
	poll    time.Duration
	batch   int
	log     *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	done   sync.WaitGroup
	wake   chan struct{} // capacity 1

	// mu is held across a whole read and delivery, so a Subscribe that
	// returns has waited for any read that did not include its topics.
	mu     sync.Mutex
	h      Handler
	refs   map[models.Topic]int
	cursor int64 // Seq of the last event read; valid once primed
	primed bool
	closed bool

	listening atomic.Bool

	notifyMu sync.Mutex
	notify   *pgx.Conn // for NOTIFY; nil until first use, or after an error
}

// NewPostgresBroker returns a broker that listens on the database at dsn
// and reads events from o.
func NewPostgresBroker(dsn string, o Outbox, opts PostgresOptions) *PostgresBroker {
	if opts.Channel == "" {
		opts.Channel = "batteryswap_published"
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	if opts.Batch <= 0 {
		opts.Batch = 512
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &PostgresBroker{
		dsn: dsn, outbox: o, channel: opts.Channel, poll: opts.Poll, batch: opts.Batch, log: opts.Logger,
		ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1), refs: make(map[models.Topic]int),
	}
}

// Publish implements Broker. The events are already in the outbox, so
// publishing is telling every instance to read them: a NOTIFY carrying the
// batch's last Seq, and a wake-up for this instance's reader. A failed
// NOTIFY is logged, not returned: the other instances poll.
func (b *PostgresBroker) Publish(ctx context.Context, evs []models.Event) error {
	if b.ctx.Err() != nil {
		return ErrClosed
	}
	if len(evs) == 0 {
		return nil
	}
	b.signal()
	if err := b.sendNotify(ctx, strconv.FormatInt(evs[len(evs)-1].Seq, 10)); err != nil && ctx.Err() == nil {
		b.log.Warn("stream: NOTIFY failed; other instances see these events within their poll interval", "err", err)
	}
	return nil
}

func (b *PostgresBroker) sendNotify(ctx context.Context, payload string) error {
	b.notifyMu.Lock()
	defer b.notifyMu.Unlock()
	if b.notify == nil {
		c, err := pgx.Connect(ctx, b.dsn)
		if err != nil {
			return err
		}
		b.notify = c
	}
	if _, err := b.notify.Exec(ctx, "SELECT pg_notify($1, $2)", b.channel, payload); err != nil {
		_ = b.notify.Close(context.Background())
		b.notify = nil
		return err
	}
	return nil
}

// Start implements Broker: it starts the listener and the reader.
func (b *PostgresBroker) Start(h Handler) {
	b.mu.Lock()
	b.h = h
	b.mu.Unlock()
	b.done.Add(2)
	go func() { defer b.done.Done(); b.listen() }()
	go func() { defer b.done.Done(); b.read() }()
}

// Subscribe implements Broker. The first Subscribe reads the outbox head,
// from where the reader delivers; a topic joins at once, since reads take
// the topic set afresh.
func (b *PostgresBroker) Subscribe(ctx context.Context, topics ...models.Topic) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if len(b.refs) == 0 {
		// Nobody followed anything, so nothing after the cursor is
		// wanted: start from the head instead of reading what nobody
		// needs.
		last, _, err := b.outbox.Head(ctx)
		if err != nil {
			return err
		}
		b.cursor, b.primed = max(b.cursor, last), true
	}
	for _, t := range topics {
		b.refs[t]++
	}
	return nil
}

// Unsubscribe implements Broker.
func (b *PostgresBroker) Unsubscribe(topics ...models.Topic) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, t := range topics {
		if b.refs[t]--; b.refs[t] <= 0 {
			delete(b.refs, t)
		}
	}
}

// Ping implements Broker: events flow while the outbox can be read; the
// listener only makes them prompt.
func (b *PostgresBroker) Ping(ctx context.Context) error {
	if b.ctx.Err() != nil {
		return ErrClosed
	}
	if _, _, err := b.outbox.Head(ctx); err != nil {
		return fmt.Errorf("stream: outbox: %w", err)
	}
	return nil
}

// Close implements Broker.
func (b *PostgresBroker) Close() error {
	b.cancel() // first: a read in progress holds mu until its query ends
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.done.Wait()
	b.notifyMu.Lock()
	defer b.notifyMu.Unlock()
	if b.notify != nil {
		_ = b.notify.Close(context.Background())
		b.notify = nil
	}
	return nil
}

func (b *PostgresBroker) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// listen turns notifications into wake-ups, reconnecting with backoff.
func (b *PostgresBroker) listen() {
	bo := newBackoff(100*time.Millisecond, 5*time.Second)
	for b.ctx.Err() == nil {
		err := b.listenOnce(bo)
		b.listening.Store(false)
		if b.ctx.Err() != nil {
			return
		}
		b.log.Warn("stream: PostgreSQL listener disconnected; events arrive by polling until it reconnects", "err", err)
		if !sleep(b.ctx, bo.delay()) {
			return
		}
	}
}

func (b *PostgresBroker) listenOnce(bo *backoff) error {
	conn, err := pgx.Connect(b.ctx, b.dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(b.ctx, "LISTEN "+pgx.Identifier{b.channel}.Sanitize()); err != nil {
		return err
	}
	b.listening.Store(true)
	bo.reset()
	// Whatever was published while the listener was away is read now.
	b.signal()
	for {
		if _, err := conn.WaitForNotification(b.ctx); err != nil {
			return err
		}
		b.signal()
	}
}

// read delivers, on every wake-up and every poll interval, what the outbox
// holds after the cursor.
func (b *PostgresBroker) read() {
	t := time.NewTicker(b.poll)
	defer t.Stop()
	bo := newBackoff(100*time.Millisecond, 5*time.Second)
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.wake:
		case <-t.C:
		}
		if err := b.catchUp(); err != nil {
			if b.ctx.Err() != nil {
				return
			}
			b.log.Warn("stream: reading new events from the outbox failed; retrying", "err", err)
			if !sleep(b.ctx, bo.delay()) {
				return
			}
			b.signal()
			continue
		}
		bo.reset()
	}
}

// catchUp reads and delivers every event after the cursor of the followed
// topics, page by page.
func (b *PostgresBroker) catchUp() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.primed || len(b.refs) == 0 || b.h == nil {
		return nil
	}
	topics := make([]models.Topic, 0, len(b.refs))
	for t := range b.refs {
		topics = append(topics, t)
	}
	// Every event up to the head is readable now, so after a short page
	// the cursor moves to it: the next read skips the other topics'
	// events instead of scanning them again.
	head, _, err := b.outbox.Head(b.ctx)
	if err != nil {
		return err
	}
	for {
		evs, err := b.outbox.EventsAfter(b.ctx, b.cursor, topics, b.batch)
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			b.cursor = max(b.cursor, head)
			return nil
		}
		runs(evs, func(run []models.Event) {
			msgs := messagesOf(run)
			for _, t := range run[0].Topic.Channels() {
				if b.refs[t] > 0 {
					b.h.Deliver(t, msgs)
				}
			}
		})
		b.cursor = evs[len(evs)-1].Seq
		if len(evs) < b.batch {
			b.cursor = max(b.cursor, head)
			return nil
		}
	}
}
