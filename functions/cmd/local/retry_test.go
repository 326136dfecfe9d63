package main

import (
	"context"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/cloudtasks/apiv2/cloudtaskspb"
	"github.com/matryer/is"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/assetgen/assetgen/shared/client"
	"github.com/assetgen/assetgen/shared/ledger"
)

// retryBody is a live batch of four rows of three images ($0.468).
const retryBody = `{"runMode":"live","confirm":"CONFIRM","rows":[
	{"prompt":"a","variants":3},{"prompt":"b","variants":3},{"prompt":"c","variants":3},{"prompt":"d","variants":3}]}`

// interrupted makes a finished live batch with something to retry: its submit
// is interrupted once its first task ran, so that task's row is done (3
// images, $0.117 charged) and the three others are cancelled. The queue is back afterwards.
func interrupted(t *testing.T, p *partialStack) string {
	t.Helper()
	is := is.New(t)
	ctx := deadline(t, time.Minute)
	p.queue.Before(func(_ context.Context, n int, _ *cloudtaskspb.Task) error {
		if n == 1 {
			return nil
		}
		select {
		case <-p.delivered:
		case <-ctx.Done():
		}
		return status.Error(codes.FailedPrecondition, "injected fault: the queue is paused")
	})
	ans := post(t, p.base+"/batch/images", retryBody, nil)
	is.Equal(ans.str("code"), "SUBMIT_INTERRUPTED")
	id := ans.str("batchId")
	final := p.settled(t, id)
	is.Equal(final.Summary.Rows.Cancelled, 3) // three rows to retry
	p.queue.Before(nil)
	return id
}

func spent(t *testing.T, p *partialStack) (spent, reserved float64) {
	t.Helper()
	b := get(t, p.base+"/budget", nil)
	return b.doc["spentUsd"].(float64), b.doc["reservedUsd"].(float64)
}

