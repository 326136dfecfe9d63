package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/assetgen/assetgen/shared/completion"
	"github.com/assetgen/assetgen/shared/idempotency"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/queue"
)

// outcome is what examining a batch found.
type outcome int

const (
	finished outcome = iota // complete (or deleted): never needs looking at again
	open                    // still running, stuck, or failed to examine
	deferred                // not examined: the run's row budget is spent
)

// lateManifest bounds how long after its id was issued a batch's manifest may
// appear: a submit retried with the same Idempotency-Key finishes the batch
// the key named, for as long as the key lives (24h).
const lateManifest = idempotency.TTL + time.Hour

// renotify retries a finished batch's notifications that failed for a
// reason a retry may fix (a webhook receiver or the Sheets API was down).
func (j *job) renotify(ctx context.Context, id string, sd completion.Standing) error {
	if !sd.Undelivered {
		return nil
	}
	j.rep.renotified.Add(1)
	if j.opts.dryRun {
		return nil
	}
	m, err := j.store.Manifest(ctx, id)
	if err != nil {
		return err
	}
	_, err = j.finisher.RetryNotifications(ctx, m)
	return err
}

// examine looks at one batch and repairs what it can: stuck rows are
// re-enqueued or failed, and a batch whose rows are all final is completed.
func (j *job) examine(ctx context.Context, id string, rowsLeft int) (outcome, error) {
	// A batch whose effects are done for its newest round needs nothing more
	// (a retry may open another round later).
	sd, err := j.finisher.Standing(ctx, id)
	if err != nil {
		return open, err
	}
	if sd.Settled {
		j.rep.batches.Add(1)
		return finished, j.renotify(ctx, id, sd)
	}
	m, err := j.store.Manifest(ctx, id)
	if errors.Is(err, ledger.ErrNotFound) {
		j.rep.batches.Add(1)
		return j.orphan(ctx, id)
	}
	if err != nil {
		return open, err
	}
	if j.rep.rows.Load() > 0 && len(m.Rows) > rowsLeft {
		return deferred, nil
	}
	j.rep.batches.Add(1)
	j.rep.rows.Add(int64(len(m.Rows)))
	rows, err := j.store.Rows(ctx, m)
	if err != nil {
		return open, err
	}
	// The finisher logs the batch id itself: it goes on this run's lines only.
	log := obs.Logger(ctx).With("batchId", id)
	if sd.State.Round > 0 {
		// A retry opened the round running now.
		if rows, err = j.resumeRetry(ctx, log, m, rows); err != nil {
			return open, err
		}
	}

	var mu sync.Mutex
	var errs []error
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for i, r := range rows {
		act, why := verdict(r, m.CreatedAt, j.now, j.policy)
		if act == keep {
			continue
		}
		g.Go(func() error {
			next, err := j.repair(gctx, log, m, r, act, why)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				j.fail(ctx, act.String()+" a row", err, "batchId", id, "row", r.Index)
				return nil
			}
			rows[i] = next
			return nil
		})
	}
	_ = g.Wait()
	if len(errs) > 0 {
		return open, nil // counted and logged already
	}
	for _, r := range rows {
		if !r.Status.Terminal() {
			return open, nil
		}
	}
	// Every row is final but the effects marker is missing: the finisher that
	// saw the last row finish crashed (or never ran). Finish is idempotent.
	if j.opts.dryRun {
		j.rep.completed.Add(1)
		log.Info("housekeeping: would complete the batch (dry run)")
		return finished, nil
	}
	complete, err := j.finisher.Finish(ctx, m)
	if err != nil {
		return open, fmt.Errorf("complete: %w", err)
	}
	if !complete {
		return open, nil // a row is live again after all
	}
	j.rep.completed.Add(1)
	log.Info("housekeeping: completed the batch")
	return finished, nil
}

// repair applies one row's verdict and returns the row as it now stands (in a
// dry run, as it would).
func (j *job) repair(ctx context.Context, log *slog.Logger, m *ledger.Manifest, r ledger.Row, act action, why string) (ledger.Row, error) {
	log = log.With("row", r.Index, "status", r.Status, "attempts", r.Attempts, "reason", why)
	suffix := ""
	if j.opts.dryRun {
		suffix = " (dry run)"
	}
	switch act {
	case requeue:
		task := "(none: dry run)"
		if !j.opts.dryRun {
			// A fresh name: the row's own may stay taken for an hour after its
			// task ran or was dropped, with nothing left to run. If the old task
			// is still waiting for a retry, both may arrive; the lease lets one
			// of them work.
			// The batch's run mode picks the queue, as at submit.
			id, err := j.queue.For(m.RunMode).Requeue(ctx, queue.Task{BatchID: m.BatchID, Row: r.Index})
			if err != nil {
				return r, err
			}
			task = id
		}
		j.rep.requeued.Add(1)
		log.Info("housekeeping: re-enqueued a stuck row"+suffix, "task", task)
		return r, nil
	case giveUp, cancel:
		counter := &j.rep.failed
		if act == cancel {
			counter = &j.rep.cancelled
		}
		if j.opts.dryRun {
			counter.Add(1)
			log.Info("housekeeping: would " + act.String() + " the row (dry run)")
			next := r.Clone()
			next.Status = ledger.Failed // only finality matters to the caller
			return next, nil
		}
		op := ledger.Op{Actor: "housekeeping", RequestID: j.runID, Now: time.Now().UTC()}
		changed := false
		tr := settle(act, m.CreatedAt, op, j.policy)
		next, err := j.store.UpdateRow(ctx, m, r.Index, func(cur ledger.Row) (ledger.Row, error) {
			out, err := tr(cur)
			changed = err == nil
			return out, err
		})
		if err != nil {
			return r, err
		}
		if changed {
			counter.Add(1)
			log.Info("housekeeping: row "+string(next.Status), "error", next.Error)
		}
		return next, nil
	}
	return r, nil
}

// orphan handles a batch prefix without a manifest: what a submit that rolled
// back only partly leaves. Once no retried submit can write the manifest any
// more, the leftovers are deleted.
func (j *job) orphan(ctx context.Context, id string) (outcome, error) {
	t, ok := idTime(id)
	if !ok || j.now.Sub(t) < lateManifest {
		return open, nil
	}
	if !j.opts.dryRun {
		if err := j.store.DeleteBatch(ctx, id); err != nil {
			return open, err
		}
	}
	j.rep.prunedBatches.Add(1)
	obs.Logger(ctx).Info("housekeeping: deleted the leftovers of a batch without manifest", "batchId", id, "issued", t, "dryRun", j.opts.dryRun)
	return finished, nil
}
