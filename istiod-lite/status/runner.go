package status

import (
	"context"
	"time"

	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

// Name identifies the runner.
func (w *Writer) Name() string { return "status-writer" }

// Enqueue hands the runner the status of a new translation and the
// snapshot it came from. Only the latest enqueued pair is written: a pass
// still running finishes, then the newest pair replaces any not yet begun.
func (w *Writer) Enqueue(current *model.Snapshot, desired translate.Status) {
	w.mu.Lock()
	w.pending = &job{current: current, desired: desired}
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Start writes enqueued status until ctx ends. A pass that fails (some
// object could not be written) is logged and retried after RetryDelay
// unless a newer translation arrives first.
func (w *Writer) Start(ctx context.Context) error {
	var last *job
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.kick:
			w.mu.Lock()
			if w.pending != nil {
				last, w.pending = w.pending, nil
			}
			w.mu.Unlock()
		case <-retry.C:
		}
		if last == nil {
			continue
		}
		retry.Stop()
		if err := w.Write(ctx, last.current, last.desired); err != nil && ctx.Err() == nil {
			w.opts.Logger.Warn("status: writing status failed; will retry", "error", err, "retryIn", w.opts.RetryDelay)
			retry.Reset(w.opts.RetryDelay)
		}
	}
}