// A retry re-runs what the batch did not make, under the same id: the done
// row keeps its images and links, the round reserves and is charged exactly
// what it makes, and the history shows it.
func TestRetryRerunsWhatTheBatchDidNotMake(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	p := startPartial(t, map[string]string{"DAILY_BUDGET_USD": "0.5"})
	id := interrupted(t, p)
	status := p.base + "/batch/" + id
	before := get(t, status, nil)
	// The row whose task ran is done (tasks are queued concurrently: any row).
	doneRow := -1
	for i, r := range before.doc["rows"].([]any) {
		if r.(map[string]any)["status"] == "done" {
			doneRow = i
		}
	}
	kept := variantAt(before, doneRow, 0)

	// Live retries spend money: the typed word is required, and nothing is
	// written without it.
	no := post(t, status+"/retry", ``, nil)
	is.Equal(no.status, http.StatusBadRequest)
	is.Equal(no.str("code"), "CONFIRMATION_REQUIRED")
	bad := post(t, status+"/retry", `{"confirm":"CONFIRM","rows":[1]}`, nil)
	is.Equal(bad.str("code"), "VALIDATION_FAILED") // an unknown field is named, not ignored
	cur, err := p.platform.Ledger.Current(context.Background(), id)
	is.NoErr(err)
	is.True(cur.Done()) // still the finished batch

	// A stream of the finished batch has nothing to say (and the progress
	// service has seen the batch finish).
	tok := get(t, status+"/progress-token", nil)
	finished, err := http.Get(tok.str("progressUrl"))
	is.NoErr(err)
	finished.Body.Close()
	is.Equal(finished.StatusCode, http.StatusNoContent)

	ans := post(t, status+"/retry", `{"confirm":"CONFIRM"}`, nil)
	is.Equal(ans.status, http.StatusAccepted)
	is.Equal(ans.str("batchId"), id)       // the same batch
	is.Equal(ans.doc["round"], 1.0)        // its first retry
	is.Equal(ans.str("status"), "running") // unfinished again (the done row stays done)
	is.Equal(ans.header.Get("Location"), status)
	est := ans.doc["estimate"].(map[string]any)
	is.Equal(est["images"], 9.0)    // the nine cancelled variants
	is.Equal(est["costUsd"], 0.351) // at $0.039
	b := ans.doc["budget"].(map[string]any)
	is.Equal(b["reservedUsd"], 0.351) // reserved like a submit
	is.Equal(b["spentUsd"], 0.117)

	_, _, done := readToDone(t, openStream(t, ans.str("progressUrl"), ""))
	is.Equal(done.VariantCounts.Done, 12) // every image of the batch is made now
	is.NoErr(p.tasks.WaitIdle(deadline(t, 30*time.Second)))
	is.Equal(p.model.Calls(), int64(12)) // the done row was not made again
	s, r := spent(t, p)
	is.Equal(math.Round(s*1e6), 468000.0) // charged exactly the twelve images
	is.Equal(r, 0.0)                      // nothing stays reserved

	after := get(t, status, nil)
	is.Equal(after.str("status"), "done")
	made := variantAt(after, doneRow, 0)
	is.Equal(pathOf(t, made["link"]), pathOf(t, kept["link"])) // the same lasting link
	is.Equal(pathOf(t, made["url"]), pathOf(t, kept["url"]))   // to the same image
	cur, err = p.platform.Ledger.Current(context.Background(), id)
	is.NoErr(err)
	is.True(cur.Done())
	is.Equal(cur.Round, 1)
	is.Equal(math.Round(cur.Summary.CostUSD*1e6), 468000.0) // the batch's cost, over both rounds

	events, _ := snapshots(t, p.app, status, id)
	is.Equal(events[len(events)-3:], []string{"retried", "started", "finished"}) // the round's own states
	h := get(t, status+"/history", nil)
	settled := 0
	for _, e := range h.doc["entries"].([]any) {
		if e.(map[string]any)["action"] == "settled" {
			settled++
		}
	}
	is.Equal(settled, 2) // each round's settlement is in the trail

	// Cancelling the finished batch changes nothing (through the Go client).
	c, err := client.New(p.base).Cancel(deadline(t, time.Minute), id)
	is.NoErr(err)
	is.Equal(c.Cancel.Kept, 12) // every image kept
	is.True(c.Cancel.Finished)

	// Everything is made: there is nothing left to retry.
	again := post(t, status+"/retry", `{"confirm":"CONFIRM"}`, nil)
	is.Equal(again.status, http.StatusConflict)
	is.Equal(again.str("code"), "NOTHING_TO_RETRY")
}

// A retry asked twice with one Idempotency-Key runs one round, even when the
// answer of the round's state write is lost; another body is a conflict, and
// a batch still running cannot be retried.
func TestRetryWithAKeyRunsOneRound(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	p := startPartial(t, map[string]string{"DAILY_BUDGET_USD": "0.5"})
	id := interrupted(t, p)
	status := p.base + "/batch/" + id
	key := map[string]string{"Idempotency-Key": "retry-1"}
	created := p.tasks.Stats().Created

	// The round's state lands but its answer is lost: the retry must know
	// the state for its own (before, it read as another round and answered 409).
	p.storage.LoseAnswers(ledger.StateObject(id), 1)
	ans := post(t, status+"/retry", `{"confirm":"CONFIRM"}`, key)
	is.Equal(ans.status, http.StatusAccepted)
	is.Equal(ans.doc["round"], 1.0)

	// While the round runs, the same key answers the same round; another
	// request with it is a conflict; without it, the batch is not finished.
	twice := post(t, status+"/retry", `{"confirm":"CONFIRM"}`, key)
	is.Equal(twice.status, http.StatusAccepted)
	is.Equal(twice.doc["round"], 1.0)
	other := post(t, p.base+"/batch/images", retryBody, key)
	is.Equal(other.status, http.StatusConflict)
	is.Equal(other.str("code"), "IDEMPOTENCY_CONFLICT") // the key names the retry, not a submit
	running := post(t, status+"/retry", `{"confirm":"CONFIRM"}`, nil)
	is.True(running.status == http.StatusConflict)
	is.True(running.str("code") == "BATCH_NOT_FINISHED" || running.str("code") == "NOTHING_TO_RETRY") // finished already on a fast machine

	// The round's tasks were queued before its answer: once they ran, it is
	// complete (a stream opened now may find it finished, 204).
	is.NoErr(p.tasks.WaitIdle(deadline(t, 30*time.Second)))
	is.Equal(p.tasks.Stats().Created-created, int64(3)) // one task per retried row, once
	is.Equal(p.model.Calls(), int64(12))
	s, r := spent(t, p)
	is.Equal(math.Round(s*1e6), 468000.0) // one reservation, settled once
	is.Equal(r, 0.0)
	cur, err := p.platform.Ledger.Current(context.Background(), id)
	is.NoErr(err)
	is.Equal(cur.Round, 1) // one round
	last := post(t, status+"/retry", `{"confirm":"CONFIRM"}`, key)
	is.Equal(last.status, http.StatusAccepted) // the key still answers its round
	is.Equal(last.str("status"), "done")
}

