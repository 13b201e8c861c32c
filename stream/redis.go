package stream

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"batteryswap/models"
)

var _ Broker = (*RedisBroker)(nil)

// RedisOptions configure a RedisBroker; zero values take the defaults.
type RedisOptions struct {
	// Prefix goes before a topic to name its channel (default
	// "batteryswap:topic:"), so "station:3" is "batteryswap:topic:station:3".
	Prefix string
	// HealthInterval is how long the subscriber connection may stay silent
	// before the broker pings Redis; with no answer within another interval
	// it reconnects (default 5s). It also bounds an Unsubscribe's write.
	HealthInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnection attempts
	// (defaults 100ms and 5s).
	MinBackoff, MaxBackoff time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// RedisBroker is the Broker for several instances: Redis pub/sub with one
// channel per topic, on one subscriber connection per instance that joins
// only the topics its Hub's subscribers follow.
//
// Subscribe is confirmed with a PING barrier on that connection: Redis
// answers commands in order, so the PONG proves the SUBSCRIBE before it took
// effect. When the connection drops, the broker reconnects with backoff,
// joins every channel again and calls Handler.Resync once they are active,
// before it delivers anything from the new connection.
type RedisBroker struct {
	client     redis.UniversalClient
	prefix     string
	health     time.Duration
	minBackoff time.Duration
	maxBackoff time.Duration
	log        *slog.Logger

	mu      sync.Mutex
	h       Handler
	cancel  context.CancelFunc
	done    chan struct{} // closed when the receive loop ends
	refs    map[string]int
	ps      *redis.PubSub // the current connection, nil between connections
	live    bool          // ps has joined every channel of refs
	token   uint64        // the last barrier PING written
	waiters []waiter      // Subscribe calls waiting for a barrier, by token
	// subAt is the barrier after each channel's SUBSCRIBE on the current
	// connection, released the last barrier whose PONG came back: a
	// channel with subAt <= released is active, and a Subscribe that only
	// adds a reference to active channels needs no barrier of its own.
	subAt    map[string]uint64
	released uint64
	closed   bool
}

type waiter struct {
	token uint64
	done  chan error // buffered: release never blocks
}

// NewRedisBroker returns a broker on client. The caller keeps ownership of
// client and closes it after the broker.
func NewRedisBroker(client redis.UniversalClient, opts RedisOptions) *RedisBroker {
	return &RedisBroker{
		client:     client,
		prefix:     cmp.Or(opts.Prefix, "batteryswap:topic:"),
		health:     cmp.Or(opts.HealthInterval, 5*time.Second),
		minBackoff: cmp.Or(opts.MinBackoff, 100*time.Millisecond),
		maxBackoff: cmp.Or(opts.MaxBackoff, 5*time.Second),
		log:        cmp.Or(opts.Logger, slog.Default()),
		refs:       make(map[string]int),
		subAt:      make(map[string]uint64),
	}
}

// Publish implements Broker: one MULTI/EXEC for the whole batch, with one
// PUBLISH per run and channel, so an instance never gets a run on one
// channel and misses it on another, and the batch costs one round trip.
func (b *RedisBroker) Publish(ctx context.Context, evs []models.Event) error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if len(evs) == 0 {
		return nil
	}
	_, err := b.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		runs(evs, func(run []models.Event) {
			payload := encodeRun(run)
			for _, t := range run[0].Topic.Channels() {
				p.Publish(ctx, b.prefix+string(t), payload)
			}
		})
		return nil
	})
	if err != nil {
		return fmt.Errorf("stream: redis publish of events %d-%d: %w", evs[0].Seq, evs[len(evs)-1].Seq, err)
	}
	return nil
}

// Start implements Broker: it starts the goroutine that holds the
// subscriber connection; Close stops it.
func (b *RedisBroker) Start(h Handler) {
	ctx, cancel := context.WithCancel(context.Background())
	b.mu.Lock()
	b.h, b.cancel, b.done = h, cancel, make(chan struct{})
	b.mu.Unlock()
	go b.run(ctx)
}

// Subscribe implements Broker. While Redis is unreachable it waits for the
// reconnection, so a short outage delays new subscribers instead of failing
// them; ctx bounds the wait.
func (b *RedisBroker) Subscribe(ctx context.Context, topics ...models.Topic) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	var fresh []string
	active := b.live
	for _, t := range topics {
		ch := b.prefix + string(t)
		if b.refs[ch]++; b.refs[ch] == 1 {
			fresh = append(fresh, ch)
		}
		if at, ok := b.subAt[ch]; !ok || at > b.released {
			active = false
		}
	}
	if active {
		// Every channel is joined and confirmed on the live connection
		// (a connect storm on one topic pays no PING per connect).
		b.mu.Unlock()
		return nil
	}
	w := waiter{token: b.barrierLocked(fresh), done: make(chan error, 1)}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()

	var err error
	select {
	case err = <-w.done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		b.Unsubscribe(topics...)
	}
	return err
}

