// Package stream carries committed events from the outbox to live
// subscribers: the Relay orders and publishes them, a Broker (in-process or
// Redis pub/sub) fans them out to every instance, and the Hub delivers them to
// each local subscriber through a bounded queue, after replaying what the
// subscriber missed. It does not import Echo or the store.
package stream

import (
	"context"
	"time"

	"batteryswap/models"
)

// Outbox is the part of the event store that streams read. The store
// implements it; the stream package never sees the database.
type Outbox interface {
	// EventsAfter returns up to limit sequenced events with Seq > cursor whose
	// topic is delivered on one of topics (a "station:N" event is delivered on
	// "stations" too), in Seq order. It is safe for concurrent use.
	EventsAfter(ctx context.Context, cursor int64, topics []models.Topic, limit int) ([]models.Event, error)
	// Head returns the last sequence number given out (0 when none) and the
	// highest sequence number trimmed away by retention (0 when none): a
	// cursor below trimmed, or above last, cannot be resumed.
	Head(ctx context.Context) (last, trimmed int64, err error)
	// TrimBefore deletes sequenced, published events created before t and
	// records the highest trimmed sequence; it returns how many it deleted.
	TrimBefore(ctx context.Context, t time.Time) (int64, error)
	// Wakeups returns a channel that receives (coalesced, non-blocking) when
	// a transaction that wrote outbox rows has committed, on this instance
	// or, with PostgreSQL LISTEN/NOTIFY, on any instance. It may also stay
	// silent; the relay polls as a safety net.
	Wakeups() <-chan struct{}
	// AcquireRelay blocks until this process holds the cluster-wide relay
	// lease or ctx ends. Exactly one lease is held in the cluster at a time.
	AcquireRelay(ctx context.Context) (RelayLease, error)
}

// RelayLease is the one relay's hold on the outbox. Its methods are called
// from one goroutine.
type RelayLease interface {
	// Pending first gives sequence numbers, in commit order, to committed
	// outbox rows that have none, then returns up to limit events with a
	// sequence number above the last one marked published, in Seq order.
	// Sequence numbers are contiguous and continue across leases.
	Pending(ctx context.Context, limit int) ([]models.Event, error)
	// MarkPublished records that every event up to seq has been published.
	MarkPublished(ctx context.Context, seq int64) error
	// Lost is closed when the lease is lost (its connection died); the
	// holder must stop publishing and acquire again.
	Lost() <-chan struct{}
	// Release gives the lease up. It is safe to call more than once.
	Release() error
}
