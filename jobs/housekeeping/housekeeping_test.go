package main

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/batchindex"
	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/queue"
	"github.com/assetgen/assetgen/shared/urls"
)

// scenario is a bucket with one of every kind of trouble, and a healthy batch.
type scenario struct {
	stuck       *ledger.Manifest // rows: expired lease, never started, out of attempts, cancel pending
	finished    *ledger.Manifest // live, every row final, finisher crashed; budget reserved
	healthy     *ledger.Manifest // a live lease and a fresh queued row
	old         *ledger.Manifest // past retention
	orphan      string           // leftovers of a rolled-back submit, two days old
	young       string           // leftovers younger than an idempotency key's life
	oldKey      string
	freshKey    string
	oldDay      string // a budget day past retention
	healthyGens [2]int64
}

// seed writes the scenario directly into the ledger.
func seed(t *testing.T, s *stack) scenario {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	var sc scenario

	sc.stuck = s.manifest(t, now.Add(-time.Hour), ledger.DryRun, 4)
	s.setRow(t, sc.stuck, 0, running(now.Add(-12*time.Minute), now.Add(-2*time.Minute), 1))
	// row 1 was never started: queued for an hour (no row object at all).
	s.setRow(t, sc.stuck, 2, running(now.Add(-12*time.Minute), now.Add(-time.Minute), maxAttempts))
	s.setRow(t, sc.stuck, 3, func(r *ledger.Row) {
		running(now.Add(-12*time.Minute), now.Add(-time.Minute), 1)(r)
		r.CancelRequested = true
	})

	sc.finished = s.manifest(t, now.Add(-30*time.Minute), ledger.Live, 2)
	if _, _, err := s.budgets.Reserve(ctx, sc.finished.Owner, sc.finished.BudgetDay, sc.finished.BatchID, budget.FromUSD(sc.finished.EstimateUSD)); err != nil {
		t.Fatal(err)
	}
	s.finishRow(t, sc.finished, 0, true)
	s.finishRow(t, sc.finished, 1, false)

	sc.healthy = s.manifest(t, now.Add(-2*time.Minute), ledger.DryRun, 2)
	s.setRow(t, sc.healthy, 0, running(now.Add(-time.Minute), now.Add(10*time.Minute), 1))
	s.setRow(t, sc.healthy, 1, func(r *ledger.Row) { r.UpdatedAt = now.Add(-time.Minute).UTC() }) // queued a minute ago
	_, sc.healthyGens[0] = s.row(t, sc.healthy, 0)
	_, sc.healthyGens[1] = s.row(t, sc.healthy, 1)

	sc.old = s.manifest(t, now.Add(-40*24*time.Hour), ledger.DryRun, 1)
	s.finishRow(t, sc.old, 0, true)
	s.put(t, ledger.ImageObject(sc.old.BatchID, 0, 0, ".png"))

	sc.orphan = idAt(now.Add(-48 * time.Hour))
	s.put(t, ledger.RowObject(sc.orphan, 0))
	sc.young = idAt(now.Add(-time.Hour))
	s.put(t, ledger.RowObject(sc.young, 0))

	sc.oldKey = s.putKey(t, "u", "old", now.Add(-25*time.Hour))
	sc.freshKey = s.putKey(t, "u", "fresh", now.Add(-time.Hour))

	sc.oldDay = budget.Day(now.Add(-40 * 24 * time.Hour))
	if _, _, err := s.budgets.Reserve(ctx, "someone", sc.oldDay, sc.old.BatchID, budget.FromUSD(price)); err != nil {
		t.Fatal(err)
	}
	return sc
}

// wantSummary is what one run over a fresh scenario does: five batches in the
// window (stuck, finished, healthy, and two orphans) with eight rows between
// them; rows 0 and 1 re-enqueued, 2 failed, 3 cancelled; one batch completed;
// the old batch and the old orphan, one key and one budget day pruned.
func wantSummary(dry string) string {
	return "housekeeping: examined 5 batches, 8 rows; re-enqueued 2, failed 1, cancelled 1, completed 1, renotified 0, resumed 0 retries; " +
		"pruned 2 batches, 1 keys, 1 budget days; cleared 0 queued markers; 0 errors (dry run: " + dry + ")"
}

