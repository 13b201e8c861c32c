package stream

import (
	"context"
	"sync"

	"batteryswap/models"
)

var _ Broker = (*MemoryBroker)(nil)

// MemoryBroker is the in-process Broker for a single instance: Publish hands
// each batch straight to the Handler, in the publisher's goroutine. It never
// loses an event, so it never calls Resync.
type MemoryBroker struct {
	mu     sync.RWMutex
	h      Handler
	refs   topicRefs
	closed bool
}

// NewMemoryBroker returns an empty in-process broker.
func NewMemoryBroker() *MemoryBroker {
	return &MemoryBroker{refs: make(topicRefs)}
}

// Publish implements Broker, delivering on the publisher's goroutine. The
// events are copied, so the caller may reuse evs.
func (b *MemoryBroker) Publish(_ context.Context, evs []models.Event) error {
	b.mu.RLock()
	// The read lock is held while delivering so that a Subscribe that has
	// returned sees every later Publish.
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	if b.h == nil {
		return nil
	}
	runs(evs, func(run []models.Event) {
		var msgs []*Message // made once, for the first channel that wants them
		for _, t := range run[0].Topic.Channels() {
			if b.refs[t] == 0 {
				continue
			}
			if msgs == nil {
				msgs = make([]*Message, len(run))
				for i := range run {
					e := run[i]
					msgs[i] = NewMessage(&e)
				}
			}
			b.h.Deliver(t, msgs)
		}
	})
	return nil
}

// Start implements Broker.
func (b *MemoryBroker) Start(h Handler) {
	b.mu.Lock()
	b.h = h
	b.mu.Unlock()
}

// Subscribe implements Broker; the subscription is active at once.
func (b *MemoryBroker) Subscribe(_ context.Context, topics ...models.Topic) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	b.refs.add(topics)
	return nil
}

// Unsubscribe implements Broker.
func (b *MemoryBroker) Unsubscribe(topics ...models.Topic) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refs.remove(topics)
}

// Ping implements Broker.
func (b *MemoryBroker) Ping(context.Context) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	return nil
}

// Close implements Broker.
func (b *MemoryBroker) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}
