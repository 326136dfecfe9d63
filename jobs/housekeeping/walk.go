package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/obs"
)

// cursor is the walk's memory. Batches are walked newest first in passes; a
// pass that does not fit in one run's bounds is continued by the next run, so
// every batch is looked at even when there are more than one run may examine.
// A batch found complete stays complete, so once a pass is over, the batches
// below the oldest one it found unfinished never need looking at again: that
// is the floor, and later listings start there.
type cursor struct {
	// Floor: every batch whose id sorts below it is complete (or deleted).
	Floor string `json:"floor,omitempty"`
	// Pass in progress, nil between passes.
	Pass *pass `json:"pass,omitempty"`
	// Run and UpdatedAt say who wrote the cursor last; they are the
	// compare-and-swap check of concurrent runs.
	Run       string    `json:"run,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// pass is one walk over the batches from the newest down to the floor.
type pass struct {
	Started time.Time `json:"started"`
	// Top is the newest batch when the pass started; newer ones wait for the
	// next pass.
	Top string `json:"top"`
	// Next is where the pass resumes (inclusive), going down.
	Next string `json:"next"`
	// Open is the oldest batch the pass found unfinished so far.
	Open string `json:"open,omitempty"`
}

// complete ends the pass and raises the floor to the oldest batch the pass found
// unfinished — but never above the ids issued lateManifest before the pass
// started: a batch with an older id can no longer appear (see lateManifest).
func (c *cursor) complete() {
	floor := idFloor(c.Pass.Started.Add(-lateManifest))
	if c.Pass.Open != "" && c.Pass.Open < floor {
		floor = c.Pass.Open
	}
	if floor > c.Floor {
		c.Floor = floor
	}
	c.Pass = nil
}

// recoverBatches walks the unfinished batches newest first within the run's
// bounds and repairs them.
func (j *job) recoverBatches(ctx context.Context) error {
	base, exists, err := j.loadCursor(ctx)
	saved := err == nil
	if err != nil {
		// Recovery matters more than the cursor: walk from the top, report the
		// error, and leave the object for an operator (deleting it resets the walk).
		j.fail(ctx, "reading the cursor", err, "object", layout.CursorObject)
		base, exists = cursor{}, false
	}
	// Batches older than the retention are the pruner's.
	from := max(base.Floor, idFloor(j.cutoff()))
	ids, err := j.listBatches(ctx, layout.Batches+from, "")
	if err != nil {
		return err
	}
	slices.Reverse(ids) // newest first

	c := base
	if base.Pass != nil {
		p := *base.Pass
		c.Pass = &p
	}
	stop := j.walk(ctx, &c, ids)
	obs.Logger(ctx).Info("housekeeping: walk", "listed", len(ids), "floor", c.Floor, "pass", c.Pass, "stoppedEarly", stop)
	if j.opts.dryRun || !saved {
		return nil
	}
	// Save even when the run is being stopped: a fresh context, briefly.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return j.saveCursor(sctx, base, exists, c)
}

// walk runs passes until the bounds are reached or a pass that started in this
// run is complete. It reports whether it stopped on a bound (or a cancelled
// context) rather than having seen everything.
func (j *job) walk(ctx context.Context, c *cursor, ids []string) (stopped bool) {
	// Outcomes of this run: a pass that ends and the next that begins within
	// one run do not examine a batch twice.
	seen := map[string]outcome{}
	startedHere := false
	for {
		if c.Pass == nil {
			if startedHere {
				return false
			}
			top := ""
			if len(ids) > 0 {
				top = ids[0]
			}
			c.Pass = &pass{Started: j.now, Top: top, Next: top}
			startedHere = true
		}
		for _, id := range ids {
			if id > c.Pass.Next || id < c.Floor {
				continue
			}
			o, ok := seen[id]
			if !ok {
				if ctx.Err() != nil || j.rep.batches.Load() >= int64(j.opts.maxBatches) {
					c.Pass.Next = id
					return true
				}
				var err error
				o, err = j.examine(ctx, id, j.opts.maxRows-int(j.rep.rows.Load()))
				if err != nil && ctx.Err() != nil {
					c.Pass.Next = id // cut short: the next run looks at it again
					return true
				}
				if err != nil {
					j.fail(ctx, "examining a batch", err, "batchId", id)
					o = open
				}
				if o == deferred {
					c.Pass.Next = id
					return true
				}
				seen[id] = o
			}
			if o == open && (c.Pass.Open == "" || id < c.Pass.Open) {
				c.Pass.Open = id
			}
		}
		c.complete()
	}
}

// listBatches lists batch ids in [start, end) (object-name offsets; empty is
// unbounded), oldest first: one entry per batch prefix, however many objects
// it holds.
func (j *job) listBatches(ctx context.Context, start, end string) ([]string, error) {
	var ids []string
	for a, err := range j.bucket.List(ctx, bucket.Query{Prefix: layout.Batches, Delimiter: "/", StartOffset: start, EndOffset: end}) {
		if err != nil {
			return nil, fmt.Errorf("list batches: %w", err)
		}
		id := strings.TrimSuffix(strings.TrimPrefix(a.Prefix, layout.Batches), "/")
		if a.Prefix == "" || !batch.ValidID(id) {
			continue // not a batch: nothing the job understands or touches
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func (j *job) loadCursor(ctx context.Context) (cursor, bool, error) {
	var c cursor
	_, err := j.bucket.ReadJSON(ctx, layout.CursorObject, &c)
	if errors.Is(err, bucket.ErrNotFound) {
		return cursor{}, false, nil
	}
	if err != nil {
		return cursor{}, false, fmt.Errorf("read cursor: %w", err)
	}
	return c, true, nil
}

// saveCursor writes next unless another run has moved the cursor since base
// was read: that run walked the same batches, and its cursor is as good.
func (j *job) saveCursor(ctx context.Context, base cursor, baseExists bool, next cursor) error {
	next.Run, next.UpdatedAt = j.runID, time.Now().UTC()
	_, _, err := bucket.Update(ctx, j.bucket, layout.CursorObject, func(cur cursor, exists bool) (cursor, error) {
		if exists != baseExists || cur.Run != base.Run || !cur.UpdatedAt.Equal(base.UpdatedAt) {
			return cur, bucket.ErrNoChange
		}
		return next, nil
	})
	if err != nil {
		return fmt.Errorf("save cursor: %w", err)
	}
	return nil
}
