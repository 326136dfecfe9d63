package ledger_test

import (
	"errors"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/ledger"
)

func variants(ss ...ledger.Status) []ledger.Variant {
	out := make([]ledger.Variant, len(ss))
	for i, s := range ss {
		out[i].Status = s
		if s == ledger.Done {
			out[i].Object, out[i].CostUSD = "img", 0.04
		}
		if s == ledger.Failed {
			out[i].Error = &ledger.Failure{Code: "MODEL_FAILED", Message: "no"}
		}
	}
	return out
}

func TestRetryRow(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC)
	op := ledger.Op{Actor: "retry/u", Now: t0}
	billed := ledger.Row{Index: 1, Status: ledger.Done, Attempts: 3, Version: 4, Variants: variants(ledger.Done, ledger.Failed)}
	billed.Variants[1].CostUSD = 0.04 // a refused answer the model billed
	tests := []struct {
		name     string
		row      ledger.Row
		round    int
		noChange bool
		statuses []ledger.Status
		cost     float64
	}{
		{"failed and cancelled variants queue again, done ones stay", ledger.Row{Index: 0, Status: ledger.Cancelled, CancelRequested: true, Attempts: 2,
			Variants: variants(ledger.Done, ledger.Failed, ledger.Cancelled)}, 1, false, []ledger.Status{ledger.Done, ledger.Queued, ledger.Queued}, 0.04},
		{"a billed failure stays counted", billed, 1, false, []ledger.Status{ledger.Done, ledger.Queued}, 0.08},
		{"nothing to re-run", ledger.Row{Status: ledger.Done, Variants: variants(ledger.Done)}, 1, true, []ledger.Status{ledger.Done}, 0.04},
		{"reset for the round already", ledger.Row{Status: ledger.Queued, Round: 1, Variants: variants(ledger.Queued)}, 1, true, []ledger.Status{ledger.Queued}, 0},
		{"a row still running", ledger.Row{Status: ledger.Running, Variants: variants(ledger.Failed, ledger.Running)}, 1, true, []ledger.Status{ledger.Failed, ledger.Running}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			before := tt.row.Clone()
			got, err := ledger.RetryRow(tt.row, op, tt.round)
			is.Equal(errors.Is(err, ledger.ErrNoChange), tt.noChange) // whether the row changes
			is.Equal(tt.row, before)                                  // the input is not aliased
			for i, s := range tt.statuses {
				is.Equal(got.Variants[i].Status, s)
			}
			is.Equal(got.CostUSD(), tt.cost) // what the row cost before stays counted
			if tt.noChange {
				return
			}
			is.Equal(got.Status, ledger.Queued)
			is.Equal(got.Round, tt.round)
			is.Equal(got.Attempts, 0)     // the round's attempts start over
			is.True(!got.CancelRequested) // a retried cancel does not stop the round
			is.True(got.Error == nil)     // the last round's failure is history now
			is.Equal(got.Version, before.Version+1)
			last := got.History[len(got.History)-1]
			is.Equal(last.Action, "retry")
			for _, v := range got.Variants {
				if v.Status == ledger.Queued {
					is.True(v.Error == nil) // a queued variant has no error
					is.Equal(v.Object, "")
				}
			}
		})
	}
}

