package ledger

import (
	"errors"
	"fmt"
	"strings"
)

// A retry re-runs the failed and cancelled variants of a finished batch, under
// the same batch id: a new round. The round's batch-level state records which
// rows it re-runs and how it is paid for; each of those rows is reset for the
// round (RetryRow), and the batch finishes again when they are final.

// Retried: a finished batch was asked to run its failed and cancelled
// variants again.
const Retried Event = "retried"

// Errors of the retry transitions.
var (
	// ErrNotFinished means the batch still runs (or never started): only a
	// finished batch can be retried.
	ErrNotFinished = errors.New("ledger: the batch has not finished")
	// ErrNothingToRetry means no variant of the batch failed or was cancelled.
	ErrNothingToRetry = errors.New("ledger: nothing to retry")
	// ErrRoundNotBegun means a retry round is recorded but some of its rows
	// are not reset yet: their final state is the previous round's.
	ErrRoundNotBegun = errors.New("ledger: the retry round has not reset its rows yet")
)

// Retry is one round of a batch's retries, carried by every state of the
// round so that its completion knows what to settle.
type Retry struct {
	Round int `json:"round"`
	// Rows are the rows the round re-runs; Variants how many images.
	Rows     []int `json:"rows"`
	Variants int   `json:"variants"`
	// EstimateUSD is what the round's images cost at the batch's price.
	EstimateUSD float64 `json:"estimateUsd"`
	// Reservation names the budget reservation holding the estimate (live
	// runs), on BudgetDay: the UTC day the retry was asked for.
	Reservation string `json:"reservation,omitempty"`
	BudgetDay   string `json:"budgetDay,omitempty"`
	// PriorCostUSD is what the batch cost before the round; the round is
	// charged the rest.
	PriorCostUSD float64 `json:"priorCostUsd"`
}

// Retryable reports whether a variant may be run again by a retry.
func (v Variant) Retryable() bool { return v.Status == Failed || v.Status == Cancelled }

// PlanRetry is what a retry of a batch with these final rows re-runs: the
// rows holding a failed or cancelled variant, and how many such variants.
func PlanRetry(rows []Row) (idx []int, variants int) {
	for _, r := range rows {
		n := 0
		for _, v := range r.Variants {
			if v.Retryable() {
				n++
			}
		}
		if n > 0 {
			idx = append(idx, r.Index)
			variants += n
		}
	}
	return idx, variants
}

// RetryBatch opens the next round of a finished batch (cur): the rows to
// re-run come from its final rows; rt says how the round is paid for. A batch
// that has not finished is refused (ErrNotFinished), one with nothing to
// re-run too (ErrNothingToRetry).
func RetryBatch(cur *State, batchID string, rt Retry, op Op) (State, error) {
	if cur == nil || !cur.Done() {
		return State{}, ErrNotFinished
	}
	rt.Rows, rt.Variants = PlanRetry(cur.Rows)
	if rt.Variants == 0 {
		return *cur, ErrNothingToRetry
	}
	if cur.Summary != nil {
		rt.PriorCostUSD = cur.Summary.CostUSD
	}
	s := next(cur, batchID, Retried, op, Queued)
	rt.Round = cur.Round + 1
	s.Round, s.Retry, s.CancelRequested = rt.Round, &rt, false
	return s, nil
}

// roundBegun reports whether every row the current round re-runs has been
// reset for it, so the rows' final states are the round's.
func roundBegun(cur *State, rows []Row) bool {
	if cur == nil || cur.Retry == nil || cur.Done() {
		return true
	}
	for _, i := range cur.Retry.Rows {
		if i < 0 || i >= len(rows) || rows[i].Round < cur.Round {
			return false
		}
	}
	return true
}

// RetryRow resets a final row for the given round: its failed and cancelled
// variants are queued again (what they cost stays counted), its done ones are
// kept, and its attempts start over. A row reset for the round already, or
// with nothing to re-run, is left alone (ErrNoChange).
func RetryRow(r Row, op Op, round int) (Row, error) {
	if r.Round >= round || !r.Status.Terminal() {
		return r, ErrNoChange
	}
	out := r.Clone()
	var again []string
	for i := range out.Variants {
		v := &out.Variants[i]
		if v.Retryable() {
			v.Status, v.Error, v.Object = Queued, nil, ""
			again = append(again, fmt.Sprintf("v%d", i))
		}
	}
	if len(again) == 0 {
		return r, ErrNoChange
	}
	out.Status, out.Attempts, out.Lease, out.CancelRequested, out.Error, out.Round = Queued, 0, nil, false, nil, round
	record(&out, op, "retry", fmt.Sprintf("round %d: %s", round, strings.Join(again, ", ")))
	return out, nil
}