// barrierLocked joins channels on the current connection and writes a PING
// after them; its PONG releases the waiters of its token and all before.
// Without a connection, the next connection's first barrier releases them.
func (b *RedisBroker) barrierLocked(channels []string) uint64 {
	b.token++
	for _, ch := range channels {
		b.subAt[ch] = b.token
	}
	ps := b.ps
	if ps == nil {
		return b.token
	}
	// Not the caller's context: a caller giving up must not look like a
	// broken connection. The write may dial; bound it, since b.mu is held.
	ctx, cancel := context.WithTimeout(context.Background(), b.health)
	defer cancel()
	var err error
	if len(channels) > 0 {
		err = ps.Subscribe(ctx, channels...)
	}
	if err == nil {
		err = ps.Ping(ctx, barrierPrefix+strconv.FormatUint(b.token, 10))
	}
	if err != nil {
		b.dropLocked(ps, err)
	}
	return b.token
}

// dropLocked abandons a connection after a failed write. go-redis may have
// reconnected it behind our back, losing messages silently; closing it makes
// the receive loop start over with a resync.
func (b *RedisBroker) dropLocked(ps *redis.PubSub, err error) {
	if b.ps == ps {
		b.ps, b.live = nil, false
	}
	_ = ps.Close()
	b.log.Debug("stream: redis subscriber write failed", "err", err)
}

// Unsubscribe implements Broker.
func (b *RedisBroker) Unsubscribe(topics ...models.Topic) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var gone []string
	for _, t := range topics {
		ch := b.prefix + string(t)
		switch n := b.refs[ch]; {
		case n > 1:
			b.refs[ch]--
		case n == 1:
			delete(b.refs, ch)
			delete(b.subAt, ch)
			gone = append(gone, ch)
		}
	}
	if len(gone) == 0 || b.ps == nil {
		return
	}
	// The write may dial; bound it, since b.mu is held.
	ctx, cancel := context.WithTimeout(context.Background(), b.health)
	defer cancel()
	if err := b.ps.Unsubscribe(ctx, gone...); err != nil {
		b.dropLocked(b.ps, err)
	}
}

// Ping implements Broker: Redis answers and the subscriber connection is up.
func (b *RedisBroker) Ping(ctx context.Context) error {
	b.mu.Lock()
	closed, down := b.closed, b.done != nil && !b.live
	b.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case down:
		return errors.New("stream: redis subscriber connection is down")
	}
	return b.client.Ping(ctx).Err()
}

// Close implements Broker.
func (b *RedisBroker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	ps, waiters, cancel, done := b.ps, b.waiters, b.cancel, b.done
	b.ps, b.live, b.waiters = nil, false, nil
	b.mu.Unlock()
	for _, w := range waiters {
		w.done <- ErrClosed
	}
	if cancel != nil {
		cancel()
	}
	if ps != nil {
		_ = ps.Close() // interrupts the blocked read
	}
	if done != nil {
		<-done
	}
	return nil
}

// run keeps a subscriber connection open until ctx ends.
func (b *RedisBroker) run(ctx context.Context) {
	defer close(b.done)
	bo := newBackoff(b.minBackoff, b.maxBackoff)
	everLive := false
	for {
		live, err := b.session(ctx, everLive)
		if ctx.Err() != nil || errors.Is(err, ErrClosed) {
			return
		}
		// One warning per outage; the failed attempts during it are noise.
		if live {
			everLive = true
			bo.reset()
			b.log.Warn("stream: redis subscriber connection lost; reconnecting", "err", err)
		} else {
			b.log.Debug("stream: redis subscriber connection failed", "err", err)
		}
		if !sleep(ctx, bo.delay()) {
			return
		}
	}
}

// session runs one subscriber connection until it fails. It reports whether
// the connection got live, that is whether events may have been missed
// since.
func (b *RedisBroker) session(ctx context.Context, resync bool) (live bool, err error) {
	ps := b.client.Subscribe(ctx)
	defer ps.Close()
	// Dial before taking b.mu, which Subscribe and Unsubscribe wait on; its
	// PONG is not a barrier and is ignored.
	if err := ps.Ping(ctx); err != nil {
		return false, err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false, ErrClosed
	}
	b.ps = ps
	channels := make([]string, 0, len(b.refs))
	for ch := range b.refs {
		channels = append(channels, ch)
	}
	barrier := b.barrierLocked(channels)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		if b.ps == ps {
			b.ps, b.live = nil, false
		}
		b.mu.Unlock()
	}()

	// Redis confirms the channels of one SUBSCRIBE together, before any
	// message on them, so the first confirmation is the moment to catch up.
	resynced := resync
	resync = resync && len(channels) > 0
	pinged := false
	var last []*Message // a station's run arrives twice; decode it once
	for {
		msg, err := ps.ReceiveTimeout(ctx, b.health)
		if err != nil {
			var ne net.Error
			if !pinged && errors.As(err, &ne) && ne.Timeout() {
				pinged = true
				if err = ps.Ping(ctx); err == nil {
					continue
				}
			}
			return live, err
		}
		pinged = false
		switch msg := msg.(type) {
		case *redis.Subscription:
			if resync && msg.Kind == "subscribe" {
				resync = false
				b.h.Resync()
			}
		case *redis.Message:
			last = b.deliver(msg, last)
		case *redis.Pong:
			token, ok := parseBarrier(msg.Payload)
			if !ok {
				continue
			}
			if !live && token >= barrier {
				live = true
				if resynced {
					b.log.Info("stream: redis subscriber connection restored")
				}
				b.mu.Lock()
				b.live = b.ps == ps
				b.mu.Unlock()
			}
			b.release(token)
		}
	}
}

