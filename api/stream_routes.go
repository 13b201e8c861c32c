package api

// The streams' routes, their authorisation and their limits: which topics
// a request may follow, and on which transport. open (stream_open.go)
// subscribes; the pump (stream_pump.go) delivers.

import (
	"context"
	"errors"
	"mime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"batteryswap/models"
	"batteryswap/stream"
)

// Stream limits.
const (
	maxTopics          = 20
	defaultPollTimeout = 25 * time.Second
	maxPollTimeout     = 60 * time.Second
	maxPollEvents      = 500
	writeTimeout       = 10 * time.Second
	retryAfter         = 2 * time.Second
	snapshotUnreadMax  = 100
	subscribeTimeout   = 5 * time.Second
)

// errStreamEnded is what a stream handler returns once its response has
// started: the error handler logs nothing more for it.
var errStreamEnded = errors.New("stream ended")

// Transport names, as metrics label them (stream.Transports).
const (
	transportSSE    = stream.TransportSSE
	transportWS     = stream.TransportWS
	transportPoll   = stream.TransportPoll
	transportNDJSON = stream.TransportNDJSON
)

// registerStreamRoutes mounts the streams. Each URL speaks SSE, WebSocket,
// long-poll and NDJSON; the seed's /ws/ paths are aliases. Stream routes get
// no timeout or body middleware.
func (s *Server) registerStreamRoutes() {
	stations := func(c echo.Context) ([]models.Topic, error) { return []models.Topic{models.TopicStations}, nil }
	one := func(c echo.Context) ([]models.Topic, error) {
		id, err := pathID(c, "id")
		if err != nil {
			return nil, err
		}
		if err := s.stationExists(c.Request().Context(), id); err != nil {
			return nil, err
		}
		return []models.Topic{models.StationTopic(id)}, nil
	}
	mine := func(c echo.Context) ([]models.Topic, error) {
		u := currentUser(c)
		if u == nil {
			return nil, models.Errorf(models.CodeUnauthorized, "sign in to follow your notifications")
		}
		return []models.Topic{models.UserTopic(u.ID)}, nil
	}
	for _, r := range []struct {
		paths  []string
		topics func(echo.Context) ([]models.Topic, error)
	}{
		{[]string{"/stream/stations", "/ws/stations"}, stations},
		{[]string{"/stream/stations/:id", "/ws/stations/:id"}, one},
		{[]string{"/stream/notifications", "/ws/notifications"}, mine},
		{[]string{"/stream"}, s.requestedTopics},
	} {
		h := s.streamHandler(r.topics)
		for _, p := range r.paths {
			s.echo.GET(p, h, s.optionalUser)
		}
	}
}

// requestedTopics reads /stream?topics=stations,station:3,notifications.
func (s *Server) requestedTopics(c echo.Context) ([]models.Topic, error) {
	raw := strings.Split(c.QueryParam("topics"), ",")
	if len(raw) > maxTopics {
		return nil, errInvalid("at most %d topics per stream", maxTopics)
	}
	u := currentUser(c)
	var out []models.Topic
	for _, name := range raw {
		t := models.Topic(strings.TrimSpace(name))
		switch {
		case t == "":
			continue
		case t == "notifications":
			if u == nil {
				return nil, models.Errorf(models.CodeUnauthorized, "sign in to follow your notifications")
			}
			t = models.UserTopic(u.ID)
		case !t.Valid():
			return nil, errInvalid("unknown topic %q (stations, station:ID or notifications)", string(t))
		}
		if id, ok := t.UserID(); ok {
			if u == nil {
				return nil, models.Errorf(models.CodeUnauthorized, "sign in to follow your notifications")
			}
			if id != u.ID {
				return nil, models.Errorf(models.CodeForbidden, "a user topic is only its user's")
			}
		}
		if id, ok := t.StationID(); ok {
			if err := s.stationExists(c.Request().Context(), id); err != nil {
				return nil, err
			}
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, models.ValidationError(map[string]string{"topics": "is required: stations, station:ID or notifications"})
	}
	return out, nil
}

// stationExists is nil for a station that exists, not_found otherwise.
// Stations are never deleted, so one seen is remembered (s.stations): a
// storm of connects to a station's stream costs one query, not one each.
func (s *Server) stationExists(ctx context.Context, id int64) error {
	if s.stations.has(id) {
		return nil
	}
	ok, err := s.store.StationExists(ctx, id)
	switch {
	case err != nil:
		return err
	case !ok:
		return models.Errorf(models.CodeNotFound, "station %d not found", id)
	}
	s.stations.add(id)
	return nil
}

// knownStations are station ids known to exist, at most maxKnownStations
// of them (then it starts over).
type knownStations struct {
	mu  sync.RWMutex
	ids map[int64]struct{}
}

const maxKnownStations = 1 << 16

func (k *knownStations) has(id int64) bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	_, ok := k.ids[id]
	return ok
}

func (k *knownStations) add(id int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ids == nil || len(k.ids) >= maxKnownStations {
		k.ids = make(map[int64]struct{})
	}
	k.ids[id] = struct{}{}
}

// streamRequest is one parsed stream request.
type streamRequest struct {
	topics    []models.Topic
	user      *models.User
	cursor    int64
	hasCursor bool
	transport string
	delivery  stream.Delivery
	timeout   time.Duration
	requestID string
}

