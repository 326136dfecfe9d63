package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/queue"
)

// resumeRetry finishes what an interrupted retry began. A retry records its
// round in the batch's state, then resets the round's rows and queues them; a
// retry that died in between leaves rows whose final state is the last
// round's, and the round could never finish. Once the round is older than
// the stuck threshold (the retry is surely gone), those rows are reset and
// queued here — or cancelled, when the round was cancelled meanwhile. It
// returns the rows as they now stand.
func (j *job) resumeRetry(ctx context.Context, log *slog.Logger, m *ledger.Manifest, rows []ledger.Row) ([]ledger.Row, error) {
	st, err := j.store.Current(ctx, m.BatchID)
	if errors.Is(err, ledger.ErrNotFound) {
		return rows, nil
	}
	if err != nil {
		return rows, err
	}
	if st.Retry == nil || st.Done() || j.now.Sub(st.At) < j.policy.stuckAfter {
		return rows, nil
	}
	var behind []int
	for _, i := range st.Retry.Rows {
		if i >= 0 && i < len(rows) && rows[i].Round < st.Round {
			behind = append(behind, i)
		}
	}
	if len(behind) == 0 {
		return rows, nil
	}
	j.rep.resumed.Add(1)
	log = log.With("round", st.Round, "rows", behind)
	if j.opts.dryRun {
		log.Info("housekeeping: would resume an interrupted retry (dry run)")
		return rows, nil
	}
	op := ledger.Op{Actor: "housekeeping", RequestID: j.runID, Now: time.Now().UTC()}
	for _, i := range behind {
		next, err := j.store.UpdateRow(ctx, m, i, func(r ledger.Row) (ledger.Row, error) {
			out, err := ledger.RetryRow(r, op, st.Round)
			if err != nil || !st.CancelRequested {
				return out, err
			}
			return ledger.Cancel(out, op)
		})
		if err != nil {
			return rows, err
		}
		rows[i] = next
		if next.Status.Terminal() {
			continue
		}
		if _, err := j.queue.For(m.RunMode).Requeue(ctx, queue.Task{BatchID: m.BatchID, Row: i, Round: st.Round}); err != nil {
			return rows, err
		}
	}
	log.Info("housekeeping: resumed an interrupted retry")
	return rows, nil
}
