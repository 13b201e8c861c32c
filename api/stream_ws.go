package api

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"batteryswap/models"
	"batteryswap/stream"
)

// WebSocket streams: the same pump, each event one text message with the
// SSE data JSON. coder/websocket speaks the protocol; its writes reach the
// socket through a heldConn, so that a batch of messages leaves in one
// write, as on the other transports. After the upgrade the socket leaves
// its handler for two goroutines of its own, the pump and a reader, as a
// hijacked SSE stream does: an idle socket keeps little (docs/BENCHMARKS.md,
// "WebSocket under load"). Drain waits for every socket's goodbye.

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

// serveWebSocket upgrades and hands the socket to a goroutine of its own
// (runWebSocket), as serveHijacked does for SSE: the handler returns, and
// what net/http and Echo held for the request, the handler's deep stack
// first, is freed while the socket lives. The stream slot goes with it.
func (s *Server) serveWebSocket(c echo.Context, req *streamRequest, slot *streamSlot) error {
	r := c.Request()
	if !s.originAllowed(r) {
		return models.Errorf(models.CodeForbidden, "origin %q may not open a WebSocket here", r.Header.Get("Origin"))
	}
	if err := checkHandshake(c); err != nil {
		return err
	}
	sub, intro, err := s.open(r.Context(), req)
	if err != nil {
		return err
	}
	// Registered before the upgrade, so that a drain from now on waits
	// for this socket's goodbye.
	entry := s.sockets.add()
	if entry == nil {
		sub.Close()
		return errShuttingDown
	}
	hj := &heldHijacker{ResponseWriter: c.Response(), slots: s.writers, latest: req.delivery == stream.DeliverLatest}
	// The origin was checked above against ALLOWED_ORIGINS and the host.
	conn, err := websocket.Accept(hj, r, &websocket.AcceptOptions{InsecureSkipVerify: true, CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		sub.Close()
		s.sockets.remove(entry)
		return errStreamEnded
	}
	c.Set(handOffKey, true)
	ws := &wsStream{handOff: s.newHandOff(c, req, sub, slot, http.StatusSwitchingProtocols), conn: conn, held: hj.conn, entry: entry}
	// The stream's contexts outlive the request's, which ends when the
	// handler returns.
	ctx := context.WithoutCancel(r.Context())
	if !s.sockets.attach(entry, hj.conn) { // the server began draining meanwhile
		go func() {
			conn.Close(websocket.StatusGoingAway, "server shutting down; reconnect with last_event_id")
			ws.finish(nil)
		}()
		return errStreamEnded
	}
	go ws.run(ctx, intro)
	return errStreamEnded
}

// run serves the socket until it ends: a reader goroutine answers the
// client's pings and reports bad input, the pump writes the stream, and
// the socket is closed with the reason it ended for.
func (w *wsStream) run(ctx context.Context, intro []*stream.Message) {
	s, conn := w.s, w.conn
	var err error
	defer func() { w.finish(err) }() // last, once the reader is gone
	// Client messages are capped by hand below, so that an oversized one is
	// answered with an error and the socket stays open (CONTRACT §4), where
	// the library's limit would close it with 1009.
	conn.SetReadLimit(-1)
	s.cfg.StreamMetrics.StreamOpened(transportWS)
	defer s.cfg.StreamMetrics.StreamClosed(transportWS)

	// pumping ends at drain, or when the client's side ends, and stops the
	// pump. The socket's own reads and writes run on sock, which outlives
	// it: the library drops the connection outright when an operation's
	// context ends, and the client is owed a close frame (1001, reconnect)
	// first. Writes are bounded by the heldConn's deadline instead.
	sock, sockCancel := context.WithCancel(ctx)
	defer sockCancel()
	pumping, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.drain, cancel)()
	w.pumping, w.frames = pumping, context.WithoutCancel(sock)
	// However the subscription ends, a write blocked on a client that
	// stopped reading fails within closeGrace, not its write timeout.
	w.sub.AfterEnd(func(error) { w.held.hurry(closeGrace) })
	send := func(b []byte) { _ = conn.Write(sock, websocket.MessageText, b) }
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer cancel()
		for {
			typ, data, err := readClientMessage(sock, conn)
			if errors.Is(err, errMessageTooBig) {
				send([]byte(`{"type":"error","message":"messages are at most 8 KiB"}`))
				continue
			}
			if err != nil {
				return
			}
			var msg wsClientMessage
			if typ != websocket.MessageText || json.Unmarshal(data, &msg) != nil {
				send([]byte(`{"type":"error","message":"messages must be JSON objects"}`))
				continue
			}
			switch msg.Type {
			case "ping":
				ts := msg.Timestamp
				if len(ts) == 0 {
					ts = json.RawMessage("null")
				}
				out, _ := json.Marshal(map[string]any{"type": "pong", "timestamp": ts})
				send(out)
			default:
				out, _ := json.Marshal(map[string]any{"type": "error", "message": "unknown message type " + strconv.Quote(msg.Type)})
				send(out)
			}
		}
	}()
	// Nothing of the socket outlives run: closing it ends the reader's
	// read.
	defer func() { conn.CloseNow(); <-readerDone }()
	if err = s.writeOpening(w, transportWS, intro); err == nil {
		err = s.pump(pumping, w.sub, w, transportWS)
	}
	switch {
	case errors.Is(err, stream.ErrClosed) || s.drain.Err() != nil:
		conn.Close(websocket.StatusGoingAway, "server shutting down; reconnect with last_event_id")
		err = nil // an ordinary end
	case errors.Is(err, stream.ErrSlowConsumer):
		conn.Close(websocket.StatusTryAgainLater, "too slow; reconnect with last_event_id")
	}
}