func (s *Server) streamHandler(topics func(echo.Context) ([]models.Topic, error)) echo.HandlerFunc {
	return func(c echo.Context) error {
		req, err := s.parseStreamRequest(c, topics)
		if err != nil {
			return err
		}
		key := "ip:" + c.RealIP()
		if req.user != nil {
			key = "user:" + strconv.FormatInt(req.user.ID, 10)
		}
		release, err := s.streams.acquire(key)
		if models.IsCode(err, models.CodeRateLimited) && s.hijacked.releaseGone(key) > 0 {
			release, err = s.streams.acquire(key)
		}
		if err != nil {
			return err
		}
		// A hijacked stream outlives this handler and takes the slot with
		// it (streamSlot.take); otherwise it is given back here.
		slot := &streamSlot{release: release, key: key}
		defer func() { slot.release() }()
		if s.drain.Err() != nil {
			return errShuttingDown
		}
		// Draining ends every stream, so its client reconnects elsewhere.
		ctx, cancel := context.WithCancel(c.Request().Context())
		defer cancel()
		defer context.AfterFunc(s.drain, cancel)()
		c.SetRequest(c.Request().WithContext(ctx))
		switch req.transport {
		case transportWS:
			err = s.serveWebSocket(c, req, slot)
		case transportPoll:
			err = s.servePoll(c, req)
		default:
			err = s.serveSSE(c, req, slot)
		}
		if err != nil && s.drain.Err() != nil && !c.Response().Committed {
			// The drain cut the stream's opening short (it waited for the
			// broker, say): its client is told to reconnect, as one that
			// arrives now is, not left with an empty answer.
			return errShuttingDown
		}
		return err
	}
}

// errShuttingDown answers a stream asked for, or cut short before it
// began, while the server drains.
var errShuttingDown = models.Errorf(models.CodeServiceUnavailable, "the server is shutting down; reconnect")

// prefersJSON reports whether an Accept header asks for application/json
// (long-poll) over text/event-stream: JSON is listed, with a weight above
// zero and above event-stream's if that is listed too, or equal to it and
// listed first. Media types match in any case.
func prefersJSON(accept []string) bool {
	jsonQ, sseQ := -1.0, -1.0
	jsonFirst := false
	for _, line := range accept {
		for part := range strings.SplitSeq(line, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			q := 1.0
			if v, ok := params["q"]; ok {
				if q, err = strconv.ParseFloat(v, 64); err != nil {
					continue
				}
			}
			switch mt {
			case "application/json":
				jsonFirst = jsonFirst || sseQ < 0
				jsonQ = max(jsonQ, q)
			case "text/event-stream":
				sseQ = max(sseQ, q)
			}
		}
	}
	return jsonQ > 0 && (jsonQ > sseQ || jsonQ == sseQ && jsonFirst)
}

func (s *Server) parseStreamRequest(c echo.Context, topics func(echo.Context) ([]models.Topic, error)) (*streamRequest, error) {
	r := c.Request()
	req := &streamRequest{user: currentUser(c), transport: transportSSE, requestID: requestID(c)}
	// An explicit ?transport= or ?format= wins; Accept picks only when
	// neither is given.
	transport, format := c.QueryParam("transport"), c.QueryParam("format")
	switch {
	case transport != "" && transport != "sse" && transport != "poll" && transport != "websocket":
		return nil, errInvalid("transport must be sse, poll or websocket")
	case format != "" && !strings.EqualFold(format, "ndjson"):
		return nil, errInvalid("format must be ndjson, or absent for SSE")
	case strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
		req.transport = transportWS
	case transport == "websocket":
		return nil, errInvalid("transport=websocket needs a WebSocket handshake (Upgrade: websocket)")
	case transport == "poll":
		req.transport = transportPoll
	case format != "":
		req.transport = transportNDJSON
	case transport == "" && prefersJSON(r.Header.Values("Accept")):
		req.transport = transportPoll
	}
	var err error
	if req.topics, err = topics(c); err != nil {
		return nil, err
	}
	switch c.QueryParam("delivery") {
	case "", "all":
	case "latest":
		for _, t := range req.topics {
			if _, ok := t.StationID(); !ok && t != models.TopicStations {
				return nil, errInvalid("delivery=latest is for station streams only; notifications are delivered in full")
			}
		}
		req.delivery = stream.DeliverLatest
	default:
		return nil, errInvalid("delivery must be all or latest")
	}
	// The header wins: a browser that opened with ?last_event_id= sends the
	// newer Last-Event-ID itself when it reconnects.
	raw := r.Header.Get("Last-Event-ID")
	if raw == "" {
		raw = c.QueryParam("last_event_id")
	}
	if raw == "" && req.transport == transportPoll {
		raw = c.QueryParam("since")
	}
	if req.cursor, req.hasCursor, err = stream.ParseCursor(strings.TrimSpace(raw)); err != nil {
		return nil, err
	}
	if req.transport == transportPoll {
		req.timeout = defaultPollTimeout
		if v := c.QueryParam("timeout"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > int(maxPollTimeout/time.Second) {
				return nil, models.ValidationError(map[string]string{"timeout": "must be a whole number of seconds from 0 to 60"})
			}
			req.timeout = time.Duration(n) * time.Second
		}
	}
	return req, nil
}
