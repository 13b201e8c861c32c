// Package sseclient follows a batteryswap SSE stream for ever: it wraps the
// r3labs/sse/v2 client so that it reconnects with exponential backoff and no
// elapsed-time limit (the library's default gives up after 15 minutes),
// reconnects after a clean end of stream too (the library stops there),
// resumes with Last-Event-ID, accepts events over 64 KiB, and never reports
// comments or retry-only frames as events.
package sseclient

import (
	"context"
	"errors"
	"fmt"
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
