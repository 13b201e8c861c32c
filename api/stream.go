package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
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
	maxBatch           = 256
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
		ok, err := s.store.StationExists(c.Request().Context(), id)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, models.Errorf(models.CodeNotFound, "station %d not found", id)
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
			exists, err := s.store.StationExists(c.Request().Context(), id)
			if err != nil {
				return nil, err
			}
			if !exists {
				return nil, models.Errorf(models.CodeNotFound, "station %d not found", id)
			}
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, models.ValidationError(map[string]string{"topics": "is required: stations, station:ID or notifications"})
	}
	return out, nil
}

// streamRequest is one parsed stream request.
type streamRequest struct {
	topics    []models.Topic
	user      *models.User
	cursor    int64
	hasCursor bool
	transport string
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
			return models.Errorf(models.CodeServiceUnavailable, "the server is shutting down; reconnect")
		}
		// Draining ends every stream, so its client reconnects elsewhere.
		ctx, cancel := context.WithCancel(c.Request().Context())
		defer cancel()
		defer context.AfterFunc(s.drain, cancel)()
		c.SetRequest(c.Request().WithContext(ctx))
		switch req.transport {
		case transportWS:
			return s.serveWebSocket(c, req)
		case transportPoll:
			return s.servePoll(c, req)
		default:
			return s.serveStream(c, req, slot)
		}
	}
}

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

// open subscribes and decides where delivery starts. Without a cursor, or
// with one that cannot be resumed (older than retention, or unknown), it
// returns the opening events: connection_established (fresh only) and a
// snapshot, both carrying the cursor the stream continues from.
func (s *Server) open(ctx context.Context, req *streamRequest) (_ *stream.Subscription, intro []*stream.Message, head int64, _ error) {
	// While the broker reconnects (Redis down), Subscribe waits; a client
	// is better told to come back than left hanging.
	sctx, cancel := context.WithTimeout(ctx, subscribeTimeout)
	sub, err := s.hub.Subscribe(sctx, req.topics)
	cancel()
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return nil, nil, 0, models.Errorf(models.CodeServiceUnavailable, "live events are unavailable right now; retry shortly")
	}
	if err != nil {
		return nil, nil, 0, err
	}
	// The subscription is live before the head is read, so every event
	// after the head reaches it, and the snapshot read after the head
	// already includes every event up to it.
	last, trimmed, err := s.hub.Head(ctx)
	if err != nil {
		sub.Close()
		return nil, nil, 0, err
	}
	if req.hasCursor && req.cursor >= trimmed && req.cursor <= last {
		sub.Start(req.cursor)
		return sub, nil, last, nil
	}
	if !req.hasCursor {
		intro = append(intro, s.synthetic(last, models.EventConnectionEstablished, req.topics, s.establishedFields(req, last)))
	}
	snap, err := s.snapshotFields(ctx, req, req.hasCursor)
	if err != nil {
		sub.Close()
		return nil, nil, 0, err
	}
	intro = append(intro, s.synthetic(last, models.EventSnapshot, req.topics, snap))
	sub.Start(last)
	return sub, intro, last, nil
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

// frameWriter is how one streaming transport writes events and heartbeats.
type frameWriter struct {
	contentType string
	preamble    []byte
	// frame is an event's complete frame, shared by every subscriber (see
	// stream.Message); it must not be modified.
	frame     func(m *stream.Message) []byte
	heartbeat []byte
}

var (
	sseWriter = frameWriter{
		contentType: "text/event-stream",
		preamble:    stream.AppendRetry(nil, retryAfter),
		frame:       (*stream.Message).SSE,
		heartbeat:   stream.AppendComment(nil, "keep-alive"),
	}
	ndjsonWriter = frameWriter{
		contentType: "application/x-ndjson",
		frame:       (*stream.Message).NDJSON,
		heartbeat:   []byte("\n"),
	}
)

// serveStream runs an SSE or NDJSON stream. Once subscribed, with its
// opening frames built, it hands an HTTP/1.x connection to the lean writer
// (serveHijacked) and returns; a connection that cannot be hijacked
// (HTTP/2) is served by serveBuffered on this handler goroutine.
func (s *Server) serveStream(c echo.Context, req *streamRequest, slot *streamSlot) error {
	fw := &sseWriter
	if req.transport == transportNDJSON {
		fw = &ndjsonWriter
	}
	sub, intro, _, err := s.open(c.Request().Context(), req)
	if err != nil {
		return err
	}
	opening := append([]byte(nil), fw.preamble...)
	for _, m := range intro {
		opening = append(opening, fw.frame(m)...)
	}
	if handedOff, err := s.serveHijacked(c, req, fw, sub, opening, len(intro), slot); handedOff {
		return err
	}
	return s.serveBuffered(c, req, fw, sub, opening, len(intro))
}

