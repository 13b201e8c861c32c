package stream

import (
	"context"
	"time"
)

// backoff doubles a retry delay from lo up to hi.
type backoff struct {
	lo, hi, next time.Duration
}

func newBackoff(lo, hi time.Duration) *backoff {
	return &backoff{lo: lo, hi: hi, next: lo}
}

// delay returns the wait before the next attempt and doubles the one after.
func (b *backoff) delay() time.Duration {
	d := b.next
	b.next = min(2*b.next, b.hi)
	return d
}

// reset starts over after a success.
func (b *backoff) reset() { b.next = b.lo }

// sleep waits d or until ctx ends; it reports whether the full wait passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
