package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/client"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/queue"
)

// Every task delivered twice, concurrently, on a live batch: one model call and
// one image write per variant, one settlement.
func TestEveryTaskTwiceSettlesOnce(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, faults := liveStack(t, map[string]string{"TASKS_DUPLICATE_DELIVERY": "true"})
	sub := post(t, a.base+"/batch/images", `{"runMode":"live","confirm":"CONFIRM","rows":[
		{"prompt":"a","variants":3},{"prompt":"b","variants":3},{"prompt":"c","variants":3}]}`, nil)
	is.Equal(sub.status, http.StatusAccepted)
	_, _, done := readToDone(t, openStream(t, sub.str("progressUrl"), ""))
	is.Equal(done.VariantCounts.Done, 9)
	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))
	is.True(a.tasks.Stats().Deliveries >= 6) // every task arrived at least twice

	id := sub.str("batchId")
	is.Equal(a.model.Calls(), int64(9)) // the model was paid once per image
	images := faults.WritesOf("batches/" + id + "/images/")
	is.Equal(len(images), 9)
	for name, n := range images {
		is.Equal(n, 1) // each image written once
		_ = name
	}
	st, err := a.platform.Ledger.Current(context.Background(), id)
	is.NoErr(err)
	final := ledger.SnapshotObject(id, st.Snapshot)
	is.Equal(faults.WritesOf(final)[final], 1) // settled once: the final snapshot marks it
	b := get(t, a.base+"/budget", nil)
	is.Equal(b.doc["spentUsd"], 0.351) // 9 × $0.039, charged once
	is.Equal(b.doc["reservedUsd"], 0.0)
}

// A tenth of all storage calls fail with 503 or 429: the client's retry policy
// absorbs them and every batch completes with every image.
func TestStorageFailuresLoseNothing(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	faults := devstack.NewFaults(7)
	a := startApp(t, nil, faults)
	faults.SetFailures(0.10, http.StatusServiceUnavailable, http.StatusTooManyRequests)
	rep, err := client.New(a.base).Exercise(deadline(t, 2*time.Minute), client.Plan{Batches: 3, Rows: 10, Variants: 3})
	is.NoErr(err)                         // every batch completed
	is.Equal(rep.Verified, int64(90))     // with every image
	is.True(faults.Counts().Rejected > 0) // and faults were injected
	for _, id := range rep.BatchIDs {
		assertConsistent(t, a, id)
	}
}

// With Cloud Storage's one-write-per-second-per-object limit enforced, four
// full batches (120 images, 40 rows writing at once) complete and no row loses
// an update. The 300-image load runs as a benchmark and in `make load`; here
// the scale is what the property needs, so the test stays fast on a busy
// machine under the race detector.
func TestWriteLimitLosesNothing(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	faults := devstack.NewFaults(3)
	a := startApp(t, nil, faults)
	faults.SetWriteLimit(time.Second)
	rep, err := client.New(a.base).Exercise(deadline(t, 6*time.Minute), client.Plan{Batches: 4, Rows: 10, Variants: 3})
	is.NoErr(err)
	is.Equal(rep.Verified, int64(120)) // every image made and served
	for _, id := range rep.BatchIDs {
		assertConsistent(t, a, id)
	}
}

// assertConsistent checks a finished batch's ledger: every row finished once,
// every variant recorded with its image, the history in version order.
func assertConsistent(t *testing.T, a *app, id string) {
	t.Helper()
	is := is.New(t)
	ctx := context.Background()
	m, err := a.platform.Ledger.Manifest(ctx, id)
	is.NoErr(err)
	rows, err := a.platform.Ledger.Rows(ctx, m)
	is.NoErr(err)
	for _, r := range rows {
		is.Equal(r.Status, ledger.Done) // every row done
		finished := 0
		for i, c := range r.History {
			is.Equal(c.Version, i+1) // no version lost or repeated
			if c.Action == "finished" {
				finished++
			}
		}
		is.Equal(finished, 1) // finished exactly once
		for v, variant := range r.Variants {
			is.Equal(variant.Status, ledger.Done)
			is.Equal(variant.Object, ledger.ImageObject(id, r.Index, v, ".png")) // at its deterministic name
		}
	}
	// The stream says done once every row is final; state.json is written
	// by the delivery that finished the last row, which may still be
	// answering (or be retried after a storage fault). Once the queue is idle,
	// every delivery has ended.
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	is.NoErr(a.tasks.WaitIdle(wctx)) // every delivery answered
	final, err := a.platform.Ledger.State(ctx, id)
	is.NoErr(err) // state.json written
	is.Equal(final.Summary.Status, ledger.Done)
}