// serveBuffered runs a stream through net/http's response writer: the
// handler goroutine is the one writer; it writes what is queued in one
// flush and sends a heartbeat after each idle interval. It closes sub.
func (s *Server) serveBuffered(c echo.Context, req *streamRequest, fw *frameWriter, sub *stream.Subscription, opening []byte, introN int) error {
	defer sub.Close()
	ctx := c.Request().Context()
	s.cfg.StreamMetrics.StreamOpened(req.transport)
	defer s.cfg.StreamMetrics.StreamClosed(req.transport)

	w := c.Response()
	h := w.Header()
	h.Set(echo.HeaderContentType, fw.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w.Writer)

	write := func(b []byte) error {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := write(opening); err != nil {
		return errStreamEnded
	}
	s.cfg.StreamMetrics.Delivered(req.transport, introN)
	var buf []byte
	for {
		m, err := s.next(ctx, sub, s.cfg.HeartbeatInterval)
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			if write(fw.heartbeat) != nil {
				return errStreamEnded
			}
			continue
		case err != nil:
			s.endLog(err, req.transport, req.requestID)
			return errStreamEnded
		}
		buf = append(buf[:0], fw.frame(m)...)
		n := 1
		for ; n < maxBatch; n++ {
			m, ok := sub.TryNext()
			if !ok {
				break
			}
			buf = append(buf, fw.frame(m)...)
		}
		if write(buf) != nil {
			return errStreamEnded
		}
		s.cfg.StreamMetrics.Delivered(req.transport, n)
		if cap(buf) > 64<<10 {
			buf = nil // do not keep a burst's buffer on an idle connection
		}
	}
}

// next waits for the next event, at most idle (context.DeadlineExceeded
// then).
func (s *Server) next(ctx context.Context, sub *stream.Subscription, idle time.Duration) (*stream.Message, error) {
	if m, ok := sub.TryNext(); ok {
		return m, nil
	}
	wctx, cancel := context.WithTimeout(ctx, idle)
	defer cancel()
	m, err := sub.Next(wctx)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return nil, context.DeadlineExceeded
	}
	return m, err
}

// endLog logs why a stream ended, unless that was an ordinary end.
func (s *Server) endLog(err error, transport, requestID string) {
	switch {
	case errors.Is(err, stream.ErrSlowConsumer):
		s.log.Info("stream dropped a slow consumer", "transport", transport, "request_id", requestID)
	case errors.Is(err, stream.ErrClosed), errors.Is(err, context.Canceled):
	default:
		s.log.Warn("stream ended", "transport", transport, "err", err, "request_id", requestID)
	}
}

// servePoll answers one long-poll: the events after the cursor as soon as
// there is at least one, or an empty list after the timeout.
func (s *Server) servePoll(c echo.Context, req *streamRequest) error {
	ctx := c.Request().Context()
	s.cfg.StreamMetrics.StreamOpened(transportPoll)
	defer s.cfg.StreamMetrics.StreamClosed(transportPoll)
	sub, intro, head, err := s.open(ctx, req)
	if err != nil {
		return err
	}
	defer sub.Close()
	events := make([]json.RawMessage, 0, len(intro))
	last := req.cursor
	for _, m := range intro {
		events = append(events, m.Data())
		last = m.Seq()
	}
	wait := req.timeout
	if wait == 0 && len(intro) == 0 && req.cursor < head {
		// Even an immediate answer reads the history after the cursor.
		wait = time.Second
	}
	if len(events) == 0 && wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, wait)
		m, err := sub.Next(wctx)
		cancel()
		switch {
		case err == nil:
			events, last = append(events, m.Data()), m.Seq()
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil, errors.Is(err, stream.ErrClosed):
		case ctx.Err() != nil:
			// The server is draining (the client polls again, and reaches
			// another instance) or the client left: answer what there is,
			// as at the timeout; a request cut short is not a failure.
		default:
			s.endLog(err, req.transport, req.requestID)
			return err
		}
	}
	for len(events) > 0 && len(events) < maxPollEvents {
		m, ok := sub.TryNext()
		if !ok {
			break
		}
		events, last = append(events, m.Data()), m.Seq()
	}
	s.cfg.StreamMetrics.Delivered(transportPoll, len(events))
	c.Response().Header().Set("Cache-Control", "no-cache")
	return c.JSON(http.StatusOK, map[string]any{"events": events, "last_event_id": strconv.FormatInt(last, 10)})
}

// checkHandshake refuses, as a JSON error like every other, a WebSocket
// handshake that websocket.Accept would refuse in plain text: the checks of
// RFC 6455 §4.2.1 that the library makes, made first.
func checkHandshake(c echo.Context) error {
	r := c.Request()
	bad := func(format string, args ...any) error {
		return models.Errorf(models.CodeInvalidRequest, "WebSocket handshake: "+format, args...)
	}
	switch {
	case !r.ProtoAtLeast(1, 1):
		return bad("needs HTTP/1.1, not %s", r.Proto)
	case !headerHasToken(r.Header, "Connection", "upgrade"):
		return bad("the Connection header must contain Upgrade")
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		c.Response().Header().Set("Sec-WebSocket-Version", "13")
		return bad("Sec-WebSocket-Version must be 13")
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return bad("needs one Sec-WebSocket-Key header")
	}
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(keys[0])); err != nil || len(k) != 16 {
		return bad("Sec-WebSocket-Key must be 16 bytes in base64")
	}
	return nil
}

