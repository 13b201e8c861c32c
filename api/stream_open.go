package api

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"batteryswap/models"
	"batteryswap/stream"
)

// Opening a stream: subscribe, then decide where delivery starts, and build
// the opening events of a fresh stream (shared, see introCache).

// open subscribes and decides where delivery starts. A client that resumes
// with a cursor the outbox still holds gets the history after it, then live
// events. Without a cursor, or with one that cannot be resumed (older than
// retention, or unknown), it starts at the hub's head with the opening
// events: connection_established (fresh only) and a snapshot (reset when a
// cursor was given), both carrying that head as their id.
func (s *Server) open(ctx context.Context, req *streamRequest) (_ *stream.Subscription, intro []*stream.Message, _ error) {
	// While the broker reconnects (Redis down), Subscribe waits; a client
	// is better told to come back than left hanging.
	sctx, cancel := context.WithTimeout(ctx, subscribeTimeout)
	sub, err := s.hub.Subscribe(sctx, req.topics, req.delivery)
	cancel()
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return nil, nil, models.Errorf(models.CodeServiceUnavailable, "live events are unavailable right now; retry shortly")
	}
	if err != nil {
		return nil, nil, err
	}
	if req.hasCursor {
		last, trimmed, err := s.hub.Bounds(ctx)
		if err != nil {
			sub.Close()
			return nil, nil, err
		}
		if req.cursor >= trimmed && req.cursor <= last {
			sub.Start(req.cursor)
			return sub, nil, nil
		}
	}
	// The subscription is live before the snapshot is read, so the
	// snapshot holds everything up to the head and every later event
	// reaches the subscriber.
	if intro, err = s.intro(ctx, req, sub.Head()); err != nil {
		sub.Close()
		return nil, nil, err
	}
	sub.StartAtHead()
	return sub, intro, nil
}

// intro builds the opening events at head, or takes them from s.intros.
func (s *Server) intro(ctx context.Context, req *streamRequest, head stream.Head) ([]*stream.Message, error) {
	build := func(ctx context.Context) ([]*stream.Message, error) {
		var intro []*stream.Message
		if !req.hasCursor {
			intro = append(intro, s.synthetic(head.Seq, models.EventConnectionEstablished, req.topics, s.establishedFields(req, head.Seq)))
		}
		snap, err := s.snapshotFields(ctx, req, req.hasCursor)
		if err != nil {
			return nil, err
		}
		return append(intro, s.synthetic(head.Seq, models.EventSnapshot, req.topics, snap)), nil
	}
	// A station stream's opening says nothing of its subscriber, so every
	// subscriber at one head can share it.
	if _, isStation := req.topics[0].StationID(); head.Epoch == 0 || req.topics[0] != models.TopicStations && !isStation {
		return build(ctx)
	}
	return s.intros.get(ctx, introKey{req.topics[0], req.hasCursor}, head, build)
}

// introCache shares the opening events of single-topic station streams
// among the subscribers that arrive at the same stream.Head: they are built
// once per head (a query and an encoding of every station for "stations")
// instead of once per connect, and a storm of connects at one head waits
// for the first build instead of querying all at once.
type introCache struct {
	mu      sync.Mutex
	entries map[introKey]*introEntry
}

type introKey struct {
	topic  models.Topic
	resume bool // a reset snapshot, without connection_established
}

type introEntry struct {
	head stream.Head
	done chan struct{} // closed when msgs and err are set
	msgs []*stream.Message
	err  error
}

// maxIntros bounds the entries; past it the cache starts over.
const maxIntros = 4096

// get returns the entry for key at head, building it with build when it is
// missing or was built at another head. A waiter whose builder failed (its
// client left, say) builds for itself.
func (c *introCache) get(ctx context.Context, key introKey, head stream.Head, build func(context.Context) ([]*stream.Message, error)) ([]*stream.Message, error) {
	c.mu.Lock()
	e := c.entries[key]
	if e == nil || e.head != head {
		if c.entries == nil || len(c.entries) >= maxIntros {
			c.entries = make(map[introKey]*introEntry)
		}
		e = &introEntry{head: head, done: make(chan struct{})}
		c.entries[key] = e
		c.mu.Unlock()
		e.msgs, e.err = build(ctx)
		close(e.done)
		if e.err != nil {
			c.mu.Lock()
			if c.entries[key] == e {
				delete(c.entries, key)
			}
			c.mu.Unlock()
		}
		return e.msgs, e.err
	}
	c.mu.Unlock()
	select {
	case <-e.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if e.err != nil {
		return build(ctx)
	}
	return e.msgs, nil
}

func (s *Server) synthetic(seq int64, typ string, topics []models.Topic, fields map[string]any) *stream.Message {
	return stream.NewMessage(&models.Event{Seq: seq, Type: typ, Topic: topics[0], Payload: models.NewPayload(typ, time.Now(), fields), CreatedAt: time.Now()})
}

func (s *Server) establishedFields(req *streamRequest, last int64) map[string]any {
	f := map[string]any{"message": "connected", "station_id": nil, "last_event_id": strconv.FormatInt(last, 10)}
	names := make([]string, len(req.topics))
	for i, t := range req.topics {
		names[i] = string(t)
		if id, ok := t.StationID(); ok && len(req.topics) == 1 {
			f["station_id"] = id
		}
		if id, ok := t.UserID(); ok {
			f["user_id"] = id
		}
	}
	f["topics"] = names
	return f
}

// snapshotFields is the current state of the request's topics: stations for
// station topics, unread notifications for the user's topic.
func (s *Server) snapshotFields(ctx context.Context, req *streamRequest, reset bool) (map[string]any, error) {
	f := map[string]any{"reset": reset}
	var stations []models.Station
	seen := map[int64]bool{}
	for _, t := range req.topics {
		switch id, isStation := t.StationID(); {
		case t == models.TopicStations:
			all, err := s.store.AllStations(ctx)
			if err != nil {
				return nil, err
			}
			stations, seen = all, nil
		case isStation && seen != nil && !seen[id]:
			st, err := s.store.FindStationByID(ctx, id)
			if err != nil {
				return nil, err
			}
			seen[id] = true
			stations = append(stations, *st)
		default:
			if uid, ok := t.UserID(); ok {
				unread, err := s.store.UnreadNotifications(ctx, uid, snapshotUnreadMax+1)
				if err != nil {
					return nil, err
				}
				// The newest snapshotUnreadMax, oldest first; unread_more says
				// that older ones exist (GET /notifications?unread=true pages
				// them).
				more := len(unread) > snapshotUnreadMax
				if more {
					unread = unread[len(unread)-snapshotUnreadMax:]
				}
				f["unread"], f["unread_more"] = unread, more
			}
		}
	}
	if stations != nil || f["unread"] == nil {
		if stations == nil {
			stations = []models.Station{}
		}
		f["stations"] = stations
	}
	return f, nil
}
