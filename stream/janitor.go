package stream

import (
	"cmp"
	"context"
	"log/slog"
	"time"
)

// RunJanitor trims events older than retention from the outbox now and then
// every interval, until ctx ends. Trimming is idempotent, so every instance
// may run one. Errors are logged and the next round tries again.
func RunJanitor(ctx context.Context, o Outbox, retention, interval time.Duration, logger *slog.Logger) {
	logger = cmp.Or(logger, slog.Default())
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		n, err := o.TrimBefore(ctx, time.Now().Add(-retention))
		switch {
		case err != nil && ctx.Err() == nil:
			logger.Error("stream: trimming old events", "err", err)
		case n > 0:
			logger.Info("stream: trimmed old events", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