func TestRetryRounds(t *testing.T) {
	is := is.New(t)
	t0 := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC)
	op := func(d time.Duration) ledger.Op { return ledger.Op{Actor: "a", Now: t0.Add(d)} }
	final := []ledger.Row{
		{Index: 0, Status: ledger.Done, Variants: variants(ledger.Done, ledger.Done)},
		{Index: 1, Status: ledger.Cancelled, Variants: variants(ledger.Done, ledger.Cancelled)},
		{Index: 2, Status: ledger.Failed, Variants: variants(ledger.Failed)},
	}
	finished, err := ledger.FinishBatch(nil, "b", final, op(0))
	is.NoErr(err)
	is.True(finished.CancelRequested)

	// Only a finished batch can be retried.
	_, err = ledger.RetryBatch(nil, "b", ledger.Retry{}, op(time.Second))
	is.True(errors.Is(err, ledger.ErrNotFinished))
	started, _ := ledger.StartBatch(nil, "b", 0, op(0))
	_, err = ledger.RetryBatch(&started, "b", ledger.Retry{}, op(time.Second))
	is.True(errors.Is(err, ledger.ErrNotFinished))
	allDone, _ := ledger.FinishBatch(nil, "b", final[:1], op(0))
	_, err = ledger.RetryBatch(&allDone, "b", ledger.Retry{}, op(time.Second))
	is.True(errors.Is(err, ledger.ErrNothingToRetry))

	retried, err := ledger.RetryBatch(&finished, "b", ledger.Retry{Reservation: "b-retry-x", BudgetDay: "2026-12-06", EstimateUSD: 0.08}, op(time.Second))
	is.NoErr(err)
	is.Equal(retried.Event, ledger.Retried)
	is.Equal(retried.Status, ledger.Queued)
	is.Equal(retried.Round, 1)
	is.Equal(retried.Retry.Round, 1)
	is.Equal(retried.Retry.Rows, []int{1, 2})
	is.Equal(retried.Retry.Variants, 2)
	is.Equal(retried.Retry.PriorCostUSD, finished.Summary.CostUSD)
	is.Equal(retried.Retry.Reservation, "b-retry-x")
	is.True(!retried.CancelRequested) // the new round is not cancelled
	is.True(!retried.Done())
	is.Equal(retried.Previous, finished.Snapshot)

	// The round starts like a batch, and carries the retry to its end.
	rstart, err := ledger.StartBatch(&retried, "b", 2, op(2*time.Second))
	is.NoErr(err)
	is.Equal(rstart.Round, 1)
	is.Equal(rstart.Retry.Reservation, "b-retry-x")

	// Until the round's rows are reset, their final states are the last
	// round's: the round cannot finish on them.
	_, err = ledger.FinishBatch(&rstart, "b", final, op(3*time.Second))
	is.True(errors.Is(err, ledger.ErrRoundNotBegun))
	rows := append([]ledger.Row(nil), final...)
	for _, i := range retried.Retry.Rows {
		r, err := ledger.RetryRow(rows[i], op(time.Second), retried.Round)
		is.NoErr(err)
		rows[i], err = ledger.Finish(mustStart(t, r, op(2*time.Second)), op(3*time.Second), "h", nil)
		is.NoErr(err)
	}
	done, err := ledger.FinishBatch(&rstart, "b", rows, op(4*time.Second))
	is.NoErr(err)
	is.True(done.Done())
	is.Equal(done.Round, 1)
	is.Equal(done.Retry.Reservation, "b-retry-x")

	// A second retry is the next round.
	again, err := ledger.RetryBatch(&done, "b", ledger.Retry{}, op(5*time.Second))
	is.NoErr(err)
	is.Equal(again.Round, 2)
}

func mustStart(t *testing.T, r ledger.Row, op ledger.Op) ledger.Row {
	t.Helper()
	out, err := ledger.Start(r, op, "h", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRecordVariantsAddsToWhatAVariantCost(t *testing.T) {
	is := is.New(t)
	op := ledger.Op{Actor: "a", Now: time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC)}
	r := ledger.Row{Status: ledger.Running, Lease: &ledger.Lease{Holder: "h", Until: op.Now.Add(time.Minute)}, Variants: []ledger.Variant{{Status: ledger.Running, CostUSD: 0.04}}}
	got, err := ledger.RecordVariants(r, op, "h", []ledger.VariantResult{{Index: 0, Object: "img", CostUSD: 0.04}})
	is.NoErr(err)
	is.Equal(got.Variants[0].CostUSD, 0.08) // the earlier round's billed failure plus this image
}

func TestCostsAreMicroDollars(t *testing.T) {
	is := is.New(t)
	rows := []ledger.Row{{Status: ledger.Done, Variants: []ledger.Variant{{Status: ledger.Done, CostUSD: 0.039}, {Status: ledger.Done, CostUSD: 0.039}, {Status: ledger.Done, CostUSD: 0.039}}}}
	is.Equal(rows[0].CostUSD(), 0.117)              // not 0.11699999999999999
	is.Equal(ledger.Summarize(rows).CostUSD, 0.117) // nor in the totals
}

// A row cancelled while its last variants were made, all of them, stopped
// nothing: once a retry made the rest, the batch reads done.
func TestACancelThatStoppedNothingDoesNotMakeTheBatchCancelled(t *testing.T) {
	is := is.New(t)
	allMade := ledger.Row{Index: 0, Status: ledger.Cancelled, CancelRequested: true, Variants: variants(ledger.Done, ledger.Done)}
	stopped := ledger.Row{Index: 1, Status: ledger.Cancelled, CancelRequested: true, Variants: variants(ledger.Done, ledger.Cancelled)}
	is.Equal(ledger.Summarize([]ledger.Row{allMade, stopped}).Status, ledger.Cancelled) // a variant was stopped
	retried := stopped
	retried.Status, retried.Variants = ledger.Done, variants(ledger.Done, ledger.Done)
	is.Equal(ledger.Summarize([]ledger.Row{allMade, retried}).Status, ledger.Done) // the retry made it: done
}
