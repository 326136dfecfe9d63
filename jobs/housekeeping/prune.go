package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/assetgen/assetgen/shared/batchindex"
	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/idempotency"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/obs"
)

// pruneBatches deletes batches whose manifest is older than the retention,
// oldest first, at most maxBatches per run. The ids tell which batches can be
// that old without reading them; the manifest confirms it.
func (j *job) pruneBatches(ctx context.Context) error {
	cutoff := j.cutoff()
	ids, err := j.listBatches(ctx, "", layout.Batches+idFloor(cutoff))
	if err != nil {
		return err
	}
	var old []string
	for _, id := range ids {
		if t, ok := idTime(id); ok && t.Before(cutoff) && len(old) < j.opts.maxBatches {
			old = append(old, id)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers / 2) // each DeleteBatch runs its own deletes in parallel
	for _, id := range old {
		g.Go(func() error {
			m, err := j.store.Manifest(gctx, id)
			switch {
			case errors.Is(err, ledger.ErrNotFound):
				// Leftovers without a manifest: old enough all the same.
			case err != nil:
				j.fail(ctx, "reading an old manifest", err, "batchId", id)
				return nil
			case !m.CreatedAt.Before(cutoff):
				return nil // a retried submit recorded it after its id was issued
			}
			if !j.opts.dryRun {
				// The batch leaves its owner's list first: a list never shows
				// a batch half deleted. (The lifecycle rule of users/ removes
				// the entries of batches it deletes itself.)
				if m != nil {
					if err := batchindex.New(j.bucket).Remove(gctx, m.Owner, id); err != nil {
						j.fail(ctx, "unlisting an old batch", err, "batchId", id)
						return nil
					}
				}
				if err := j.store.DeleteBatch(gctx, id); err != nil {
					j.fail(ctx, "deleting an old batch", err, "batchId", id)
					return nil
				}
			}
			j.rep.prunedBatches.Add(1)
			obs.Logger(ctx).Info("housekeeping: pruned a batch", "batchId", id, "dryRun", j.opts.dryRun)
			return nil
		})
	}
	return g.Wait()
}

// pruneKeys deletes idempotency records that no longer bind their key (older
// than idempotency.TTL). Each is deleted only if it is still the generation
// that was read and found expired.
func (j *job) pruneKeys(ctx context.Context) error {
	// Record names are hashes: start at a random one and wrap around, so that
	// when there are more records than the bound, live records listed first
	// cannot hide expired ones from every run.
	var b [4]byte
	_, _ = rand.Read(b[:])
	start := layout.Idempotency + hex.EncodeToString(b[:])
	names, _, err := j.listObjects(ctx, layout.Idempotency, start, "", j.opts.maxObjects)
	if err != nil {
		return err
	}
	if len(names) < j.opts.maxObjects {
		more, _, err := j.listObjects(ctx, layout.Idempotency, "", start, j.opts.maxObjects-len(names))
		if err != nil {
			return err
		}
		names = append(names, more...)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for _, name := range names {
		g.Go(func() error {
			var expired atomic.Bool
			gone := func(r idempotency.Record) bool {
				expired.Store(!r.Live(j.now))
				return expired.Load()
			}
			var err error
			if j.opts.dryRun {
				var r idempotency.Record
				if _, err = j.bucket.ReadJSON(gctx, name, &r); err == nil {
					gone(r)
				} else if errors.Is(err, bucket.ErrNotFound) {
					err = nil
				}
			} else {
				err = bucket.DeleteIf(gctx, j.bucket, name, gone)
			}
			if err != nil {
				j.fail(ctx, "pruning an idempotency record", err, "object", name)
				return nil
			}
			if expired.Load() {
				j.rep.prunedKeys.Add(1)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if n := j.rep.prunedKeys.Load(); n > 0 {
		obs.Logger(ctx).Info("housekeeping: pruned idempotency records", "count", n, "dryRun", j.opts.dryRun)
	}
	return nil
}

// pruneBudgets deletes the budget accounts of days before the retention, one
// day prefix at a time, each account only at the generation listed.
func (j *job) pruneBudgets(ctx context.Context) error {
	days, err := j.listDays(ctx, layout.Budgets+budget.Day(j.cutoff()))
	if err != nil {
		return err
	}
	left := j.opts.maxObjects
	for _, day := range days {
		if left <= 0 || ctx.Err() != nil {
			break
		}
		names, gens, err := j.listObjects(ctx, layout.Budgets+day+"/", "", "", left+1)
		if err != nil {
			return err
		}
		whole := len(names) <= left
		if !whole {
			names, gens = names[:left], gens[:left]
		}
		left -= len(names)
		var failed atomic.Int64
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(workers)
		for i, name := range names {
			if j.opts.dryRun {
				break
			}
			g.Go(func() error {
				if err := j.bucket.DeleteAt(gctx, name, gens[i]); err != nil {
					failed.Add(1)
					j.fail(ctx, "deleting an old budget account", err, "object", name)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		// A day counts once every account listed is gone; a day cut short by the
		// bound is finished by the next run.
		if whole && failed.Load() == 0 {
			j.rep.prunedDays.Add(1)
			obs.Logger(ctx).Info("housekeeping: pruned a budget day", "day", day, "accounts", len(names), "dryRun", j.opts.dryRun)
		}
	}
	return nil
}

// listDays lists the days of budgets/<day>/ that sort before end.
func (j *job) listDays(ctx context.Context, end string) ([]string, error) {
	var days []string
	for a, err := range j.bucket.List(ctx, bucket.Query{Prefix: layout.Budgets, Delimiter: "/", EndOffset: end}) {
		if err != nil {
			return nil, fmt.Errorf("list budget days: %w", err)
		}
		day := strings.TrimSuffix(strings.TrimPrefix(a.Prefix, layout.Budgets), "/")
		if _, err := time.Parse(time.DateOnly, day); a.Prefix == "" || err != nil {
			continue // not a day: left alone
		}
		days = append(days, day)
	}
	return days, nil
}

// listObjects lists up to limit object names (and generations) under prefix,
// in [start, end) (empty: unbounded).
func (j *job) listObjects(ctx context.Context, prefix, start, end string, limit int) ([]string, []int64, error) {
	var names []string
	var gens []int64
	if limit <= 0 {
		return nil, nil, nil
	}
	for a, err := range j.bucket.List(ctx, bucket.Query{Prefix: prefix, StartOffset: start, EndOffset: end}) {
		if err != nil {
			return nil, nil, fmt.Errorf("list %s: %w", prefix, err)
		}
		names = append(names, a.Name)
		gens = append(gens, a.Generation)
		if len(names) == limit {
			break
		}
	}
	return names, gens, nil
}
