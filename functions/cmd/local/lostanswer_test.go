package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/queue"
)

// pollUntil checks cond every few milliseconds until it holds, failing the
// test when ctx ends first.
func pollUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// liveManifest records a live batch of one row with variants images, without
// queueing its task: the test delivers it itself.
func liveManifest(t *testing.T, a *app, prompt string, variants int) *ledger.Manifest {
	t.Helper()
	m := &ledger.Manifest{Schema: 1, BatchID: batch.NewID(), Owner: "local", RunMode: ledger.Live, Model: "gemini-2.5-flash-image",
		CreatedAt: time.Now().UTC(), PriceUSD: 0.039,
		Rows: []ledger.ManifestRow{{Index: 0, Prompt: prompt, Variants: variants, AspectRatio: "1:1"}}}
	if err := a.platform.Ledger.CreateManifest(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	return m
}

// deliver posts the row task to generate as Cloud Tasks does, within ctx.
func deliver(ctx context.Context, a *app, m *ledger.Manifest) (answer, error) {
	body, _ := json.Marshal(queue.Task{BatchID: m.BatchID, Row: 0})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"/tasks/generate", strings.NewReader(string(body)))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CloudTasks-QueueName", "generate")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	out := answer{status: resp.StatusCode, header: resp.Header}
	err = json.NewDecoder(resp.Body).Decode(&out.doc)
	return out, err
}

// countActions tallies a row's audit trail by action.
func countActions(r ledger.Row) map[string]int {
	n := map[string]int{}
	for _, c := range r.History {
		n[c.Action]++
	}
	return n
}

// Every write of a live batch lands but loses its answer, so the storage
// client retries it and meets its own object (412): the budget reservation,
// the manifest, every row write, every image, state.json, the effects claim
// and the effects marker. Each is decided as this writer's, never as a lost
// race: no row counts its attempt twice, the batch settles at once (not
// after the effects claim goes stale), and the charge is exactly the images
// the model made.
func TestLostAnswersEverywhereChargeOnce(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, faults := liveStack(t, nil)
	faults.LoseAnswers("", 1_000_000)
	sub := post(t, a.base+"/batch/images", `{"runMode":"live","confirm":"CONFIRM","rows":[{"prompt":"a","variants":2},{"prompt":"b","variants":2}]}`, nil)
	is.Equal(sub.status, http.StatusAccepted) // accepted although every answer was lost
	_, _, done := readToDone(t, streamWithin(t, sub.str("progressUrl"), time.Minute))
	is.Equal(done.VariantCounts.Done, 4) // every image made
	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))

	ctx := context.Background()
	id := sub.str("batchId")
	m, err := a.platform.Ledger.Manifest(ctx, id)
	is.NoErr(err)
	rows, err := a.platform.Ledger.Rows(ctx, m)
	is.NoErr(err)
	for _, r := range rows {
		is.Equal(r.Status, ledger.Done) // every row done
		is.Equal(r.Attempts, 1)         // each attempt counted once
		acts := countActions(r)
		is.Equal(acts["started"], 1)  // started once
		is.Equal(acts["finished"], 1) // finished once
		for i, c := range r.History {
			is.Equal(c.Version, i+1) // no write applied twice
		}
	}
	f, err := a.platform.Finisher()
	is.NoErr(err)
	sd, err := f.Standing(ctx, id)
	is.NoErr(err)
	is.True(sd.Settled)                 // the effects ran at once
	is.Equal(a.model.Calls(), int64(4)) // the model made four images
	b := get(t, a.base+"/budget", nil)
	is.Equal(b.doc["spentUsd"], 0.156)         // and exactly those were charged
	is.Equal(b.doc["reservedUsd"], 0.0)        // nothing stays reserved
	is.True(faults.Counts().LostAnswers >= 12) // answers were lost throughout
}

// A Start whose write landed but whose answer was lost counts one attempt: the
// retried write meets the row already started by this attempt.
func TestStartWhoseAnswerIsLostCountsOneAttempt(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, faults := liveStack(t, nil)
	m := liveManifest(t, a, "lost start", 1)
	faults.LoseAnswers(ledger.RowObject(m.BatchID, 0), 1) // the row's first write is the Start
	ans, err := deliver(deadline(t, 30*time.Second), a, m)
	is.NoErr(err)
	is.Equal(ans.status, http.StatusOK) // the attempt finished the row
	row, _, err := a.platform.Ledger.ReadRow(context.Background(), m, 0)
	is.NoErr(err)
	is.Equal(faults.Counts().LostAnswers, int64(1)) // the Start's answer was lost
	is.Equal(row.Status, ledger.Done)
	is.Equal(row.Attempts, 1)                    // one attempt, counted once
	is.Equal(countActions(row)["started"], 1)    // one start in the trail
	is.Equal(row.History[0].Detail, "attempt 1") // that one
}