// checkRepaired asserts the state runs (one, several, or concurrent ones)
// leave behind; requeues is how many of them re-enqueued the stuck rows (the
// test's generate does no work, so each run finds them stuck again).
func checkRepaired(t *testing.T, s *stack, sc scenario, requeues int) {
	t.Helper()
	is := is.NewRelaxed(t)

	// Expired lease and never-started row: one delivery per requeue each, for
	// exactly those rows, each under a fresh task name.
	s.settle(t)
	is.Equal(s.delivered(), map[queue.Task]int{rowTask(sc.stuck, 0): requeues, rowTask(sc.stuck, 1): requeues})
	names := s.taskNames()
	is.Equal(len(names), 2*requeues) // every task its own name
	for name := range names {
		is.True(!strings.HasSuffix(name, "-r00") && !strings.HasSuffix(name, "-r01")) // never the rows' own names
	}
	r0, _ := s.row(t, sc.stuck, 0)
	is.Equal(r0.Status, ledger.Running) // a re-enqueued row is left to its next attempt

	// Out of attempts: failed for good, with the reason, once.
	r2, _ := s.row(t, sc.stuck, 2)
	is.Equal(r2.Status, ledger.Failed)
	is.Equal(*r2.Error, ledger.Failure{Code: "MODEL_FAILED", Message: "gave up after 3 attempts"})
	is.Equal(r2.Variants[0].Status, ledger.Failed)
	is.Equal(r2.Lease, nil)
	finishes := 0
	for _, c := range r2.History {
		if c.Actor == "housekeeping" {
			finishes++
			is.Equal(c.Action, "finished")
		}
	}
	is.Equal(finishes, 1) // one audit entry: the transition applied once

	// Cancel pending and its attempt gone: cancelled.
	r3, _ := s.row(t, sc.stuck, 3)
	is.Equal(r3.Status, ledger.Cancelled)
	stuck, err := s.store.Current(context.Background(), sc.stuck.BatchID)
	is.NoErr(err)
	is.True(!stuck.Done()) // rows 0 and 1 still run: not complete

	// Finisher crashed: completed once, settled once.
	fin, err := s.store.Current(context.Background(), sc.finished.BatchID)
	is.NoErr(err)
	is.True(fin.Done())
	is.Equal(s.faults.WritesOf(ledger.StateObject(sc.finished.BatchID))[ledger.StateObject(sc.finished.BatchID)], 1)
	final := ledger.SnapshotObject(sc.finished.BatchID, fin.Snapshot)
	is.Equal(s.faults.WritesOf(final)[final], 1) // the final snapshot, which marks the effects done
	acct := budget.Object(sc.finished.BudgetDay, sc.finished.Owner)
	is.Equal(s.faults.WritesOf(acct)[acct], 1) // the settlement (the reservation was before the counters were reset)
	a := s.account(t, sc.finished)
	is.Equal(a.Spent[sc.finished.BatchID], budget.FromUSD(price)) // one image made, charged once
	is.Equal(len(a.Reserved), 0)

	// Healthy: untouched.
	h0, g0 := s.row(t, sc.healthy, 0)
	_, g1 := s.row(t, sc.healthy, 1)
	is.Equal(h0.Status, ledger.Running)
	is.Equal([2]int64{g0, g1}, sc.healthyGens)
	is.Equal(len(s.faults.WritesOf(ledger.BatchPrefix(sc.healthy.BatchID))), 0)

	finished, err := s.store.Snapshots(context.Background(), sc.finished.BatchID)
	is.NoErr(err)
	is.Equal(len(finished), 2) // accepted, and finished by the run
	// Pruned: the old batch whole, its snapshots too, the old orphan, the old
	// key, the old day.
	is.Equal(len(s.objects(t, ledger.BatchPrefix(sc.old.BatchID))), 0)
	is.True(!s.exists(t, batchindex.Object(sc.old.Owner, sc.old.BatchID)))        // and its entry in its owner's list
	is.True(s.exists(t, batchindex.Object(sc.healthy.Owner, sc.healthy.BatchID))) // a kept batch stays listed
	is.Equal(len(s.objects(t, ledger.BatchPrefix(sc.orphan))), 0)
	is.Equal(len(s.objects(t, ledger.BatchPrefix(sc.young))), 1) // a retried submit may still claim it
	is.True(!s.exists(t, sc.oldKey))
	is.True(s.exists(t, sc.freshKey))
	is.Equal(len(s.objects(t, "budgets/"+sc.oldDay+"/")), 0)
	is.True(s.exists(t, acct)) // today's account stays
}

