package stream

import (
	"context"
	"errors"

	"batteryswap/models"
)

// ErrClosed is returned by a closed Broker, and by a Subscription whose Hub
// closed (the process is shutting down: the client should reconnect and
// resume with its last event id).
var ErrClosed = errors.New("stream: closed")

// Broker carries batches of sequenced events from the relay to every
// instance's Hub. Channels are per topic, so an instance receives only the
// topics its own subscribers follow. Delivery is at most once per
// connection: events published while the broker is disconnected are lost,
// which Handler.Resync reports so the Hub can read them from the Outbox. All
// methods are safe for concurrent use.
type Broker interface {
	// Publish sends evs, one batch of sequenced events in Seq order (what
	// the relay numbered in one flush), on the channels of their topics,
	// all or none. Each run of consecutive events with the same topic goes
	// to each of that topic's channels (Topic.Channels) as one message, and
	// the runs go in order, so every subscriber, whichever channels it
	// joined, receives its events in Seq order. Batches published one after
	// another by one goroutine are delivered in that order.
	Publish(ctx context.Context, evs []models.Event) error
	// Start hands the broker the Handler that receives what it delivers and
	// begins delivering. It is called once, before Subscribe.
	Start(h Handler)
	// Subscribe joins the channels of topics and returns once they are
	// active: every event published after it returns is delivered, until the
	// matching Unsubscribe. Calls are counted per topic. On error (ctx ended,
	// broker closed) nothing is joined.
	Subscribe(ctx context.Context, topics ...models.Topic) error
	// Unsubscribe undoes one Subscribe of topics; a channel is left when its
	// count drops to zero.
	Unsubscribe(topics ...models.Topic)
	// Ping reports whether the broker can deliver events now (readiness).
	Ping(ctx context.Context) error
	// Close stops delivery and releases the broker's connections; Subscribe
	// calls waiting return ErrClosed. It does not close a client it was given.
	Close() error
}

// Handler receives what a Broker delivers. Its methods are called from one
// goroutine at a time per broker connection and must not block on clients.
type Handler interface {
	// Deliver is called with one run of a published batch (see
	// Broker.Publish) that arrived on the channel of topic: events in Seq
	// order. The slice and its Messages are shared and must not be modified
	// or kept beyond the Messages themselves.
	Deliver(topic models.Topic, msgs []*Message)
	// Resync is called after the broker lost its connection and joined its
	// channels again, before any event of the new connection is delivered:
	// events published in between were not delivered.
	Resync()
}

// runs splits a batch into its runs: maximal stretches of consecutive
// events with the same topic, which a broker publishes as one message per
// channel of that topic. f is called once per run, in order.
func runs(evs []models.Event, f func(run []models.Event)) {
	for start := 0; start < len(evs); {
		end := start + 1
		for end < len(evs) && evs[end].Topic == evs[start].Topic {
			end++
		}
		f(evs[start:end])
		start = end
	}
}

// topicRefs counts, per topic, the local subscriptions that hold it: a
// broker follows a topic while its count is above zero. Its owner guards it.
type topicRefs map[models.Topic]int

func (r topicRefs) add(topics []models.Topic) {
	for _, t := range topics {
		r[t]++
	}
}

func (r topicRefs) remove(topics []models.Topic) {
	for _, t := range topics {
		if r[t]--; r[t] <= 0 {
			delete(r, t)
		}
	}
}