// deliver decodes a message and hands its run to the handler, reusing last
// when it is the same run on another channel (a station's events arrive on
// "stations" and on "station:N", one message after the other).
func (b *RedisBroker) deliver(msg *redis.Message, last []*Message) []*Message {
	topic, ok := strings.CutPrefix(msg.Channel, b.prefix)
	evs, err := decodeRun(msg.Payload)
	if !ok || err != nil {
		b.log.Warn("stream: dropping an undecodable redis message", "channel", msg.Channel, "err", err)
		return last
	}
	if len(last) != len(evs) || last[0].Seq() != evs[0].Seq {
		last = make([]*Message, len(evs))
		for i := range evs {
			last[i] = NewMessage(&evs[i])
		}
	}
	b.h.Deliver(models.Topic(topic), last)
	return last
}

// release wakes the Subscribe calls whose barrier is at or before token.
func (b *RedisBroker) release(token uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.released = max(b.released, token)
	i := 0
	for ; i < len(b.waiters) && b.waiters[i].token <= token; i++ {
		b.waiters[i].done <- nil
	}
	b.waiters = slices.Delete(b.waiters, 0, i)
}

const barrierPrefix = "batteryswap-barrier:"

func parseBarrier(payload string) (uint64, bool) {
	s, ok := strings.CutPrefix(payload, barrierPrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// The Redis payload of a run: a version byte, the number of events
// (uvarint), then each event: seq (uvarint), created_at as Unix seconds
// (varint) and nanoseconds (uvarint), then type, topic and the JSON payload,
// each a uvarint length and the bytes.
const codecVersion = 2

func encodeRun(evs []models.Event) []byte {
	n := 1 + binary.MaxVarintLen64
	for i := range evs {
		n += 6*binary.MaxVarintLen64 + len(evs[i].Type) + len(evs[i].Topic) + len(evs[i].Payload)
	}
	b := make([]byte, 0, n)
	b = append(b, codecVersion)
	b = binary.AppendUvarint(b, uint64(len(evs)))
	for i := range evs {
		ev := &evs[i]
		b = binary.AppendUvarint(b, uint64(ev.Seq))
		b = binary.AppendVarint(b, ev.CreatedAt.Unix())
		b = binary.AppendUvarint(b, uint64(ev.CreatedAt.Nanosecond()))
		b = appendBytes(b, ev.Type)
		b = appendBytes(b, string(ev.Topic))
		b = appendBytes(b, string(ev.Payload))
	}
	return b
}

func appendBytes(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errBadPayload = errors.New("stream: malformed event payload")

// maxRun bounds the events one message may claim, so a corrupt count
// cannot make the decoder allocate without bound.
const maxRun = 1 << 16

func decodeRun(s string) ([]models.Event, error) {
	d := decoder{b: []byte(s)}
	if len(d.b) == 0 || d.b[0] != codecVersion {
		return nil, errBadPayload
	}
	d.b = d.b[1:]
	n := d.uvarint()
	if d.bad || n == 0 || n > maxRun {
		return nil, errBadPayload
	}
	evs := make([]models.Event, n)
	for i := range evs {
		seq := d.uvarint()
		sec := d.varint()
		nsec := d.uvarint()
		typ, topic, payload := d.bytes(), d.bytes(), d.bytes()
		if d.bad || seq > math.MaxInt64 || nsec >= uint64(time.Second) {
			return nil, errBadPayload
		}
		evs[i] = models.Event{
			Seq:       int64(seq),
			Type:      string(typ),
			Topic:     models.Topic(topic),
			Payload:   payload,
			CreatedAt: time.Unix(sec, int64(nsec)).UTC(),
		}
	}
	if len(d.b) != 0 {
		return nil, errBadPayload
	}
	return evs, nil
}

// decoder reads a run's fields; after the first malformed one, bad is set
// and every later read returns zero values.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes returns a length-prefixed field; it shares the decoder's buffer.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		d.bad, d.b = true, nil
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}