// A retry whose rows cannot all be reset is stopped through the ledger: the
// round finishes cancelled at once, its reservation is released, no task
// runs, and a later retry still works.
func TestInterruptedRetryReleasesItsReservation(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	p := startPartial(t, map[string]string{"DAILY_BUDGET_USD": "0.5"})
	id := interrupted(t, p)
	status := p.base + "/batch/" + id
	created := p.tasks.Stats().Created

	p.storage.RejectWrites(ledger.RowsPrefix(id), 1, http.StatusForbidden)
	ans := post(t, status+"/retry", `{"confirm":"CONFIRM"}`, nil)
	is.Equal(ans.status, http.StatusServiceUnavailable)
	is.Equal(ans.str("code"), "RETRY_INTERRUPTED")
	is.Equal(ans.str("batchId"), id)
	is.True(strings.Contains(ans.str("detail"), "cancelled"))
	is.NoErr(p.tasks.WaitIdle(deadline(t, 30*time.Second)))
	is.Equal(p.tasks.Stats().Created, created) // nothing was queued
	s, r := spent(t, p)
	is.Equal(math.Round(s*1e6), 117000.0) // nothing more charged
	is.Equal(r, 0.0)                      // and the round's reservation released
	cur, err := p.platform.Ledger.Current(context.Background(), id)
	is.NoErr(err)
	is.True(cur.Done()) // the round finished
	is.Equal(cur.Round, 1)
	is.Equal(cur.Summary.Status, ledger.Cancelled)

	// Through the Go client this time.
	again, err := client.New(p.base).Retry(deadline(t, time.Minute), id, client.RetryOptions{Confirm: true})
	is.NoErr(err)
	is.Equal(again.Round, 2)
	is.Equal(again.Estimate.Images, 9) // the round cancelled its nine variants: all run again
	readToDone(t, openStream(t, again.ProgressURL, ""))
	is.NoErr(p.tasks.WaitIdle(deadline(t, 30*time.Second)))
	s, r = spent(t, p)
	is.Equal(math.Round(s*1e6), 468000.0)
	is.Equal(r, 0.0)
}

// variantAt is one variant of a batch view.
func variantAt(a answer, row, variant int) map[string]any {
	return a.doc["rows"].([]any)[row].(map[string]any)["variants"].([]any)[variant].(map[string]any)
}

// pathOf is a URL's path: links carry tokens and signatures that differ on
// every answer.
func pathOf(t *testing.T, v any) string {
	t.Helper()
	s, _ := v.(string)
	u, err := url.Parse(s)
	if err != nil || s == "" {
		t.Fatalf("not a URL: %v", v)
	}
	return u.Path
}
