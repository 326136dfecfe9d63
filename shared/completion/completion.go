// Package completion finishes batches: when every row of a batch is final, one
// caller wins the create-once final marker, and the once-per-batch effects —
// budget settlement first — run until an effects marker says they are done.
// Each effect is idempotent on its own, so a crash anywhere is repaired by the
// next caller: a duplicate task delivery, or the housekeeping job.
package completion

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/metrics"
	"github.com/assetgen/assetgen/shared/obs"
)

// Finisher completes batches.
type Finisher struct {
	store   *ledger.Store
	budgets *budget.Store
	now     func() time.Time
}

// New returns a finisher.
func New(store *ledger.Store, budgets *budget.Store) *Finisher {
	return &Finisher{store: store, budgets: budgets, now: time.Now}
}

// Effects records what the once-per-batch effects did.
type Effects struct {
	At         time.Time `json:"at"`
	ChargedUSD float64   `json:"chargedUsd"`
}

// Finish completes m's batch if every row is final. It returns whether the
// batch is complete (effects included).
func (f *Finisher) Finish(ctx context.Context, m *ledger.Manifest) (bool, error) {
	var final ledger.Final
	err := f.store.ReadJSON(ctx, ledger.StateObject(m.BatchID), &final)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		rows, err := f.store.Rows(ctx, m)
		if err != nil {
			return false, err
		}
		for _, r := range rows {
			if !r.Status.Terminal() {
				return false, nil
			}
		}
		final = ledger.Final{BatchID: m.BatchID, FinishedAt: f.now().UTC(), Summary: ledger.Summarize(rows), Rows: rows}
		created, err := f.store.CreateMarker(ctx, ledger.StateObject(m.BatchID), final)
		if err != nil {
			return false, fmt.Errorf("completion: final marker: %w", err)
		}
		if !created {
			// Another caller finished first; its marker is the truth.
			if err := f.store.ReadJSON(ctx, ledger.StateObject(m.BatchID), &final); err != nil {
				return false, err
			}
		} else {
			count(m, final)
			obs.Logger(ctx).Info("completion: batch finished", "batchId", m.BatchID, "status", final.Summary.Status,
				"images", final.Summary.Variants.Done, "failed", final.Summary.Variants.Failed, "costUsd", final.Summary.CostUSD)
		}
	case err != nil:
		return false, err
	}
	return true, f.effects(ctx, m, final)
}

// count records a finished batch's outcomes, once (by the marker's creator).
func count(m *ledger.Manifest, final ledger.Final) {
	mode := string(m.RunMode)
	metrics.Batches.WithLabelValues(mode, string(final.Summary.Status)).Inc()
	for _, r := range final.Rows {
		metrics.Rows.WithLabelValues(mode, string(r.Status)).Inc()
		for _, v := range r.Variants {
			outcome := string(v.Status)
			if v.Error != nil {
				outcome = v.Error.Code
			}
			metrics.Variants.WithLabelValues(mode, outcome).Inc()
		}
	}
}

// effects runs the once-per-batch effects unless their marker exists.
func (f *Finisher) effects(ctx context.Context, m *ledger.Manifest, final ledger.Final) error {
	done, err := f.store.Exists(ctx, ledger.EffectsObject(m.BatchID))
	if err != nil || done {
		return err
	}
	charged := budget.FromUSD(final.Summary.CostUSD)
	if m.RunMode == batch.Live && m.BudgetDay != "" {
		if _, err := f.budgets.Settle(ctx, m.Owner, m.BudgetDay, m.BatchID, charged); err != nil {
			return fmt.Errorf("completion: settle budget: %w", err)
		}
	}
	_, err = f.store.CreateMarker(ctx, ledger.EffectsObject(m.BatchID), Effects{At: f.now().UTC(), ChargedUSD: charged.USD()})
	return err
}