// finish closes the socket, releases what it holds (the subscription,
// the client's stream slot), observes the request's duration, logs why the
// stream ended (err, nil for an ordinary end) and lets Drain know.
func (w *wsStream) finish(err error) {
	w.conn.CloseNow()
	w.ended(err)
	w.s.sockets.remove(w.entry)
}

// wsStream is one WebSocket stream: the pump's transport on the socket.
type wsStream struct {
	handOff
	conn  *websocket.Conn
	held  *heldConn
	entry *webSocket // its place among the server's WebSockets
	// pumping is the pump's context: it ends at drain or when the
	// client's side ends, and so does a heartbeat waiting for its pong.
	pumping context.Context
	// frames is the context of the pump's message writes: one that never
	// ends, since they only fill the heldConn (its flush is bounded by its
	// write deadline), and the library watches a context that can end with
	// a context.AfterFunc per message.
	frames context.Context
}

func (w *wsStream) frame(m *stream.Message) []byte { return m.Data() }

// write sends each frame as a text message; the messages collect in the
// heldConn and reach the socket in one write.
func (w *wsStream) write(frames net.Buffers) error {
	w.held.hold()
	for _, f := range frames {
		if err := w.conn.Write(w.frames, websocket.MessageText, f); err != nil {
			_ = w.held.flush()
			return fmt.Errorf("%w: %w", errClientGone, err)
		}
	}
	if err := w.held.flush(); err != nil {
		return fmt.Errorf("%w: %w", errClientGone, err)
	}
	return nil
}

// heartbeat pings the client and waits for its pong.
func (w *wsStream) heartbeat() error {
	ctx, cancel := context.WithTimeout(w.pumping, writeTimeout)
	defer cancel()
	if err := w.conn.Ping(ctx); err != nil {
		return fmt.Errorf("%w: %w", errClientGone, err)
	}
	return nil
}

// webSockets are a Server's open WebSockets. Their connections leave
// net/http at the upgrade, so http.Server.Shutdown does not wait for them:
// Drain does, until each has said goodbye (1001) to its client.
type webSockets struct {
	mu      sync.Mutex
	open    map[*webSocket]struct{}
	drained bool
	wg      sync.WaitGroup
}

// webSocket is one registered WebSocket; conn is nil until the upgrade.
type webSocket struct{ conn *heldConn }

// closeGrace is how long a WebSocket has to say goodbye once it must end
// (the server drains, its subscription ended: a slow consumer, the hub
// closed): enough for what is on its way to a client that reads, the
// close frame and the client's answer to it; a client that stopped
// reading is cut off after it.
const closeGrace = time.Second