// Attempt A starts the row and its lease runs out while its model call is in
// flight; attempt B takes the row over. A's late result is refused: A stops,
// answers 200 (a retry of it would only run the row again), and B's result is
// the row's.
func TestStaleAttemptIsSuperseded(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, _ := liveStack(t, map[string]string{"LOCAL_FAKE_MODEL_DELAY": "2s", "ROW_LEASE": "1ms"})
	m := liveManifest(t, a, "contested", 1)
	ctx := deadline(t, time.Minute)

	answers := make(chan answer, 2)
	var wg sync.WaitGroup
	send := func() {
		wg.Go(func() {
			ans, err := deliver(ctx, a, m)
			if err != nil {
				t.Error(err)
			}
			answers <- ans
		})
	}
	send() // A
	pollUntil(t, ctx, "attempt A's model call", func() bool { return a.model.Calls() == 1 })
	send() // B, after A's lease (1 ms) expired
	wg.Wait()
	close(answers)
	outcomes := map[string]int{}
	for ans := range answers {
		is.Equal(ans.status, http.StatusOK) // neither delivery asks for a retry
		outcome, _, _ := strings.Cut(ans.str("outcome"), ":")
		outcomes[outcome]++
	}
	is.Equal(outcomes, map[string]int{"superseded": 1, "finished": 1}) // A stood down, B finished

	row, _, err := a.platform.Ledger.ReadRow(context.Background(), m, 0)
	is.NoErr(err)
	is.Equal(row.Status, ledger.Done)
	is.Equal(row.Attempts, 2)
	is.Equal(row.Variants[0].Object, ledger.ImageObject(m.BatchID, 0, 0, ".png"))
	is.Equal(a.model.Calls(), int64(2)) // A made no further call
	var starts []ledger.Change
	for _, c := range row.History {
		if c.Action == "started" {
			starts = append(starts, c)
		}
	}
	is.Equal(len(starts), 2) // A's start and B's takeover
	is.True(strings.Contains(starts[1].Detail, "took over an expired lease"))
	for _, c := range row.History {
		if c.Version > starts[1].Version {
			is.Equal(c.Actor, starts[1].Actor) // after the takeover only B wrote
		}
		if c.Actor == starts[0].Actor {
			is.Equal(c.Action, "started") // A wrote nothing but its start
		}
	}
}

// A delivery cancelled while the model works on its image (Cloud Tasks gave up
// on the request, the connection dropped): the image is paid for, so the call
// in flight is finished, the image stored and recorded, and the row finished,
// instead of releasing the row with the paid image lost.
func TestCancelledDeliveryRecordsItsPaidImage(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, _ := liveStack(t, map[string]string{"LOCAL_FAKE_MODEL_DELAY": "1s"})
	m := liveManifest(t, a, "cancelled mid call", 2)
	ctx := deadline(t, time.Minute)

	reqCtx, cancel := context.WithCancel(ctx)
	delivered := make(chan error, 1)
	go func() {
		_, err := deliver(reqCtx, a, m)
		delivered <- err
	}()
	pollUntil(t, ctx, "both model calls", func() bool { return a.model.Calls() == 2 })
	cancel()
	is.True(<-delivered != nil) // the delivery's request was cancelled

	var row ledger.Row
	pollUntil(t, ctx, "the attempt to let the row go", func() bool {
		r, _, err := a.platform.Ledger.ReadRow(ctx, m, 0)
		row = r
		return err == nil && r.Lease == nil
	})
	is.Equal(row.Status, ledger.Done) // the row finished with what was paid for
	for v, variant := range row.Variants {
		is.Equal(variant.Status, ledger.Done)                                 // each image recorded
		is.Equal(variant.Object, ledger.ImageObject(m.BatchID, 0, v, ".png")) // at its name
		_, err := a.platform.Ledger.ReadObject(ctx, variant.Object)
		is.NoErr(err) // and stored
	}
	is.Equal(countActions(row)["retrying"], 0) // never handed back
	is.Equal(a.model.Calls(), int64(2))        // nothing was asked twice
}

// unknownOutcome arms one write whose outcome its writer cannot learn: the
// next write of an object under a prefix lands but its answer is lost, and
// the client's retry of that write (the same write id) fails for good (a 400,
// which is not retried), so the write ends in an error although it landed.
type unknownOutcome struct {
	faults   *devstack.Faults
	mu       sync.Mutex
	armed    bool
	doomed   string // the write id whose retries fail
	rejected int
}