// headerHasToken reports whether a comma-separated header holds token, in
// any case.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// maxClientMessage caps a client's WebSocket message: a ping is a few dozen
// bytes.
const maxClientMessage = 8 << 10

var errMessageTooBig = errors.New("message too big")

// readClientMessage reads one message of at most maxClientMessage bytes. A
// longer one is read to its end and dropped, with errMessageTooBig: its
// bytes pass through a small buffer, never held whole.
func readClientMessage(ctx context.Context, conn *websocket.Conn) (websocket.MessageType, []byte, error) {
	typ, r, err := conn.Reader(ctx)
	if err != nil {
		return 0, nil, err
	}
	data, err := io.ReadAll(io.LimitReader(r, maxClientMessage+1))
	if err != nil {
		return 0, nil, err
	}
	if len(data) > maxClientMessage {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return 0, nil, err
		}
		return typ, nil, errMessageTooBig
	}
	return typ, data, nil
}

type wsClientMessage struct {
	Type      string          `json:"type"`
	Timestamp json.RawMessage `json:"timestamp"`
}

// serveWebSocket upgrades and sends each event as one text message with the
// SSE data JSON. A reader goroutine answers pings and reports bad input.
func (s *Server) serveWebSocket(c echo.Context, req *streamRequest) error {
	r := c.Request()
	if !s.originAllowed(r) {
		return models.Errorf(models.CodeForbidden, "origin %q may not open a WebSocket here", r.Header.Get("Origin"))
	}
	if err := checkHandshake(c); err != nil {
		return err
	}
	ctx := r.Context()
	sub, intro, _, err := s.open(ctx, req)
	if err != nil {
		return err
	}
	defer sub.Close()
	// The origin was checked above against ALLOWED_ORIGINS and the host.
	conn, err := websocket.Accept(c.Response(), r, &websocket.AcceptOptions{InsecureSkipVerify: true, CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return errStreamEnded
	}
	defer conn.CloseNow()
	// Client messages are capped by hand below, so that an oversized one is
	// answered with an error and the socket stays open (CONTRACT §4), where
	// the library's limit would close it with 1009.
	conn.SetReadLimit(-1)
	s.cfg.StreamMetrics.StreamOpened(transportWS)
	defer s.cfg.StreamMetrics.StreamClosed(transportWS)

	// ctx ends at drain, and wakes the loop below. The socket's own reads
	// and writes run on sock, which outlives it: the library drops the
	// connection outright when an operation's context ends, and the client
	// is owed a close frame (1001, reconnect) first.
	sock, sockCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer sockCancel()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	send := func(b []byte) error {
		wctx, wcancel := context.WithTimeout(sock, writeTimeout)
		defer wcancel()
		return conn.Write(wctx, websocket.MessageText, b)
	}
	go func() {
		defer cancel()
		for {
			typ, data, err := readClientMessage(sock, conn)
			if errors.Is(err, errMessageTooBig) {
				_ = send([]byte(`{"type":"error","message":"messages are at most 8 KiB"}`))
				continue
			}
			if err != nil {
				return
			}
			var msg wsClientMessage
			if typ != websocket.MessageText || json.Unmarshal(data, &msg) != nil {
				_ = send([]byte(`{"type":"error","message":"messages must be JSON objects"}`))
				continue
			}
			switch msg.Type {
			case "ping":
				ts := msg.Timestamp
				if len(ts) == 0 {
					ts = json.RawMessage("null")
				}
				out, _ := json.Marshal(map[string]any{"type": "pong", "timestamp": ts})
				_ = send(out)
			default:
				out, _ := json.Marshal(map[string]any{"type": "error", "message": "unknown message type " + strconv.Quote(msg.Type)})
				_ = send(out)
			}
		}
	}()
	for _, m := range intro {
		if send(m.Data()) != nil {
			return errStreamEnded
		}
	}
	s.cfg.StreamMetrics.Delivered(transportWS, len(intro))
	for {
		m, err := s.next(ctx, sub, s.cfg.HeartbeatInterval)
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			pctx, pcancel := context.WithTimeout(sock, writeTimeout)
			err := conn.Ping(pctx)
			pcancel()
			if err != nil {
				return errStreamEnded
			}
			continue
		case errors.Is(err, stream.ErrClosed) || s.drain.Err() != nil:
			conn.Close(websocket.StatusGoingAway, "server shutting down; reconnect with last_event_id")
			return errStreamEnded
		case errors.Is(err, stream.ErrSlowConsumer):
			conn.Close(websocket.StatusTryAgainLater, "too slow; reconnect with last_event_id")
			return errStreamEnded
		case err != nil:
			s.endLog(err, req.transport, req.requestID)
			return errStreamEnded
		}
		if send(m.Data()) != nil {
			return errStreamEnded
		}
		s.cfg.StreamMetrics.Delivered(transportWS, 1)
	}
}