// Generate died after storing an image and before recording it: the next
// attempt takes over the expired lease, records the stored image without
// asking the model again, and finishes the row.
func TestCrashAfterImageWrite(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, _ := liveStack(t, nil)
	ctx := context.Background()
	m := &ledger.Manifest{Schema: 1, BatchID: batch.NewID(), Owner: "local", RunMode: ledger.Live, Model: "gemini-2.5-flash-image",
		CreatedAt: time.Now().UTC(), PriceUSD: 0.039, Rows: []ledger.ManifestRow{{Index: 0, Prompt: "crash test", Variants: 3, AspectRatio: "1:1"}}}
	is.NoErr(a.platform.Ledger.CreateManifest(ctx, m))
	// The dead attempt: it claimed the row an hour ago and stored variant 1.
	dead := ledger.Op{Actor: "generate/dead", Now: time.Now().Add(-time.Hour)}
	_, err := a.platform.Ledger.UpdateRow(ctx, m, 0, func(r ledger.Row) (ledger.Row, error) {
		return ledger.Start(r, dead, "dead", 10*time.Minute)
	})
	is.NoErr(err)
	stored := ledger.ImageObject(m.BatchID, 0, 1, ".png")
	_, err = a.platform.Ledger.PutImage(ctx, stored, "image/png", pngOf(t, 99))
	is.NoErr(err)

	// Cloud Tasks retries the task.
	body, _ := json.Marshal(queue.Task{BatchID: m.BatchID, Row: 0})
	req, _ := http.NewRequest(http.MethodPost, a.base+"/tasks/generate", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CloudTasks-QueueName", "generate")
	req.Header.Set("X-CloudTasks-TaskRetryCount", strconv.Itoa(1))
	resp, err := http.DefaultClient.Do(req)
	is.NoErr(err)
	resp.Body.Close()
	is.Equal(resp.StatusCode, http.StatusOK) // the retry completes the row

	row, _, err := a.platform.Ledger.ReadRow(ctx, m, 0)
	is.NoErr(err)
	is.Equal(row.Status, ledger.Done)
	is.Equal(row.Attempts, 2)                // the dead attempt and the retry
	is.Equal(row.Variants[1].Object, stored) // the stored image is recorded
	is.Equal(a.model.Calls(), int64(2))      // the model made only the two missing variants
	is.True(strings.Contains(row.History[1].Detail, "took over an expired lease"))
	b, err := a.platform.Ledger.ReadObject(ctx, stored)
	is.NoErr(err)
	is.Equal(b, pngOf(t, 99)) // the stored image was not overwritten
}

// A live attempt holds its lease: a concurrent delivery is refused with
// ROW_LEASED (Cloud Tasks retries it) instead of running the row twice.
func TestLiveLeaseRefusesSecondAttempt(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, _ := liveStack(t, nil)
	ctx := context.Background()
	m := &ledger.Manifest{Schema: 1, BatchID: batch.NewID(), Owner: "local", RunMode: ledger.DryRun, Model: "gemini-2.5-flash-image",
		CreatedAt: time.Now().UTC(), Rows: []ledger.ManifestRow{{Index: 0, Prompt: "busy", Variants: 1, AspectRatio: "1:1"}}}
	is.NoErr(a.platform.Ledger.CreateManifest(ctx, m))
	_, err := a.platform.Ledger.UpdateRow(ctx, m, 0, func(r ledger.Row) (ledger.Row, error) {
		return ledger.Start(r, ledger.Op{Actor: "generate/other", Now: time.Now()}, "other", 10*time.Minute)
	})
	is.NoErr(err)
	body, _ := json.Marshal(queue.Task{BatchID: m.BatchID, Row: 0})
	ans := post(t, a.base+"/tasks/generate", string(body), map[string]string{"X-CloudTasks-QueueName": "generate"})
	is.Equal(ans.status, http.StatusConflict) // another attempt works on the row
	is.Equal(ans.str("code"), "ROW_LEASED")
}

func TestHistoryIsAnOrderedAuditTrail(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, _ := liveStack(t, nil)
	sub := post(t, a.base+"/batch/images", `{"runMode":"live","confirm":"CONFIRM","rows":[{"prompt":"a","variants":2},{"prompt":"b"}]}`,
		map[string]string{"X-Request-Id": "trace-me-123"})
	is.Equal(sub.status, http.StatusAccepted)
	readToDone(t, openStream(t, sub.str("progressUrl"), ""))
	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))

	h := get(t, sub.str("statusUrl")+"/history", nil)
	is.Equal(h.status, http.StatusOK)
	entries := h.doc["entries"].([]any)
	first := entries[0].(map[string]any)
	is.Equal(first["action"], "submitted")       // the trail starts at submit
	is.Equal(first["requestId"], "trace-me-123") // under the caller's request id
	var actions []string
	prev := ""
	for _, e := range entries {
		e := e.(map[string]any)
		at := e["at"].(string)
		is.True(prev <= at) // oldest first
		prev = at
		actions = append(actions, e["action"].(string))
		if _, isRow := e["row"]; isRow {
			is.Equal(e["requestId"], "trace-me-123") // the submit's request id reached every row change
		}
	}
	joined := strings.Join(actions, ",")
	for _, want := range []string{"started", "variants", "finished", "settled"} {
		is.True(strings.Contains(joined, want)) // every kind of change is there
	}
}