func (u *unknownOutcome) arm(prefix string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.armed = true
	u.faults.LoseAnswers(prefix, 1)
}

func (u *unknownOutcome) retriesRejected() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.rejected
}

var writeIDPattern = regexp.MustCompile(`"` + bucket.WriteIDKey + `":"([0-9a-f]+)"`)

// writeIDOf reads the write id out of an upload's metadata, putting the body back.
func writeIDOf(r *http.Request) string {
	if !strings.HasPrefix(r.URL.Path, "/upload/") {
		return ""
	}
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	m := writeIDPattern.FindSubmatch(body)
	if err != nil || m == nil {
		return ""
	}
	return string(m[1])
}

// wrap sits outside the fault injector, which loses the armed write's answer.
func (u *unknownOutcome) wrap(next http.Handler) http.Handler {
	inner := u.faults.Wrap(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := writeIDOf(r)
		u.mu.Lock()
		if id != "" && id == u.doomed {
			u.rejected++
			u.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":{"code":400,"message":"injected fault: the retry failed for good"}}`)
			return
		}
		u.mu.Unlock()
		lost := u.faults.Counts().LostAnswers
		inner.ServeHTTP(w, r)
		u.mu.Lock()
		defer u.mu.Unlock()
		if u.armed && u.faults.Counts().LostAnswers > lost {
			u.armed, u.doomed = false, id
		}
	})
}

func unknownOutcomeStack(t *testing.T) (*app, *unknownOutcome) {
	u := &unknownOutcome{faults: devstack.NewFaults(1)}
	env := map[string]string{"LOCAL_FAKE_MODEL": "true", "LOCAL_FAKE_MODEL_DELAY": "10ms", "DAILY_BUDGET_USD": "1", "CONFIG_TTL": "0"}
	return startAppWith(t, env, options{wrapGCS: u.wrap}), u
}

// A Start that landed, but whose answer was lost and whose retry failed for
// good, fails the delivery; the row is this attempt's all the same, so it is
// handed back at once rather than held until the lease expires (every retry
// of the task refused as ROW_LEASED meanwhile).
func TestStartWithUnknownOutcomeHandsTheRowBack(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, u := unknownOutcomeStack(t)
	m := liveManifest(t, a, "unknown start", 1)
	u.arm(ledger.RowObject(m.BatchID, 0))
	ans, err := deliver(deadline(t, time.Minute), a, m)
	is.NoErr(err)
	is.True(ans.status >= 500) // the delivery failed: Cloud Tasks retries it
	row, _, err := a.platform.Ledger.ReadRow(context.Background(), m, 0)
	is.NoErr(err)
	is.Equal(row.Attempts, 1)                         // the Start landed
	is.True(row.Lease == nil)                         // but the row was handed back
	is.Equal(countActions(row)["retrying"], 1)        // by the attempt itself
	is.Equal(u.faults.Counts().LostAnswers, int64(1)) // after its answer was lost
	is.Equal(u.retriesRejected(), 1)                  // and its retry failed for good
	is.Equal(a.model.Calls(), int64(0))               // nothing was paid
}

// A final state that landed, but whose answer was lost and whose retry
// failed for good, is the finisher's: it reads state.json back, finds the
// state it wrote there, and runs the effects at once instead of leaving them
// to whoever takes them over once the claim TTL has passed.
func TestFinalStateWithUnknownOutcomeRunsTheEffects(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, u := unknownOutcomeStack(t)
	m := liveManifest(t, a, "unknown final state", 1)
	ctx := deadline(t, time.Minute)
	// The batch has started already, so the next write of state.json is
	// the final one.
	_, _, err := a.platform.Ledger.Advance(ctx, m.BatchID, ledger.Op{Actor: "test"}, func(cur *ledger.State, op ledger.Op) (ledger.State, error) {
		return ledger.StartBatch(cur, m.BatchID, 0, op)
	})
	is.NoErr(err)
	u.arm(ledger.StateObject(m.BatchID))
	ans, err := deliver(ctx, a, m)
	is.NoErr(err)
	is.Equal(ans.status, http.StatusOK) // the row and the batch finished
	is.Equal(u.faults.Counts().LostAnswers, int64(1))
	is.Equal(u.retriesRejected(), 1) // the final state's outcome was unknown to its writer
	st, err := a.platform.Ledger.Current(context.Background(), m.BatchID)
	is.NoErr(err)
	is.True(st.Done())
	snap, err := a.platform.Ledger.Snapshot(context.Background(), m.BatchID, st.Snapshot)
	is.NoErr(err)
	is.True(snap.Settled != nil) // and the effects ran
}
