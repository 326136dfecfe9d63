package completion_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/cloud"
	"github.com/assetgen/assetgen/shared/completion"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/devstack/stacktest"
	"github.com/assetgen/assetgen/shared/ledger"
)

const price = 0.039

type stack struct {
	c        *cloud.Clients
	faults   *devstack.Faults
	budgets  *budget.Store
	finisher *completion.Finisher
	day      string
}

func open(t *testing.T) *stack {
	t.Helper()
	faults := devstack.NewFaults(1)
	c := stacktest.Open(t, faults)
	budgets := budget.NewStore(c.Bucket, budget.NewLimits(c.Bucket, 10, time.Hour), budget.Total{LimitUSD: 1000, Shards: 4}, 30*time.Second)
	return &stack{c: c, faults: faults, budgets: budgets, finisher: completion.New(c.Ledger, c.Bucket, budgets, completion.Notifier{}), day: budget.Day(time.Now())}
}

// readJSON reads a JSON object of the bucket into v.
func (s *stack) readJSON(ctx context.Context, name string, v any) error {
	_, err := s.c.Bucket.ReadJSON(ctx, name, v)
	return err
}

// manifest records a batch of rows with the given variants each.
func (s *stack) manifest(t *testing.T, mode ledger.RunMode, variants ...int) *ledger.Manifest {
	t.Helper()
	m := &ledger.Manifest{Schema: 1, BatchID: batch.NewID(), Owner: "u", RunMode: mode, Model: "gemini-2.5-flash-image",
		CreatedAt: time.Now().UTC(), PriceUSD: price}
	for i, v := range variants {
		m.Rows = append(m.Rows, ledger.ManifestRow{Index: i, Prompt: fmt.Sprint("prompt ", i), Variants: v, AspectRatio: "1:1"})
	}
	m.EstimateUSD = float64(m.Images()) * price
	if mode == ledger.Live {
		m.BudgetDay = s.day
	}
	if err := s.c.Ledger.CreateManifest(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	return m
}

// finishRow runs a row the way generate does: start, record variants, finish.
// done lists the variants that made an image; the others fail.
func (s *stack) finishRow(t *testing.T, m *ledger.Manifest, row int, cost float64, done ...int) {
	t.Helper()
	ctx := context.Background()
	op := ledger.Op{Actor: "test", Now: time.Now().UTC()}
	var results []ledger.VariantResult
	isDone := map[int]bool{}
	for _, v := range done {
		isDone[v] = true
	}
	for v := range m.Rows[row].Variants {
		if isDone[v] {
			results = append(results, ledger.VariantResult{Index: v, Object: ledger.ImageObject(m.BatchID, row, v, ".png"), CostUSD: cost})
		} else {
			results = append(results, ledger.VariantResult{Index: v, Failure: &ledger.Failure{Code: "IMAGE_BLOCKED", Message: "blocked"}})
		}
	}
	steps := []func(ledger.Row) (ledger.Row, error){
		func(r ledger.Row) (ledger.Row, error) { return ledger.Start(r, op, "attempt-1", time.Minute) },
		func(r ledger.Row) (ledger.Row, error) { return ledger.RecordVariants(r, op, "attempt-1", results) },
		func(r ledger.Row) (ledger.Row, error) { return ledger.Finish(r, op, "attempt-1", nil) },
	}
	for _, step := range steps {
		if _, err := s.c.Ledger.UpdateRow(ctx, m, row, step); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *stack) exists(t *testing.T, name string) bool {
	t.Helper()
	ok, err := s.c.Bucket.Exists(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func (s *stack) final(t *testing.T, m *ledger.Manifest) ledger.Final {
	t.Helper()
	f, err := s.c.Ledger.State(context.Background(), m.BatchID)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (s *stack) writesOf(name string) int { return s.faults.WritesOf(name)[name] }

// settlement reads what the batch's effects did from its final snapshot (nil
// while they are not done).
func (s *stack) settlement(t *testing.T, m *ledger.Manifest) *ledger.Settlement {
	t.Helper()
	ctx := context.Background()
	st, err := s.c.Ledger.Current(ctx, m.BatchID)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.c.Ledger.Snapshot(ctx, m.BatchID, st.Snapshot)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return snap.Settled
}

// finalSnapshot is the name of the batch's final snapshot.
func (s *stack) finalSnapshot(t *testing.T, m *ledger.Manifest) string {
	t.Helper()
	st, err := s.c.Ledger.Current(context.Background(), m.BatchID)
	if err != nil {
		t.Fatal(err)
	}
	return ledger.SnapshotObject(m.BatchID, st.Snapshot)
}

func TestFinishWaitsForEveryRow(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := open(t)
	ctx := context.Background()
	m := s.manifest(t, ledger.DryRun, 1, 1)

	before := s.faults.Counts().Writes
	complete, err := s.finisher.Finish(ctx, m)
	is.NoErr(err)
	is.True(!complete)                         // no row is final
	is.Equal(s.faults.Counts().Writes, before) // and nothing was written
	is.True(!s.exists(t, ledger.StateObject(m.BatchID)))

	s.finishRow(t, m, 0, 0, 0)
	// Row 1 is running: still not complete.
	_, err = s.c.Ledger.UpdateRow(ctx, m, 1, func(r ledger.Row) (ledger.Row, error) {
		return ledger.Start(r, ledger.Op{Actor: "test", Now: time.Now().UTC()}, "attempt-1", time.Minute)
	})
	is.NoErr(err)
	before = s.faults.Counts().Writes
	complete, err = s.finisher.Finish(ctx, m)
	is.NoErr(err)
	is.True(!complete)                         // one row is still running
	is.Equal(s.faults.Counts().Writes, before) // and nothing was written
	is.True(!s.exists(t, ledger.StateObject(m.BatchID)))

	s.finishRow(t, m, 1, 0, 0)
	complete, err = s.finisher.Finish(ctx, m)
	is.NoErr(err)
	is.True(complete) // every row final
	f := s.final(t, m)
	is.Equal(f.BatchID, m.BatchID)
	is.Equal(f.Summary.Status, ledger.Done)
	is.Equal(f.Summary.Rows.Done, 2)
	is.Equal(len(f.Rows), 2)
	is.True(s.settlement(t, m) != nil) // effects ran: the final snapshot says so

	complete, err = s.finisher.Finish(ctx, m)
	is.NoErr(err)
	is.True(complete)                                // still complete
	is.Equal(s.final(t, m).FinishedAt, f.FinishedAt) // the final state is not rewritten
	is.Equal(s.writesOf(ledger.StateObject(m.BatchID)), 1)
	is.Equal(s.writesOf(s.finalSnapshot(t, m)), 1)
	// A batch without notifications writes nothing else to finish: no
	// effects claim, no effects.json.
	is.Equal(len(s.faults.WritesOf(ledger.BatchPrefix(m.BatchID)+"effects")), 0)
}

// reserve holds the batch's estimate, as submit does for a live run.
func (s *stack) reserve(t *testing.T, m *ledger.Manifest) {
	t.Helper()
	_, _, err := s.budgets.Reserve(context.Background(), m.Owner, m.BudgetDay, m.BatchID, budget.FromUSD(m.EstimateUSD))
	if err != nil {
		t.Fatal(err)
	}
}

func (s *stack) account(t *testing.T, m *ledger.Manifest) budget.Account {
	t.Helper()
	a, err := s.budgets.Get(context.Background(), m.Owner, s.day)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// A live batch of 3 images at $0.039 reserves $0.117; two images made, it is
// charged exactly $0.078 and the rest is released, once.
func TestFinishSettlesLiveBudget(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := open(t)
	ctx := context.Background()
	m := s.manifest(t, ledger.Live, 2, 1)
	s.reserve(t, m)
	a := s.account(t, m)
	is.Equal(a.Reserved[m.BatchID], budget.Micros(117_000)) // 3 × $0.039 held

	s.finishRow(t, m, 0, price, 0, 1) // both variants made
	s.finishRow(t, m, 1, price)       // its one variant failed
	complete, err := s.finisher.Finish(ctx, m)
	is.NoErr(err)
	is.True(complete)

	a = s.account(t, m)
	is.Equal(a.Spent[m.BatchID], budget.Micros(78_000)) // charged exactly $0.078
	_, held := a.Reserved[m.BatchID]
	is.True(!held)                                 // nothing still reserved
	is.Equal(a.Sum().Spent, budget.Micros(78_000)) // and nothing else charged
	is.Equal(a.Sum().Remaining, budget.FromUSD(10)-78_000)

	is.Equal(budget.FromUSD(s.settlement(t, m).ChargedUSD), budget.Micros(78_000)) // the final snapshot says so

	acct := budget.Object(s.day, m.Owner)
	writes := s.writesOf(acct)
	is.Equal(writes, 2) // one reservation, one settlement
	complete, err = s.finisher.Finish(ctx, m)
	is.NoErr(err)
	is.True(complete)
	is.Equal(s.account(t, m), a)       // a second finish changes nothing
	is.Equal(s.writesOf(acct), writes) // and writes nothing to the account
	is.Equal(s.writesOf(s.finalSnapshot(t, m)), 1)
}

// A live batch that made no image is charged nothing; its reservation is freed.
func TestFinishFailedLiveBatchChargesNothing(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := open(t)
	ctx := context.Background()
	m := s.manifest(t, ledger.Live, 2)
	s.reserve(t, m)
	s.finishRow(t, m, 0, price) // every variant failed
	complete, err := s.finisher.Finish(ctx, m)
	is.NoErr(err)
	is.True(complete)
	is.Equal(s.final(t, m).Summary.Status, ledger.Failed)
	a := s.account(t, m)
	spent, settled := a.Spent[m.BatchID]
	is.True(settled)                                // settled…
	is.Equal(spent, budget.Micros(0))               // …at nothing
	is.Equal(a.Sum().Remaining, budget.FromUSD(10)) // the whole budget is free again
}

// tornRead reports an artifact of the emulator's filesystem backend: it reads an
// object's attributes under its lock but opens the content afterwards, so a read
// racing an overwrite gets the new bytes under the old length and checksum; the
// client reports a bad CRC, or re-requests the old generation, which no longer
// exists (404). Real Cloud Storage serves one generation per read.
func tornRead(err error) bool {
	return errors.Is(err, storage.ErrObjectNotExist) || strings.Contains(err.Error(), "bad CRC on read")
}

// Ten callers finishing the same batch at once — duplicate deliveries, the
// housekeeping job — create the final marker once and settle once.
func TestConcurrentFinishSettlesOnce(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := open(t)
	m := s.manifest(t, ledger.Live, 2, 1)
	s.reserve(t, m)
	s.finishRow(t, m, 0, price, 0, 1)
	s.finishRow(t, m, 1, price)

	const n = 10
	type result struct {
		complete bool
		err      error
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			complete, err := s.finisher.Finish(context.Background(), m)
			results[i] = result{complete, err}
		})
	}
	close(start)
	wg.Wait()
	failed := 0
	for _, r := range results {
		if r.err != nil && tornRead(r.err) {
			// The emulator's filesystem backend can tear a read that races the
			// settlement's overwrite of the account (see tornRead); that caller
			// fails cleanly and the others finish the job.
			failed++
			t.Logf("emulator torn read: %v", r.err)
			continue
		}
		is.NoErr(r.err)     // every caller succeeds
		is.True(r.complete) // and sees the batch complete
	}
	is.True(failed <= 2)                                                                    // (the emulator artifact stays rare)
	is.Equal(s.writesOf(ledger.StateObject(m.BatchID)), 1)                                  // final state written once
	is.Equal(s.writesOf(s.finalSnapshot(t, m)), 1)                                          // final snapshot (the effects' mark) once
	is.Equal(len(s.faults.WritesOf(ledger.BatchPrefix(m.BatchID)+"effects-claim.json")), 0) // the final state's writer owned the effects
	is.Equal(s.writesOf(budget.Object(s.day, m.Owner)), 2)                                  // one reservation, one settlement
	a := s.account(t, m)
	is.Equal(a.Spent[m.BatchID], budget.Micros(78_000)) // charged exactly once
	is.Equal(len(a.Reserved), 0)
	is.Equal(s.final(t, m).Summary.Variants.Done, 2)
}

// A crash between the final state and the effects is repaired by the next
// caller once the finisher had its time (the claim TTL, 5 minutes here):
// before that, the effects are the finisher's.
func TestFinishRepairsMissingEffects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		crashed  time.Duration // how long ago the finisher wrote the final state
		repaired bool
	}{
		{"still the finisher's", 0, false},
		{"taken over", 6 * time.Minute, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			s := open(t)
			ctx := context.Background()
			m := s.manifest(t, ledger.Live, 3)
			s.reserve(t, m)
			s.finishRow(t, m, 0, price, 0, 2)
			rows, err := s.c.Ledger.Rows(ctx, m)
			is.NoErr(err)
			// The first finisher wrote the final state and crashed before the
			// effects.
			op := ledger.Op{Actor: "test", Now: time.Now().Add(-tc.crashed).UTC()}
			st, err := ledger.FinishBatch(nil, m.BatchID, rows, op)
			is.NoErr(err)
			_, err = s.c.Bucket.CreateJSON(ctx, ledger.StateObject(m.BatchID), st)
			is.NoErr(err)
			is.Equal(s.account(t, m).Reserved[m.BatchID], budget.Micros(117_000)) // still held

			complete, err := s.finisher.Finish(ctx, m)
			is.NoErr(err)
			is.True(complete)
			is.Equal(s.writesOf(ledger.StateObject(m.BatchID)), 1) // the final state was not rewritten
			a := s.account(t, m)
			if !tc.repaired {
				is.Equal(a.Reserved[m.BatchID], budget.Micros(117_000))              // left to the finisher
				is.True(!s.exists(t, ledger.SnapshotObject(m.BatchID, st.Snapshot))) // nothing marked
				return
			}
			is.Equal(a.Spent[m.BatchID], budget.Micros(78_000)) // settled from the final state
			is.Equal(len(a.Reserved), 0)
			is.Equal(s.writesOf(ledger.SnapshotObject(m.BatchID, st.Snapshot)), 1)      // its snapshot was written after all
			is.True(s.settlement(t, m) != nil)                                          // carrying the settlement
			is.Equal(s.writesOf(ledger.BatchPrefix(m.BatchID)+"effects-claim.json"), 1) // taken over through a claim
		})
	}
}

// The final state whose write landed but whose answer was lost is this
// finisher's: taken for another's, nobody would settle the batch until the
// claim TTL passed.
func TestFinishWhoseFinalStateAnswerIsLostSettles(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := open(t)
	ctx := context.Background()
	m := s.manifest(t, ledger.Live, 1)
	s.reserve(t, m)
	s.finishRow(t, m, 0, price, 0)
	s.faults.LoseAnswers(ledger.StateObject(m.BatchID), 1)
	complete, err := s.finisher.Finish(ctx, m)
	is.NoErr(err)
	is.True(complete)                                 // finished
	is.Equal(s.faults.Counts().LostAnswers, int64(1)) // though the final state's answer was lost
	is.True(s.settlement(t, m) != nil)                // the effects ran at once
	a := s.account(t, m)
	is.Equal(a.Spent[m.BatchID], budget.Micros(39_000)) // and settled the batch
	is.Equal(len(a.Reserved), 0)
}

// A dry run costs nothing and never touches the budget, even with a budget day.
func TestFinishDryRunNeverTouchesBudget(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := open(t)
	ctx := context.Background()
	m := s.manifest(t, ledger.DryRun, 2, 1)
	m.BudgetDay = s.day // only the run mode gates settlement
	s.finishRow(t, m, 0, 0, 0, 1)
	s.finishRow(t, m, 1, 0, 0)
	complete, err := s.finisher.Finish(ctx, m)
	is.NoErr(err)
	is.True(complete)
	settled := s.settlement(t, m)
	is.True(settled != nil)                              // effects ran
	is.True(!s.exists(t, budget.Object(s.day, m.Owner))) // but no account was written
	is.Equal(len(s.faults.WritesOf("budgets/")), 0)      // nor any budget object
	is.Equal(settled.ChargedUSD, 0.0)                    // nothing charged
}

// Finish reports storage errors instead of guessing.
func TestFinishReportsReadErrors(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := open(t)
	m := s.manifest(t, ledger.DryRun, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	complete, err := s.finisher.Finish(ctx, m)
	is.True(err != nil) // the error surfaces
	is.True(errors.Is(err, context.Canceled))
	is.True(!complete) // and the batch is not reported complete
}

// A batch an older release finished kept its final snapshot with the final
// state, without a settlement, and marked its effects in effects.json. One it
// finished but whose effects it left undone is completed all the same: the
// effects run, and effects.json marks them, since the snapshot cannot.
func TestFinishCompletesABatchAnOlderReleaseFinished(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := open(t)
	ctx := context.Background()
	m := s.manifest(t, ledger.Live, 1)
	s.reserve(t, m)
	s.finishRow(t, m, 0, price, 0)
	rows, err := s.c.Ledger.Rows(ctx, m)
	is.NoErr(err)
	st, err := ledger.FinishBatch(nil, m.BatchID, rows, ledger.Op{Actor: "old", Now: time.Now().Add(-10 * time.Minute).UTC()})
	is.NoErr(err)
	_, err = s.c.Bucket.CreateJSON(ctx, ledger.StateObject(m.BatchID), st)
	is.NoErr(err)
	is.NoErr(s.c.Ledger.KeepSnapshot(ctx, st)) // the old release's final snapshot
	sd, err := s.finisher.Standing(ctx, m.BatchID)
	is.NoErr(err)
	is.True(!sd.Settled) // a snapshot without a settlement marks nothing

	complete, err := s.finisher.Finish(ctx, m)
	is.NoErr(err)
	is.True(complete)
	a := s.account(t, m)
	is.Equal(a.Spent[m.BatchID], budget.Micros(39_000)) // settled
	is.Equal(len(a.Reserved), 0)
	is.True(s.exists(t, ledger.EffectsObject(m.BatchID))) // marked as the old release would
	sd, err = s.finisher.Standing(ctx, m.BatchID)
	is.NoErr(err)
	is.True(sd.Settled) // and recognised as done
	writes := s.writesOf(budget.Object(s.day, m.Owner))
	complete, err = s.finisher.Finish(ctx, m)
	is.NoErr(err)
	is.True(complete)
	is.Equal(s.writesOf(budget.Object(s.day, m.Owner)), writes) // never settled twice
}
