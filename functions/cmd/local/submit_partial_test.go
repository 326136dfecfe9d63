package main

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/cloudtasks/apiv2/cloudtaskspb"
	"github.com/matryer/is"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/idempotency"
	"github.com/assetgen/assetgen/shared/ledger"
)

// partialStack is a live stack (fake model, $0.039 an image) whose Cloud
// Tasks stand-in answers CreateTask as the test scripts it.
type partialStack struct {
	*app
	storage *devstack.Faults
	queue   *devstack.TaskFaults
	// delivered is closed when the first task delivery has been answered 2xx:
	// its row is then recorded in the ledger, and completion ran for it.
	delivered chan struct{}
}

func startPartial(t *testing.T, env map[string]string) *partialStack {
	t.Helper()
	all := map[string]string{"LOCAL_FAKE_MODEL": "true", "LOCAL_FAKE_MODEL_DELAY": "10ms", "DAILY_BUDGET_USD": "1", "CONFIG_TTL": "0"}
	for k, v := range env {
		all[k] = v
	}
	p := &partialStack{storage: devstack.NewFaults(1), queue: &devstack.TaskFaults{}, delivered: make(chan struct{})}
	var once sync.Once
	deliveries := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil && resp.StatusCode/100 == 2 {
			once.Do(func() { close(p.delivered) })
		}
		return resp, err
	})}
	p.app = startAppWith(t, all, options{wrapGCS: p.storage.Wrap, tasksIntercept: p.queue.Intercept, deliveries: deliveries})
	return p
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// settled checks the money of an interrupted batch once its tasks are done:
// it is complete, every image the model was paid for is stored and charged at
// its price (exactly, in micros), and nothing stays reserved.
func (p *partialStack) settled(t *testing.T, id string) ledger.Final {
	t.Helper()
	is := is.New(t)
	is.NoErr(p.tasks.WaitIdle(deadline(t, 30*time.Second))) // every task ran
	final, err := p.platform.Ledger.State(context.Background(), id)
	is.NoErr(err) // the batch is complete: state.json is written
	calls := p.model.Calls()
	is.Equal(int64(len(objects(t, p.app, "batches/"+id+"/images/"))), calls) // every paid image is stored
	is.Equal(int64(final.Summary.Variants.Done), calls)                      // and recorded as done
	b := get(t, p.base+"/budget", nil)
	is.Equal(math.Round(b.doc["spentUsd"].(float64)*1e6), float64(calls*39000)) // the model's work is charged, exactly
	is.Equal(b.doc["reservedUsd"], 0.0)                                         // the rest is released
	return final
}

// A sibling CreateTask fails after the first task was accepted and had
// already run its row (the model was paid): the submit keeps the batch and
// its reservation, cancels the rest through the ledger, and completion
// charges exactly what was made. A retry with the key gets the same batch.
// (Before, the rollback deleted the batch and released the reservation under
// the running task: the model was paid and nothing was charged, and the retry
// made a second batch.)
func TestInterruptedSubmitChargesWhatItsTasksMade(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	p := startPartial(t, map[string]string{"DAILY_BUDGET_USD": "0.5"})
	ctx := deadline(t, time.Minute)
	p.queue.Before(func(_ context.Context, n int, _ *cloudtaskspb.Task) error {
		if n == 1 {
			return nil
		}
		select { // the first task runs its row to the end, then the queue is paused
		case <-p.delivered:
		case <-ctx.Done():
		}
		return status.Error(codes.FailedPrecondition, "injected fault: the queue is paused")
	})
	body := `{"runMode":"live","confirm":"CONFIRM","rows":[
		{"prompt":"a","variants":3},{"prompt":"b","variants":3},{"prompt":"c","variants":3},{"prompt":"d","variants":3}]}` // $0.468 of $0.50
	key := map[string]string{"Idempotency-Key": "interrupted-1"}

	ans := post(t, p.base+"/batch/images", body, key)
	is.Equal(ans.status, http.StatusServiceUnavailable)
	is.Equal(ans.str("code"), "SUBMIT_INTERRUPTED")
	is.True(ans.header.Get("Retry-After") != "")                         // the client may retry
	is.True(strings.Contains(ans.str("detail"), "same Idempotency-Key")) // with the same key
	id := ans.str("batchId")
	is.True(id != "") // the batch is named

	final := p.settled(t, id)
	is.Equal(p.model.Calls(), int64(3))       // the task that ran made its row's three images
	is.Equal(final.Summary.Rows.Done, 1)      // that row is done
	is.Equal(final.Summary.Rows.Cancelled, 3) // the others never ran
	is.Equal(p.tasks.Stats().Created, int64(1))

	p.queue.Before(nil) // the queue is back
	again := post(t, p.base+"/batch/images", body, key)
	is.Equal(again.status, http.StatusAccepted)
	is.Equal(again.str("batchId"), id)         // the same batch
	is.Equal(again.str("status"), "cancelled") // cancelled, its made images kept
	statuses := map[string]int{}
	for _, r := range again.doc["rows"].([]any) {
		statuses[r.(map[string]any)["status"].(string)]++
	}
	is.Equal(statuses, map[string]int{"done": 1, "cancelled": 3}) // as it stands, cancelled rows included
	is.Equal(again.doc["budget"].(map[string]any)["reservedUsd"], 0.0)
	is.NoErr(p.tasks.WaitIdle(deadline(t, 30*time.Second)))
	is.Equal(p.tasks.Stats().Created, int64(1)) // nothing queued again: every other row is final
	is.Equal(p.model.Calls(), int64(3))         // nor made again
	b := get(t, p.base+"/budget", nil)
	is.Equal(b.doc["spentUsd"], 0.117) // charged once
	is.Equal(b.doc["remainingUsd"], 0.383)
}