func TestRunRepairsAndPrunes(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newStack(t)
	sc := seed(t, s)
	s.faults.Reset()

	summary, out, err := s.run(t)
	is.NoErr(err) // the run succeeds
	is.Equal(summary, wantSummary("no"))
	is.True(strings.HasSuffix(strings.TrimSpace(out), summary)) // the summary is the last line
	checkRepaired(t, s, sc, 1)

	// A second run finds the re-enqueued rows still unclaimed (this generate
	// does no work) and re-enqueues them again, under new names; the rest
	// stays as the first run left it.
	before := s.tasks.Stats()
	summary, _, err = s.run(t)
	is.NoErr(err)
	is.Equal(summary, "housekeeping: examined 4 batches, 6 rows; re-enqueued 2, failed 0, cancelled 0, completed 0, renotified 0, resumed 0 retries; "+
		"pruned 0 batches, 0 keys, 0 budget days; cleared 0 queued markers; 0 errors (dry run: no)")
	after := s.tasks.Stats()
	is.Equal(after.Created, before.Created+2)     // two new tasks
	is.Equal(after.Duplicates, before.Duplicates) // no name refused
	checkRepaired(t, s, sc, 2)
}

func TestDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newStack(t)
	sc := seed(t, s)
	s.faults.Reset()

	summary, _, err := s.run(t, "--dry-run")
	is.NoErr(err)
	is.Equal(summary, wantSummary("yes")) // what it would do
	c := s.faults.Counts()
	is.Equal(c.Writes, int64(0))  // nothing written
	is.Equal(c.Deletes, int64(0)) // nothing deleted
	s.settle(t)
	is.Equal(s.tasks.Stats().Created+s.tasks.Stats().Duplicates, int64(0)) // nothing enqueued
	is.Equal(len(s.delivered()), 0)
	is.True(s.exists(t, ledger.ManifestObject(sc.old.BatchID)))
	is.True(s.exists(t, sc.oldKey))

	summary, _, err = s.run(t)
	is.NoErr(err)
	is.Equal(summary, wantSummary("no")) // and then does exactly that
	checkRepaired(t, s, sc, 1)
}

