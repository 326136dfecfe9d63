package submit

import (
	"context"
	"fmt"

	"github.com/assetgen/assetgen/shared/backlog"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/problem"
)

// queuedRetryAfter is the wait suggested to a user at the queued-row cap:
// about how long a batch of dry-run rows takes to drain.
const queuedRetryAfter = 60

// checkQueued refuses a batch that would take the user's rows in unfinished
// batches over the cap (MaxQueuedRows; 0 is none), before anything is fetched or written. Submits of one
// user that overlap each count only the markers that exist when they start,
// so together they can pass the cap by the rows of the overlapping batches.
func (s *server) checkQueued(ctx context.Context, sub *submission) error {
	if s.cfg.MaxQueuedRows <= 0 {
		return nil // no cap
	}
	queued, err := backlog.New(s.Bucket).Rows(ctx, sub.user)
	if err != nil {
		// An abuse cap, not a ledger invariant: a count that fails lets the
		// batch through (the budget still bounds what it costs), and the
		// writes that follow meet the storage fault if it lasts.
		obs.Logger(ctx).Warn("submit: counting queued rows failed; the batch is not held to the cap", "error", err)
		return nil
	}
	rows, max := len(sub.spec.Rows), s.cfg.MaxQueuedRows
	if queued+rows <= max {
		return nil
	}
	return &problem.Error{
		Code:       problem.RateLimited,
		RetryAfter: queuedRetryAfter,
		Detail: fmt.Sprintf("%d rows of your batches are still queued or running and this batch adds %d; at most %d may be: "+
			"retry when earlier batches have finished", queued, rows, max),
		Extra: map[string]any{"queuedRows": queued, "batchRows": rows, "maxQueuedRows": max},
	}
}

// markQueued records the new batch among the user's unfinished ones (before
// any of its tasks exists, so completion always finds the marker to clear).
// It returns the undo of a marker this call made (nil otherwise): it goes
// with the batch.
func (s *server) markQueued(ctx context.Context, m *ledger.Manifest) (func(context.Context), error) {
	e := backlog.Entry{User: m.Owner, BatchID: m.BatchID, Rows: len(m.Rows)}
	markers := backlog.New(s.Bucket)
	created, err := markers.Mark(ctx, e)
	if err != nil {
		return nil, fmt.Errorf("submit: %w", err)
	}
	if !created {
		return nil, nil
	}
	return func(ctx context.Context) {
		if err := markers.Clear(ctx, e); err != nil {
			obs.Logger(ctx).Warn("submit: clearing the queued marker of a rolled-back batch failed; the housekeeping job removes it", "batchId", m.BatchID, "error", err)
		}
	}, nil
}
