package store

import "context"

// admission lets at most cap(a) callers in at once and admits the ones that
// wait in the order they arrived: a goroutine blocked sending on a channel
// waits in the channel's FIFO queue. database/sql hands a freed connection
// to a random waiter instead, which under load lets a few requests wait
// round after round: a worse p99 at the same throughput (docs/BENCHMARKS.md,
// "First come, first served").
type admission chan struct{}

// enter waits for a place, or for ctx to end.
func (a admission) enter(ctx context.Context) error {
	select {
	case a <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// leave gives the place to the longest waiter.
func (a admission) leave() { <-a }