// Two runs at once (a slow run overlapping the next schedule) leave the state
// one run leaves, but for a task per run for each stuck row (the lease keeps
// them from both working): one final marker, one settlement, one failure
// entry.
func TestConcurrentRunsAgree(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newStack(t)
	sc := seed(t, s)
	s.faults.Reset()

	var wg sync.WaitGroup
	errs := make([]error, 2)
	start := make(chan struct{})
	for i := range errs {
		wg.Go(func() {
			<-start
			_, out, err := s.run(t)
			if err != nil {
				t.Logf("run %d: %v\n%s", i, err, out)
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		is.NoErr(err)
	}
	checkRepaired(t, s, sc, 2)
	st := s.tasks.Stats()
	is.Equal(st.Created, int64(4)) // each run requeued each stuck row
}

// --max-batches bounds each run, and the next run carries on where the last
// stopped, so no batch is starved.
func TestMaxBatchesBoundAndCarriesOn(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newStack(t)
	now := time.Now()
	var ms []*ledger.Manifest // oldest first
	for i := range 5 {
		ms = append(ms, s.manifest(t, now.Add(-time.Hour+time.Duration(i)*time.Minute), ledger.DryRun, 1))
	}
	task := func(i int) queue.Task { return rowTask(ms[i], 0) }
	want := "housekeeping: examined 2 batches, 2 rows; re-enqueued 2, failed 0, cancelled 0, completed 0, renotified 0, resumed 0 retries; " +
		"pruned 0 batches, 0 keys, 0 budget days; cleared 0 queued markers; 0 errors (dry run: no)"

	summary, _, err := s.run(t, "--max-batches=2")
	is.NoErr(err)
	is.Equal(summary, want)
	s.settle(t)
	is.Equal(s.delivered(), map[queue.Task]int{task(4): 1, task(3): 1}) // the newest first

	summary, _, err = s.run(t, "--max-batches=2")
	is.NoErr(err)
	is.Equal(summary, want)
	s.settle(t)
	is.Equal(s.delivered(), map[queue.Task]int{task(4): 1, task(3): 1, task(2): 1, task(1): 1}) // then the next

	// The last one ends the pass; the next pass starts again at the newest.
	summary, _, err = s.run(t, "--max-batches=2")
	is.NoErr(err)
	is.Equal(summary, want)
	s.settle(t)
	is.Equal(s.delivered(), map[queue.Task]int{task(4): 2, task(3): 1, task(2): 1, task(1): 1, task(0): 1}) // the newest again
	is.Equal(s.tasks.Stats().Duplicates, int64(0))                                                          // under a fresh name
}

// --max-rows bounds the rows read: a batch that would go over waits for the
// next run.
func TestMaxRowsBound(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newStack(t)
	now := time.Now()
	for i := range 3 {
		s.manifest(t, now.Add(-time.Hour+time.Duration(i)*time.Minute), ledger.DryRun, 2)
	}
	summary, _, err := s.run(t, "--max-rows=3")
	is.NoErr(err)
	is.Equal(summary, "housekeeping: examined 1 batches, 2 rows; re-enqueued 2, failed 0, cancelled 0, completed 0, renotified 0, resumed 0 retries; "+
		"pruned 0 batches, 0 keys, 0 budget days; cleared 0 queued markers; 0 errors (dry run: no)")
	summary, _, err = s.run(t, "--max-rows=4")
	is.NoErr(err)
	is.True(strings.HasPrefix(summary, "housekeeping: examined 2 batches, 4 rows; re-enqueued 4,"))
}

// Complete batches stay complete, so once a pass is over the walk starts at the
// oldest unfinished batch (or a day back) instead of the retention horizon.
func TestFloorSkipsCompleteBatches(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newStack(t)
	now := time.Now()
	complete := func(created time.Time) *ledger.Manifest {
		m := s.manifest(t, created, ledger.DryRun, 1)
		s.finishRow(t, m, 0, true)
		s.complete(t, m)
		return m
	}
	complete(now.Add(-10 * 24 * time.Hour))
	complete(now.Add(-5 * 24 * time.Hour))
	complete(now.Add(-time.Hour))

	summary, _, err := s.run(t)
	is.NoErr(err)
	is.True(strings.HasPrefix(summary, "housekeeping: examined 3 batches, 0 rows;"))
	summary, _, err = s.run(t)
	is.NoErr(err)
	is.True(strings.HasPrefix(summary, "housekeeping: examined 1 batches, 0 rows;")) // only the last 25 hours

	// An unfinished batch below the floor's cap holds the floor down until it
	// completes.
	s2 := newStack(t)
	complete2 := func(created time.Time) {
		m := s2.manifest(t, created, ledger.DryRun, 1)
		s2.finishRow(t, m, 0, true)
		s2.complete(t, m)
	}
	complete2(now.Add(-10 * 24 * time.Hour))
	pending := s2.manifest(t, now.Add(-5*24*time.Hour), ledger.DryRun, 1)
	s2.setRow(t, pending, 0, running(now.Add(-time.Minute), now.Add(time.Hour), 1)) // a long, live attempt
	complete2(now.Add(-3 * 24 * time.Hour))
	summary, _, err = s2.run(t)
	is.NoErr(err)
	is.True(strings.HasPrefix(summary, "housekeeping: examined 3 batches, 1 rows;")) // the first pass sees all three
	summary, _, err = s2.run(t)
	is.NoErr(err)
	is.True(strings.HasPrefix(summary, "housekeeping: examined 2 batches, 1 rows;")) // then the pending batch and the one above it
	var c cursor
	_, err = s2.bucket.ReadJSON(context.Background(), layout.CursorObject, &c)
	is.NoErr(err)
	is.Equal(c.Floor, pending.BatchID) // held at the unfinished batch
	is.Equal(c.Pass, nil)              // between passes
}

func TestUsageAndConfigErrors(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newStack(t)

	summary, out, err := s.run(t, "--help")
	is.NoErr(err) // help is not a failure
	is.Equal(summary, "")
	is.True(strings.Contains(out, "-stuck-after"))

	_, _, err = s.run(t, "--max-rows=0")
	is.True(err != nil)
	_, _, err = s.run(t, "extra")
	is.True(err != nil)

	url := s.env["GENERATE_URL"]
	s.env["GENERATE_URL"] = ""
	_, _, err = s.run(t)
	s.env["GENERATE_URL"] = url
	is.True(err != nil && strings.Contains(err.Error(), "GENERATE_URL"))
}

// A run stopped by its context still prints its summary and reports why.
func TestCancelledRunReports(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newStack(t)
	s.manifest(t, time.Now().Add(-time.Hour), ledger.DryRun, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var buf strings.Builder
	err := run(ctx, nil, s.getenv, &buf)
	is.True(err != nil)
	is.True(strings.Contains(buf.String(), "housekeeping: examined 0 batches"))
}

// Failing the last live row makes the batch final: the same run completes it
// and settles its budget for the image it did make.
func TestGivingUpCompletesTheBatch(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newStack(t)
	now := time.Now()
	m := s.manifest(t, now.Add(-time.Hour), ledger.Live, 2)
	_, _, err := s.budgets.Reserve(context.Background(), m.Owner, m.BudgetDay, m.BatchID, budget.FromUSD(m.EstimateUSD))
	is.NoErr(err)
	s.finishRow(t, m, 0, true)
	s.setRow(t, m, 1, running(now.Add(-20*time.Minute), now.Add(-5*time.Minute), maxAttempts))

	summary, _, err := s.run(t)
	is.NoErr(err)
	is.Equal(summary, "housekeeping: examined 1 batches, 2 rows; re-enqueued 0, failed 1, cancelled 0, completed 1, renotified 0, resumed 0 retries; "+
		"pruned 0 batches, 0 keys, 0 budget days; cleared 0 queued markers; 0 errors (dry run: no)")
	final, err := s.store.State(context.Background(), m.BatchID)
	is.NoErr(err)
	is.Equal(final.Summary.Rows.Failed, 1)
	is.Equal(final.Summary.Status, ledger.Done) // one image was made
	is.Equal(final.Rows[1].Error.Message, "gave up after 3 attempts")
	a := s.account(t, m)
	is.Equal(a.Spent[m.BatchID], budget.FromUSD(price)) // charged for the one image only
	is.Equal(len(a.Reserved), 0)
	s.settle(t)
	is.Equal(len(s.delivered()), 0) // nothing was re-enqueued
}

// A cursor that cannot be read does not stop recovery: the run walks from the
// newest batch, reports the error, and leaves the object for an operator.
func TestUnreadableCursorStillRecovers(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newStack(t)
	m := s.manifest(t, time.Now().Add(-time.Hour), ledger.DryRun, 1)
	_, err := s.bucket.Put(context.Background(), layout.CursorObject, []byte("{not json"), bucket.Meta{ContentType: "application/json"})
	is.NoErr(err)

	summary, out, err := s.run(t)
	is.True(err != nil) // the execution shows as failed
	is.True(strings.Contains(out, "reading the cursor failed"))
	is.Equal(summary, "housekeeping: examined 1 batches, 1 rows; re-enqueued 1, failed 0, cancelled 0, completed 0, renotified 0, resumed 0 retries; "+
		"pruned 0 batches, 0 keys, 0 budget days; cleared 0 queued markers; 1 errors (dry run: no)")
	s.settle(t)
	is.Equal(s.delivered(), map[queue.Task]int{rowTask(m, 0): 1}) // the row was recovered all the same
}

// A row whose task ran and was dropped (every attempt failed before the row
// was claimed) holds its deterministic task name for an hour, with nothing
// behind it. Housekeeping requeues the row under a fresh name, and it finishes.
func TestRequeueAfterTheTaskWasDropped(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newStack(t)
	m := s.manifest(t, time.Now().Add(-time.Hour), ledger.DryRun, 1)

	// The submit's task: generate fails it on every attempt, and the queue drops it.
	s.setWork(func(context.Context, queue.Task) int { return http.StatusInternalServerError })
	is.NoErr(s.queue.Enqueue(context.Background(), rowTask(m, 0)))
	s.settle(t)
	is.Equal(s.tasks.Stats().Dropped, int64(1)) // the task is gone
	is.Equal(s.delivered()[rowTask(m, 0)], maxAttempts)

	// Generate works again; housekeeping finds the row queued for an hour.
	s.setWork(func(ctx context.Context, task queue.Task) int {
		op := ledger.Op{Actor: "generate/test", Now: time.Now().UTC()}
		res := ledger.VariantResult{Index: 0, Object: ledger.ImageObject(task.BatchID, task.Row, 0, ".png"), CostUSD: price}
		for _, step := range []func(ledger.Row) (ledger.Row, error){
			func(r ledger.Row) (ledger.Row, error) { return ledger.Start(r, op, "h1", time.Minute) },
			func(r ledger.Row) (ledger.Row, error) {
				return ledger.RecordVariants(r, op, "h1", []ledger.VariantResult{res})
			},
			func(r ledger.Row) (ledger.Row, error) { return ledger.Finish(r, op, "h1", nil) },
		} {
			if _, err := s.store.UpdateRow(ctx, m, task.Row, step); err != nil {
				return http.StatusInternalServerError
			}
		}
		return http.StatusOK
	})
	summary, _, err := s.run(t)
	is.NoErr(err)
	is.True(strings.Contains(summary, "re-enqueued 1,"))
	s.settle(t)
	is.Equal(s.delivered()[rowTask(m, 0)], maxAttempts+1) // the requeued task ran
	is.Equal(s.tasks.Stats().Duplicates, int64(0))        // under a name nobody had used
	r, _ := s.row(t, m, 0)
	is.Equal(r.Status, ledger.Done) // and the row finished
}

// Against `make run` the job finds the local stack's signing key in DATA_DIR,
// as the stack does, without SIGNING_KEY_FILE.
func TestLocalRunFindsTheStacksSigningKey(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newStack(t)
	dataDir := t.TempDir()
	_, err := urls.LoadOrCreateKey(filepath.Join(dataDir, "signing-key.pem"))
	is.NoErr(err)
	delete(s.env, "SIGNING_KEY_FILE")
	_, _, err = s.run(t, "--dry-run")
	is.True(err != nil) // no key anywhere: the job cannot sign
	s.env["DATA_DIR"] = dataDir
	summary, _, err := s.run(t, "--dry-run")
	is.NoErr(err) // the stack's key is found
	is.True(strings.HasPrefix(summary, "housekeeping: examined"))
}
