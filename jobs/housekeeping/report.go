package main

import (
	"fmt"
	"sync/atomic"
)

// report counts what a run did (or, dry, would do). Counters are updated from
// concurrent workers.
type report struct {
	batches, rows                         atomic.Int64 // examined
	requeued, failed, cancelled           atomic.Int64 // rows
	completed, renotified, resumed        atomic.Int64 // batches (resumed: interrupted retries)
	prunedBatches, prunedKeys, prunedDays atomic.Int64
	clearedMarkers                        atomic.Int64 // queued-row markers
	errors                                atomic.Int64
}

// summary is the one line the run prints at its end.
func (r *report) summary(dryRun bool) string {
	dry := "no"
	if dryRun {
		dry = "yes"
	}
	return fmt.Sprintf("housekeeping: examined %d batches, %d rows; re-enqueued %d, failed %d, cancelled %d, completed %d, renotified %d, resumed %d retries; "+
		"pruned %d batches, %d keys, %d budget days; cleared %d queued markers; %d errors (dry run: %s)",
		r.batches.Load(), r.rows.Load(), r.requeued.Load(), r.failed.Load(), r.cancelled.Load(), r.completed.Load(), r.renotified.Load(), r.resumed.Load(),
		r.prunedBatches.Load(), r.prunedKeys.Load(), r.prunedDays.Load(), r.clearedMarkers.Load(), r.errors.Load(), dry)
}

// attrs are the counters as log attributes.
func (r *report) attrs() []any {
	return []any{
		"batches", r.batches.Load(), "rows", r.rows.Load(), "requeued", r.requeued.Load(), "failed", r.failed.Load(),
		"cancelled", r.cancelled.Load(), "completed", r.completed.Load(), "renotified", r.renotified.Load(), "resumedRetries", r.resumed.Load(), "prunedBatches", r.prunedBatches.Load(),
		"prunedKeys", r.prunedKeys.Load(), "prunedBudgetDays", r.prunedDays.Load(), "clearedQueuedMarkers", r.clearedMarkers.Load(),
		"errors", r.errors.Load(),
	}
}
