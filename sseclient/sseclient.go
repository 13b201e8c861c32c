// Package sseclient follows a batteryswap SSE stream for ever: it wraps the
// r3labs/sse/v2 client so that it reconnects with exponential backoff and no
// elapsed-time limit (the library's default gives up after 15 minutes),
// reconnects after a clean end of stream too (the library stops there),
// resumes with Last-Event-ID, accepts events over 64 KiB, never reports
// comments or retry-only frames as events, and drops a frame cut off by the
// end of the stream (the library reports it as an event).
package sseclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/r3labs/sse/v2"
	backoff "gopkg.in/cenkalti/backoff.v1"
)

// Event is one received event.
type Event struct {
	ID   string
	Type string
	Data []byte
}

// Options tune Follow.
type Options struct {
	// Headers are sent with every request (e.g. Authorization).
	Headers map[string]string
	// LastEventID resumes from this cursor on the first connection.
	LastEventID string
	// MaxEventSize bounds one event (default 4 MiB).
	MaxEventSize int
	// MaxBackoff bounds the wait between reconnects (default 10 s).
	MaxBackoff time.Duration
	// HTTPClient makes the requests (default: a client without timeout).
	HTTPClient *http.Client
	// OnConnect is called after each successful (re)connection.
	OnConnect func()
}

// ErrPermanent marks an answer that reconnecting cannot fix (a 4xx status).
var ErrPermanent = errors.New("sseclient: permanent failure")

// Follow reads url until ctx ends, calling fn for each event in order. It
// returns ctx's error, an ErrPermanent-wrapping error for a 4xx answer, or
// fn's error.
func Follow(ctx context.Context, url string, opts Options, fn func(Event) error) error {
	if opts.MaxEventSize <= 0 {
		opts.MaxEventSize = 4 << 20
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 10 * time.Second
	}
	last := opts.LastEventID
	var fnErr error
	for {
		c := sse.NewClient(url, sse.ClientMaxBufferSize(opts.MaxEventSize))
		if opts.HTTPClient != nil {
			c.Connection = opts.HTTPClient
		}
		c.Headers = opts.Headers
		if last != "" {
			c.LastEventID.Store([]byte(last))
		}
		b := backoff.NewExponentialBackOff()
		b.MaxElapsedTime = 0 // never give up
		b.MaxInterval = opts.MaxBackoff
		c.ReconnectStrategy = backoff.WithContext(b, ctx)
		c.ResponseValidator = func(_ *sse.Client, resp *http.Response) error {
			if resp.StatusCode == http.StatusOK {
				resp.Body = wholeFrames(resp.Body)
				b.Reset()
				if opts.OnConnect != nil {
					opts.OnConnect()
				}
				return nil
			}
			resp.Body.Close()
			err := fmt.Errorf("stream answered %s", resp.Status)
			if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
				return backoff.Permanent(fmt.Errorf("%w: %w", ErrPermanent, err))
			}
			return err
		}
		subCtx, cancel := context.WithCancel(ctx)
		err := c.SubscribeRawWithContext(subCtx, func(m *sse.Event) {
			if fnErr != nil || len(m.Data) == 0 {
				return // comments, retry-only frames, or after fn failed
			}
			if len(m.ID) > 0 {
				last = string(m.ID)
			}
			if err := fn(Event{ID: string(m.ID), Type: string(m.Event), Data: append([]byte(nil), m.Data...)}); err != nil {
				fnErr = err
				cancel()
			}
		})
		cancel()
		switch {
		case fnErr != nil:
			return fnErr
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrPermanent):
			return err
		}
		// A clean end of stream (err == nil) or a failure the backoff gave
		// up on: start over from the last id after a short pause.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// wholeFrames passes on a stream's bytes up to the end of its last complete
// frame (a blank line) and drops whatever follows when the stream ends. A
// server that drops a slow reader, or stops, may end in the middle of a
// frame; r3labs/sse hands such a remainder on as an event, whose data is cut
// short and whose id would be resumed after, losing the event.
func wholeFrames(body io.ReadCloser) io.ReadCloser {
	return &frameReader{body: body, buf: make([]byte, 32<<10)}
}

type frameReader struct {
	body    io.ReadCloser
	buf     []byte
	pending []byte // read, but not yet known to be part of a complete frame
	ready   []byte // complete frames not yet returned
	err     error
}

func (f *frameReader) Read(p []byte) (int, error) {
	for len(f.ready) == 0 {
		if f.err != nil {
			return 0, f.err // a cut-off frame in pending is dropped
		}
		n, err := f.body.Read(f.buf)
		f.pending = append(f.pending, f.buf[:n]...)
		if end := frameEnd(f.pending); end > 0 {
			f.ready = append(f.ready[:0], f.pending[:end]...)
			f.pending = append(f.pending[:0], f.pending[end:]...)
		}
		f.err = err
	}
	n := copy(p, f.ready)
	f.ready = f.ready[n:]
	return n, nil
}

func (f *frameReader) Close() error { return f.body.Close() }

// frameEnd is the length of b's complete frames: up to the end of its last
// blank line, found as r3labs/sse's reader finds them.
func frameEnd(b []byte) int {
	end := 0
	for _, blank := range []string{"\r\r", "\n\n", "\r\n\n", "\n\r\n", "\r\n\r\n"} {
		if i := bytes.LastIndex(b, []byte(blank)); i >= 0 {
			end = max(end, i+len(blank))
		}
	}
	return end
}
