package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"batteryswap/stream"
)

// The pump: one delivery loop for every streaming transport. It takes
// everything pending for its subscriber at once (stream.Subscription.Next)
// and hands the batch to its transport as one write of the events' shared,
// once-encoded frames; a subscriber that falls behind gets bigger writes,
// not more of them. The transports (SSE and NDJSON on a hijacked socket or
// through net/http, WebSocket) differ only in how a frame looks and where
// it goes.

// transport is one stream's way to its client.
type transport interface {
	// frame returns m's encoding on this transport: a shared slice of
	// stream.Message, which must not be modified.
	frame(m *stream.Message) []byte
	// write sends frames, in order, as one write where the transport can,
	// within writeTimeout. The first write also sends what the transport
	// opens with (a response head, a retry line), even with no frames.
	write(frames net.Buffers) error
	// heartbeat tells an idle client and the proxies on the way that the
	// stream is alive, and may find out that the client is gone.
	heartbeat() error
}

// keepFrames is the largest frame list an idle stream keeps between bursts.
const keepFrames = 64

// writeOpening writes a stream's opening: what the transport opens with
// and intro (the opening events, if any). It runs before pump, on the
// goroutine that opened the stream: a hijacked stream's own goroutine then
// starts small and stays so while idle.
func (s *Server) writeOpening(t transport, name string, intro []*stream.Message) error {
	frames := make(net.Buffers, 0, len(intro))
	for _, m := range intro {
		frames = append(frames, t.frame(m))
	}
	if err := t.write(frames); err != nil {
		return err
	}
	s.cfg.StreamMetrics.DeliveriesOf(name).Add(len(intro))
	return nil
}

// pump writes what sub delivers, and a heartbeat after every
// HeartbeatInterval without a write, until sub ends, ctx ends or a write
// fails; it returns why. It counts deliveries under the transport's name.
// The stream's opening has been written (writeOpening).
func (s *Server) pump(ctx context.Context, sub *stream.Subscription, t transport, name string) error {
	delivered := s.cfg.StreamMetrics.DeliveriesOf(name)
	var frames net.Buffers
	interval := s.cfg.HeartbeatInterval
	// One timer per stream, re-armed only when it fires: never per event.
	hb := time.NewTimer(interval)
	defer hb.Stop()
	lastWrite := time.Now()
	for {
		batch, err := sub.Next(ctx, hb.C)
		switch {
		case err != nil:
			return err
		case batch == nil: // the heartbeat timer fired
			if idle := time.Since(lastWrite); idle < interval {
				hb.Reset(interval - idle)
				continue
			}
			if err := t.heartbeat(); err != nil {
				return err
			}
			lastWrite = time.Now()
			hb.Reset(interval)
			continue
		}
		clear(frames)
		frames = frames[:0]
		if cap(frames) > keepFrames {
			frames = nil // an idle stream keeps no burst-sized list
		}
		for _, m := range batch {
			frames = append(frames, t.frame(m))
		}
		if err := t.write(frames); err != nil {
			return err
		}
		lastWrite = time.Now()
		delivered.Written(batch, lastWrite)
	}
}

// handOff is what a stream that outlives its handler (a hijacked SSE or
// NDJSON stream, a WebSocket) keeps for its end: its subscription, its
// client's stream slot, and what its request's log line and duration
// metric need.
type handOff struct {
	s         *Server
	sub       *stream.Subscription
	release   func() // gives the client's stream slot back; idempotent
	transport string
	requestID string
	route     string
	status    int // the request's status, for its duration metric
	start     time.Time
}

// newHandOff takes over the stream of c, its subscription and its slot;
// the caller marks c handed off (handOffKey) once the stream is on its way.
func (s *Server) newHandOff(c echo.Context, req *streamRequest, sub *stream.Subscription, slot *streamSlot, status int) handOff {
	return handOff{s: s, sub: sub, release: slot.take(), transport: req.transport, requestID: req.requestID,
		route: c.Path(), status: status, start: time.Now()}
}

// ended releases the subscription and the client's stream slot, observes
// the request's duration, and logs why the stream ended (err; nil, or
// errDraining, for an ordinary end).
func (h *handOff) ended(err error) {
	h.sub.Close()
	h.release()
	h.s.metrics.observe(http.MethodGet, h.route, h.status, time.Since(h.start))
	if err != nil && !errors.Is(err, errDraining) {
		h.s.endLog(err, h.transport, h.requestID)
	}
}

// endLog logs why a stream ended, unless that was an ordinary end.
func (s *Server) endLog(err error, transport, requestID string) {
	switch {
	case errors.Is(err, stream.ErrSlowConsumer):
		s.log.Info("stream dropped a slow consumer", "transport", transport, "request_id", requestID)
	case errors.Is(err, stream.ErrClosed), errors.Is(err, context.Canceled), errors.Is(err, errClientGone):
		s.log.Debug("stream ended", "transport", transport, "reason", err.Error(), "request_id", requestID)
	default:
		s.log.Warn("stream ended", "transport", transport, "err", err, "request_id", requestID)
	}
}
