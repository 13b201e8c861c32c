package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"batteryswap/stream"
)

// servePoll answers one long-poll: the events after the cursor as soon as
// there is at least one (what is pending then, up to maxPollEvents), or an
// empty list after the timeout.
func (s *Server) servePoll(c echo.Context, req *streamRequest) error {
	ctx := c.Request().Context()
	s.cfg.StreamMetrics.StreamOpened(transportPoll)
	defer s.cfg.StreamMetrics.StreamClosed(transportPoll)
	sub, intro, err := s.open(ctx, req)
	if err != nil {
		if req.hasCursor && s.drain.Err() != nil {
			// The drain came while the poll opened: answered as a poll
			// waiting then is, with nothing and the same cursor.
			return pollAnswer(c, nil, req.cursor)
		}
		return err
	}
	defer sub.Close()
	batch, last := intro, req.cursor
	if len(batch) == 0 {
		// A timeout of 0 still reads the history after the cursor: Next
		// reads a page before it looks at the timer.
		timer := time.NewTimer(req.timeout)
		batch, err = sub.Next(ctx, timer.C)
		timer.Stop()
		if req.delivery == stream.DeliverLatest {
			batch = stream.MergeLatest(batch)
		}
		switch {
		case err == nil, errors.Is(err, stream.ErrClosed):
		case ctx.Err() != nil:
			// The server is draining (the client polls again, and reaches
			// another instance) or the client left: answer what there is,
			// as at the timeout; a request cut short is not a failure.
		default:
			s.endLog(err, req.transport, req.requestID)
			return err
		}
	}
	// The rest, after maxPollEvents, comes with the next poll, from its
	// cursor.
	batch = batch[:min(len(batch), maxPollEvents)]
	events := make([]json.RawMessage, len(batch))
	for i, m := range batch {
		events[i] = m.Data()
	}
	if len(batch) > 0 {
		last = batch[len(batch)-1].Seq()
	}
	if len(intro) == 0 {
		s.cfg.StreamMetrics.DeliveriesOf(transportPoll).Written(batch, time.Now())
	} else {
		s.cfg.StreamMetrics.Delivered(transportPoll, len(events))
	}
	return pollAnswer(c, events, last)
}

// pollAnswer answers a long-poll with events and the cursor to poll from
// next.
func pollAnswer(c echo.Context, events []json.RawMessage, last int64) error {
	if events == nil {
		events = []json.RawMessage{}
	}
	c.Response().Header().Set("Cache-Control", "no-cache")
	return c.JSON(http.StatusOK, map[string]any{"events": events, "last_event_id": strconv.FormatInt(last, 10)})
}