// The idempotency commit fails after every task was accepted (and some may
// run already): the batch is cancelled, not deleted, what ran is charged,
// and the key still names the batch.
func TestFailedKeyCommitKeepsTheBatch(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	p := startPartial(t, nil)
	p.queue.After(func(_ context.Context, n int, _ *cloudtaskspb.Task) {
		if n == 2 { // the last task is accepted: the commit that follows is refused
			p.storage.RejectWrites("idempotency/", 1, http.StatusForbidden)
		}
	})
	body := `{"runMode":"live","confirm":"CONFIRM","rows":[{"prompt":"a","variants":2},{"prompt":"b","variants":2}]}`
	key := map[string]string{"Idempotency-Key": "commit-fails"}

	ans := post(t, p.base+"/batch/images", body, key)
	is.Equal(ans.status, http.StatusServiceUnavailable)
	is.Equal(ans.str("code"), "SUBMIT_INTERRUPTED")
	id := ans.str("batchId")
	p.settled(t, id)
	is.Equal(len(objects(t, p.app, "batches/"+id+"/manifest.json")), 1) // the batch is kept
	var rec idempotency.Record
	_, err := p.platform.Bucket.ReadJSON(context.Background(), idempotency.Object(auth.LocalUser, "commit-fails"), &rec)
	is.NoErr(err)             // the key is kept
	is.Equal(rec.BatchID, id) // naming the batch
	is.True(rec.Queuing && !rec.Committed)

	again := post(t, p.base+"/batch/images", body, key)
	is.Equal(again.status, http.StatusAccepted)
	is.Equal(again.str("batchId"), id) // the same batch
	is.NoErr(p.tasks.WaitIdle(deadline(t, 30*time.Second)))
	p.settled(t, id) // and still charged once
}

// The client goes away right after the first task was created: the submit's
// writes do not depend on its connection, so the batch is recorded, queued
// and committed whole, and runs to the end.
func TestClientDisconnectMidSubmitLeavesAWholeBatch(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	p := startPartial(t, nil)
	reqCtx, disconnect := context.WithCancel(context.Background())
	defer disconnect()
	p.queue.After(func(_ context.Context, n int, _ *cloudtaskspb.Task) {
		if n == 1 {
			disconnect()
		}
	})
	body := `{"runMode":"live","confirm":"CONFIRM","rows":[{"prompt":"a"},{"prompt":"b"},{"prompt":"c"}]}`
	req := httptest.NewRequestWithContext(reqCtx, http.MethodPost, "/batch/images", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "gone-away")
	rec := httptest.NewRecorder()
	p.srv.Handler.ServeHTTP(rec, req)
	is.True(reqCtx.Err() != nil)                // the client did go away mid-submit
	is.Equal(rec.Code, http.StatusAccepted)     // and the submit finished regardless
	is.Equal(p.tasks.Stats().Created, int64(3)) // every row queued

	again := post(t, p.base+"/batch/images", body, map[string]string{"Idempotency-Key": "gone-away"})
	is.Equal(again.status, http.StatusAccepted)
	id := again.str("batchId")
	final := p.settled(t, id)
	is.Equal(final.Summary.Status, ledger.Done)
	is.Equal(final.Summary.Rows.Done, 3) // the whole batch ran
	is.Equal(p.model.Calls(), int64(3))  // and was charged
}
