package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/queue"
)

// A live retry recorded its round (reserving the round's estimate) and died
// before resetting the round's rows; the batch was then cancelled, which
// found no row of the round to stop. Once the round is older than the stuck
// threshold, the job resets the round's rows and cancels them instead of
// queueing them: the round finishes at once, its reservation is released,
// nothing more is charged, and no task runs.
func TestResumesACancelledInterruptedRetry(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	s := newStack(t)
	m := s.manifest(t, time.Now().Add(-2*time.Hour), ledger.Live, 2)
	_, _, err := s.budgets.Reserve(ctx, m.Owner, m.BudgetDay, m.BatchID, budget.FromUSD(m.EstimateUSD))
	is.NoErr(err)
	s.finishRow(t, m, 0, true)
	s.finishRow(t, m, 1, false)
	summary, _, err := s.run(t)
	is.NoErr(err)
	is.True(strings.Contains(summary, "completed 1")) // the first round finished and settled
	final, err := s.store.Current(ctx, m.BatchID)
	is.NoErr(err)
	is.Equal(s.account(t, m).Sum().Spent, budget.FromUSD(price)) // its one image charged

	// The retry's round, as the retry recorded it, then the cancel.
	res := m.BatchID + "-retry-t"
	_, _, err = s.budgets.Reserve(ctx, m.Owner, m.BudgetDay, res, budget.FromUSD(price))
	is.NoErr(err)
	at := time.Now().Add(-time.Hour)
	st, err := ledger.RetryBatch(&final, m.BatchID, ledger.Retry{EstimateUSD: price, Reservation: res, BudgetDay: m.BudgetDay},
		ledger.Op{Actor: "retry/test", Now: at})
	is.NoErr(err)
	st, err = ledger.CancelBatch(&st, m.BatchID, ledger.Op{Actor: "cancel/test", Now: at})
	is.NoErr(err)
	st.At = at
	b, err := json.Marshal(st)
	is.NoErr(err)
	_, err = s.bucket.Put(ctx, ledger.StateObject(m.BatchID), b, bucket.Meta{ContentType: "application/json"})
	is.NoErr(err)
	is.Equal(s.account(t, m).Sum().Reserved, budget.FromUSD(price)) // the round's estimate is held

	summary, _, err = s.run(t)
	is.NoErr(err)
	is.True(strings.Contains(summary, "resumed 1 retries")) // resumed
	is.True(strings.Contains(summary, "completed 1,"))      // and finished in the same run
	is.True(strings.HasSuffix(summary, "0 errors (dry run: no)"))
	row, _ := s.row(t, m, 1)
	is.Equal(row.Round, 1)                 // reset for the round
	is.Equal(row.Status, ledger.Cancelled) // and cancelled, as the round was
	is.Equal(row.Variants[0].Status, ledger.Cancelled)
	done, _ := s.row(t, m, 0)
	is.Equal(done.Round, 0) // the done row is not part of the round
	is.Equal(done.Status, ledger.Done)
	cur, err := s.store.Current(ctx, m.BatchID)
	is.NoErr(err)
	is.True(cur.Done()) // the round finished
	is.Equal(cur.Round, 1)
	is.Equal(cur.Event, ledger.Finished)
	is.Equal(cur.Summary.Rows.Cancelled, 1)
	a := s.account(t, m)
	is.Equal(len(a.Reserved), 0)                   // the round's reservation is released
	is.Equal(a.Sum().Spent, budget.FromUSD(price)) // and nothing more is charged
	is.Equal(a.Spent[res], budget.Micros(0))       // the round made nothing
	s.settle(t)
	is.Equal(s.delivered()[queue.Task{BatchID: m.BatchID, Row: 1, Round: 1}], 0) // no task ran for the round

	// Finished: the next run has nothing to resume.
	summary, _, err = s.run(t)
	is.NoErr(err)
	is.True(strings.Contains(summary, "completed 0,"))
	is.True(strings.Contains(summary, "resumed 0 retries"))
}
