package stream

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"
)

// RelayOptions configure a Relay; zero values take the defaults.
type RelayOptions struct {
	// PollInterval is the safety net when no wakeup arrives (default 1s).
	PollInterval time.Duration
	// Batch is how many pending events one round publishes (default 500).
	Batch int
	// MinBackoff and MaxBackoff bound the wait after a failure (defaults
	// 100ms and 5s).
	MinBackoff, MaxBackoff time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics *Metrics
}

// Relay moves committed events from the outbox to the broker. Every
// instance runs one; the outbox lease lets exactly one of them work at a
// time, which gives the events their one public order. Delivery is at least
// once: an event is marked published only after the broker took it, so after
// a failure or a new lease some events may be published again, and
// subscribers drop them by sequence number.
type Relay struct {
	outbox Outbox
	broker Broker
	poll   time.Duration
	batch  int
	minBO  time.Duration
	maxBO  time.Duration
	log    *slog.Logger
	m      *Metrics
}

// NewRelay returns a relay from o to b; Run starts it.
func NewRelay(o Outbox, b Broker, opts RelayOptions) *Relay {
	return &Relay{
		outbox: o,
		broker: b,
		poll:   cmp.Or(opts.PollInterval, time.Second),
		batch:  cmp.Or(opts.Batch, 500),
		minBO:  cmp.Or(opts.MinBackoff, 100*time.Millisecond),
		maxBO:  cmp.Or(opts.MaxBackoff, 5*time.Second),
		log:    cmp.Or(opts.Logger, slog.Default()),
		m:      opts.Metrics,
	}
}

// Run acquires the relay lease and publishes pending events, on each outbox
// wakeup and every PollInterval, until ctx ends; when the lease is lost it
// acquires it again. Failures are logged and retried with backoff, so Run
// only returns when ctx ends, with nil.
func (r *Relay) Run(ctx context.Context) error {
	bo := newBackoff(r.minBO, r.maxBO)
	for {
		lease, err := r.outbox.AcquireRelay(ctx)
		if ctx.Err() != nil {
			if err == nil {
				_ = lease.Release()
			}
			return nil
		}
		if err != nil {
			r.log.Error("stream: relay lease", "err", err)
			if !sleep(ctx, bo.delay()) {
				return nil
			}
			continue
		}
		bo.reset()
		r.log.Info("stream: relay lease acquired")
		r.serve(ctx, lease)
		if err := lease.Release(); err != nil {
			r.log.Warn("stream: relay lease release", "err", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		r.log.Warn("stream: relay lease lost; acquiring again")
	}
}

// serve publishes with lease until ctx ends or the lease is lost.
func (r *Relay) serve(ctx context.Context, lease RelayLease) {
	tick := time.NewTicker(r.poll)
	defer tick.Stop()
	bo := newBackoff(r.minBO, r.maxBO)
	for {
		more, err := r.flush(ctx, lease)
		if more {
			bo.reset()
			continue
		}
		// Idle, wait for a wakeup or the poll; after a failure, only for the
		// backoff (nil channels never fire).
		var wake <-chan struct{}
		var poll, retry <-chan time.Time
		if err != nil {
			if ctx.Err() == nil {
				r.log.Error("stream: relay", "err", err)
			}
			retry = time.After(bo.delay())
		} else {
			bo.reset()
			wake, poll = r.outbox.Wakeups(), tick.C
		}
		select {
		case <-ctx.Done():
			return
		case <-lease.Lost():
			return
		case <-retry:
		case <-wake:
		case <-poll:
		}
	}
}

// flush publishes one batch of pending events and marks it published;
// more reports a full batch, so more may be waiting.
func (r *Relay) flush(ctx context.Context, lease RelayLease) (more bool, err error) {
	select {
	case <-lease.Lost():
		return false, nil
	default:
	}
	evs, err := lease.Pending(ctx, r.batch)
	if err != nil {
		return false, fmt.Errorf("pending events: %w", err)
	}
	if len(evs) == 0 {
		return false, nil
	}
	r.m.eventsNumbered(evs, time.Now())
	// What one flush numbered goes out as one batch: one broker round
	// trip, and one dispatch per subscriber on every instance.
	if err := r.broker.Publish(ctx, evs); err != nil {
		return false, err
	}
	r.m.eventsPublished(len(evs))
	last := evs[len(evs)-1].Seq
	if err := lease.MarkPublished(ctx, last); err != nil {
		return false, fmt.Errorf("mark published up to %d: %w", last, err)
	}
	return len(evs) == r.batch, nil
}