// add registers a WebSocket about to be upgraded, or returns nil when the
// server drains.
func (w *webSockets) add() *webSocket {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.drained {
		return nil
	}
	if w.open == nil {
		w.open = make(map[*webSocket]struct{})
	}
	ws := &webSocket{}
	w.open[ws] = struct{}{}
	w.wg.Add(1)
	return ws
}

// attach gives ws its upgraded connection and reports whether the server
// is still serving; if it drains, the connection already has its grace.
func (w *webSockets) attach(ws *webSocket, conn *heldConn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	ws.conn = conn
	if w.drained {
		conn.hurry(closeGrace)
		return false
	}
	return true
}

// remove is a WebSocket's handler saying it is done.
func (w *webSockets) remove(ws *webSocket) {
	w.mu.Lock()
	delete(w.open, ws)
	w.mu.Unlock()
	w.wg.Done()
}

// endAll refuses new WebSockets, gives every open one closeGrace to close
// (heldConn.hurry), and waits until their handlers have returned. The
// drain's context has already ended their pumps; a pump blocked on a
// client that stopped reading fails within closeGrace, and so does its
// close frame. One still upgrading gets its grace when it attaches.
func (w *webSockets) endAll() {
	w.mu.Lock()
	w.drained = true
	for ws := range w.open {
		if ws.conn != nil {
			ws.conn.hurry(closeGrace)
		}
	}
	w.mu.Unlock()
	w.wg.Wait()
}

// heldHijacker gives websocket.Accept the connection wrapped in a heldConn.
type heldHijacker struct {
	http.ResponseWriter
	slots  writeSlots
	latest bool // delivery=latest: see latestSendBuffer
	conn   *heldConn
}

// Hijack implements http.Hijacker. net/http's buffered writer, which the
// library writes frames into, is pointed at the heldConn.
func (h *heldHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	c = bareConn(c)
	if h.latest {
		latestSendBuffer(c)
	}
	h.conn = newHeldConn(c, h.slots)
	brw.Writer.Reset(h.conn)
	return h.conn, brw, nil
}

// heldConn is a connection whose writes can be held back and sent
// together: between hold and flush, what is written collects in a buffer.
// Every write that reaches the socket gets writeTimeout to finish, and
// goes through the socket writer, like a hijacked SSE stream's, holding a
// write slot only while the kernel takes its bytes.
type heldConn struct {
	net.Conn
	sock    *socketWriter // Conn's writer
	one     [1][]byte     // backs bufs: no allocation per write
	bufs    net.Buffers   // sock's argument, which it consumes
	mu      sync.Mutex
	holding bool
	buf     []byte
}

// maxHeldBuffer is the largest buffer an idle connection keeps.
const maxHeldBuffer = 64 << 10

func (h *heldConn) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.holding {
		h.buf = append(h.buf, p...)
		return len(p), nil
	}
	return h.writeLocked(p)
}

// writeLocked writes p; like a lean stream's write, it fails only when a
// writeTimeout passes without progress (socketWriter.write).
func (h *heldConn) writeLocked(p []byte) (int, error) {
	h.one[0] = p
	h.bufs = h.one[:]
	n, err := h.sock.write(&h.bufs)
	h.one[0], h.bufs = nil, nil
	return int(n), err
}

// newHeldConn returns c, writing through a socket writer with slots.
func newHeldConn(c net.Conn, slots writeSlots) *heldConn {
	return &heldConn{Conn: c, sock: newSocketWriter(c, slots)}
}

// hurry gives the connection's writes and reads at most d from now: what
// is on its way to a client that reads, and the client's answer to a close
// frame, have that long; then the connection fails. From any goroutine.
func (h *heldConn) hurry(d time.Duration) {
	h.sock.hurry(d)
	_ = h.Conn.SetReadDeadline(time.Now().Add(d))
}

func (h *heldConn) hold() {
	h.mu.Lock()
	h.holding = true
	h.mu.Unlock()
}

// flush writes what was held, in one write, and stops holding.
func (h *heldConn) flush() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.holding = false
	if len(h.buf) == 0 {
		return nil
	}
	_, err := h.writeLocked(h.buf)
	h.buf = h.buf[:0]
	if cap(h.buf) > maxHeldBuffer {
		h.buf = nil
	}
	return err
}
