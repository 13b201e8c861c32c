package stream

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"batteryswap/models"
)

var _ Broker = (*PostgresBroker)(nil)

// Announcer carries the news of published batches between the instances
// that share a PostgreSQL database: the store's LISTEN/NOTIFY.
type Announcer interface {
	// AnnouncePublished tells every instance, this one included, that the
	// events up to seq are published.
	AnnouncePublished(ctx context.Context, seq int64) error
	// Published receives (coalesced) when an instance announced a batch,
	// and whenever announcements may have been missed (a reconnect).
	Published() <-chan struct{}
}

// PostgresOptions configure a PostgresBroker; zero values take the defaults.
type PostgresOptions struct {
	// Poll is how often the broker reads the outbox when no announcement
	// came (default 1s): a lost NOTIFY delays events by at most this much.
	Poll time.Duration
	// Batch is how many events one outbox read returns (default 512).
	Batch int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// PostgresBroker is the Broker for several instances on one PostgreSQL
// database without Redis: the database is the bus. The relay's Publish
// announces the batch (a NOTIFY, through the Announcer); every instance
// (the relay's own included), on an announcement, reads the events after
// the last one it delivered, for the topics its Hub follows, from the
// outbox, and delivers them in Seq order. The outbox is the only path, so
// nothing is lost while a connection is down: the reader catches up from
// its cursor, and polls as a safety net for a lost announcement. It never
// calls Handler.Resync.
//
// It costs a query per published batch per instance, against none for
// Redis: Redis stays the broker for clusters under load.
type PostgresBroker struct {
	outbox    Outbox
	announcer Announcer
	poll      time.Duration
	batch     int
	log       *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	done   sync.WaitGroup

	// mu is held across a whole read and delivery, so a Subscribe that
	// returns has waited for any read that did not include its topics.
	mu     sync.Mutex
	h      Handler
	refs   topicRefs
	cursor int64 // Seq of the last event read; valid once primed
	primed bool
	closed bool
}

// NewPostgresBroker returns a broker that hears of published batches
// through a and reads their events from o.
func NewPostgresBroker(o Outbox, a Announcer, opts PostgresOptions) *PostgresBroker {
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
		outbox: o, announcer: a, poll: opts.Poll, batch: opts.Batch, log: opts.Logger,
		ctx: ctx, cancel: cancel, refs: make(topicRefs),
	}
}

// Publish implements Broker. The events are already in the outbox, so
// publishing is announcing them; this instance's reader hears it too. A
// failed announcement is logged, not returned: the instances poll.
func (b *PostgresBroker) Publish(ctx context.Context, evs []models.Event) error {
	if b.ctx.Err() != nil {
		return ErrClosed
	}
	if len(evs) == 0 {
		return nil
	}
	if err := b.announcer.AnnouncePublished(ctx, evs[len(evs)-1].Seq); err != nil && ctx.Err() == nil {
		b.log.Warn("stream: announcing published events failed; instances see them within their poll interval", "err", err)
	}
	return nil
}

// Start implements Broker: it starts the reader.
func (b *PostgresBroker) Start(h Handler) {
	b.mu.Lock()
	b.h = h
	b.mu.Unlock()
	b.done.Add(1)
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
	b.refs.add(topics)
	return nil
}

// Unsubscribe implements Broker.
func (b *PostgresBroker) Unsubscribe(topics ...models.Topic) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refs.remove(topics)
}

// Ping implements Broker: events flow while the outbox can be read; the
// announcements only make them prompt.
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
	return nil
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
		case <-b.announcer.Published():
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
			continue // the next tick reads again
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
