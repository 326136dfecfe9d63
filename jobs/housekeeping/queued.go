package main

import (
	"context"
	"errors"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/assetgen/assetgen/shared/backlog"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/obs"
)

// strandedAfter is how long a queued marker may name a batch without a
// manifest: a submit writes the marker after the manifest, so only a rollback
// whose clear failed leaves one, and a retried submit marks its batch again.
const strandedAfter = 10 * time.Minute

// clearQueued deletes the queued-row markers that no longer stand for an
// unfinished batch: its batch finished (a finisher crashed before clearing
// it, or an earlier attempt's tasks finished the batch before a retried
// submit marked it), its batch is gone, or it is past the horizon, after
// which it no longer counts anyway.
func (j *job) clearQueued(ctx context.Context) error {
	markers := backlog.New(j.bucket)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	err := markers.Walk(ctx, func(mk backlog.Marker) error {
		g.Go(func() error {
			why, err := j.strandedMarker(gctx, mk)
			if err != nil {
				j.fail(ctx, "checking a queued marker", err, "batchId", mk.BatchID)
				return nil
			}
			if why == "" {
				return nil
			}
			if !j.opts.dryRun {
				if err := markers.Remove(gctx, mk); err != nil {
					j.fail(ctx, "removing a queued marker", err, "batchId", mk.BatchID)
					return nil
				}
			}
			j.rep.clearedMarkers.Add(1)
			obs.Logger(ctx).Info("housekeeping: removed a queued marker", "batchId", mk.BatchID, "reason", why, "dryRun", j.opts.dryRun)
			return nil
		})
		return nil
	})
	_ = g.Wait()
	return err
}

// strandedMarker says why mk no longer stands for an unfinished batch, or "".
func (j *job) strandedMarker(ctx context.Context, mk backlog.Marker) (string, error) {
	age := j.now.Sub(mk.Created)
	if age > backlog.Horizon {
		return "past the horizon", nil
	}
	sd, err := j.finisher.Standing(ctx, mk.BatchID)
	if err != nil {
		return "", err
	}
	if sd.Settled {
		return "batch finished", nil
	}
	if age < strandedAfter {
		return "", nil
	}
	_, err = j.store.Manifest(ctx, mk.BatchID)
	if errors.Is(err, ledger.ErrNotFound) {
		return "no such batch", nil
	}
	return "", err
}
