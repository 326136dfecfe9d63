package main

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/cloudtasks/apiv2/cloudtaskspb"
	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/queue"
)

// snapshots reads a batch's kept states through GET /batch/{id}/history and
// checks what every reader relies on: names in time order, state.json naming
// the newest, each snapshot an object of its own.
func snapshots(t *testing.T, a *app, statusURL, id string) (events []string, last map[string]any) {
	t.Helper()
	is := is.New(t)
	h := get(t, statusURL+"/history", nil)
	is.Equal(h.status, http.StatusOK)
	list := h.doc["snapshots"].([]any)
	var names []string
	for _, s := range list {
		s := s.(map[string]any)
		names = append(names, s["name"].(string))
		events = append(events, s["event"].(string))
		last = s
	}
	is.True(sort.StringsAreSorted(names))                               // oldest first, by name
	is.Equal(h.doc["state"], names[len(names)-1])                       // state.json names the newest
	is.Equal(len(objects(t, a, ledger.SnapshotPrefix(id))), len(names)) // each one kept as an object
	cur, err := a.platform.Ledger.Current(context.Background(), id)
	is.NoErr(err)
	is.Equal(cur.Snapshot, names[len(names)-1])
	return events, last
}

// A batch keeps one snapshot per batch-level change, and state.json is
// rewritten only at those changes.
func TestSnapshotsAtEachBatchLevelChange(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	faults := devstack.NewFaults(1)
	a := startApp(t, nil, faults)
	sub := post(t, a.base+"/batch/images", `{"runMode":"dry_run","rows":[{"prompt":"a","variants":2},{"prompt":"b"},{"prompt":"c"}]}`, nil)
	is.Equal(sub.status, http.StatusAccepted)
	readToDone(t, openStream(t, sub.str("progressUrl"), ""))
	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))

	id := sub.str("batchId")
	events, last := snapshots(t, a, sub.str("statusUrl"), id)
	is.Equal(events, []string{"accepted", "started", "finished"}) // three rows, one start
	is.Equal(last["status"], "done")
	writes := faults.WritesOf(ledger.BatchPrefix(id) + "state")
	is.Equal(writes[ledger.StateObject(id)], 3) // state.json once per change
	is.Equal(len(writes), 4)                    // and three snapshots
	for name, n := range writes {
		is.Equal(n, 1+2*btoi(name == ledger.StateObject(id))) // each snapshot written once
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// The writer of the started state dies between state.json and its snapshot
// (here: the snapshot's write is refused): the next change writes the missing
// snapshot from the state it replaces, so none is lost.
func TestSnapshotLostWithItsWriterIsWrittenByTheNextChange(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	storage := devstack.NewFaults(1)
	queue := &devstack.TaskFaults{}
	var once sync.Once
	var id string
	// The first task of the batch is queued once its accepted state is kept:
	// from then on, the next snapshot write (the started one) is refused.
	queue.Before(func(_ context.Context, _ int, task *cloudtaskspb.Task) error {
		once.Do(func() {
			id = batchOf(t, task)
			storage.RejectWrites(ledger.SnapshotPrefix(id), 1, http.StatusForbidden)
		})
		return nil
	})
	a := startAppWith(t, nil, options{wrapGCS: storage.Wrap, tasksIntercept: queue.Intercept})
	sub := post(t, a.base+"/batch/images", `{"runMode":"dry_run","rows":[{"prompt":"a"},{"prompt":"b"}]}`, nil)
	is.Equal(sub.status, http.StatusAccepted)
	readToDone(t, openStream(t, sub.str("progressUrl"), ""))
	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))
	is.Equal(id, sub.str("batchId"))
	is.Equal(storage.Counts().Rejected, int64(1)) // the started snapshot's first write was refused

	events, _ := snapshots(t, a, sub.str("statusUrl"), id)
	is.Equal(events, []string{"accepted", "started", "finished"}) // and it was written all the same
}

// Cancelling a running batch keeps a snapshot of its own, and the final one
// remembers it.
func TestCancelIsASnapshot(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	// The running row's image takes longer than the cancel waits for its turn
	// to write the batch's state (up to StateGap after the start).
	a, _ := liveStack(t, map[string]string{"LOCAL_TASKS_MAX_CONCURRENT": "1", "LOCAL_FAKE_MODEL_DELAY": "3s"})
	sub := post(t, a.base+"/batch/images", `{"runMode":"live","confirm":"CONFIRM","rows":[{"prompt":"first"},{"prompt":"second"}]}`, nil)
	is.Equal(sub.status, http.StatusAccepted)
	s := openStream(t, sub.str("progressUrl"), "")
	waitRunning(t, s)
	is.Equal(post(t, sub.str("statusUrl")+"/cancel", ``, nil).status, http.StatusOK)
	is.Equal(post(t, sub.str("statusUrl")+"/cancel", ``, nil).status, http.StatusOK) // twice: one snapshot
	readToDone(t, s)
	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))

	events, last := snapshots(t, a, sub.str("statusUrl"), sub.str("batchId"))
	// The cancel may be recorded before the start (a start waits its turn to
	// be written, up to a second after acceptance): both are kept, once.
	is.Equal(len(events), 4)
	is.Equal(events[0], "accepted")
	is.Equal(events[3], "finished")
	is.True(events[1] != events[2] && (events[1] == "started" || events[1] == "cancelled") && (events[2] == "started" || events[2] == "cancelled"))
	is.Equal(last["status"], "cancelled") // the running row kept its image; the batch reads cancelled
	cur, err := a.platform.Ledger.Current(context.Background(), sub.str("batchId"))
	is.NoErr(err)
	is.True(cur.CancelRequested) // the final state says it was cancelled
}

// batchOf is the batch a queued task is for.
func batchOf(t *testing.T, task *cloudtaskspb.Task) string {
	var qt queue.Task
	if err := json.Unmarshal(task.GetHttpRequest().GetBody(), &qt); err != nil {
		t.Errorf("task body: %v", err)
	}
	return qt.BatchID
}

// waitRunning reads the stream until a row is being generated.
func waitRunning(t *testing.T, s *sseStream) {
	t.Helper()
	for {
		ev, ok := s.next()
		if !ok {
			t.Fatal("the stream ended before a row ran")
		}
		var r rowEvent
		if ev.Type == "row" && json.Unmarshal([]byte(ev.Data), &r) == nil && r.Status == "running" {
			return
		}
	}
}

// A cancel that leaves no row running finishes the batch at once: one state,
// finished, that records the cancel.
func TestCancelOfAQueuedBatchFinishesIt(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	queue := &devstack.TaskFaults{}
	hold := make(chan struct{})
	defer close(hold)
	// The queue takes the tasks but nothing reaches generate until the test ends.
	a := startAppWith(t, map[string]string{"LOCAL_TASKS_MAX_CONCURRENT": "1"}, options{tasksIntercept: queue.Intercept, deliveries: &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		select {
		case <-hold:
		case <-r.Context().Done():
		}
		return nil, r.Context().Err()
	})}})
	sub := post(t, a.base+"/batch/images", `{"runMode":"dry_run","rows":[{"prompt":"a"},{"prompt":"b"}]}`, nil)
	is.Equal(sub.status, http.StatusAccepted)
	c := post(t, sub.str("statusUrl")+"/cancel", ``, nil)
	is.Equal(c.status, http.StatusOK)
	is.Equal(c.str("status"), "cancelled") // nothing was made

	events, last := snapshots(t, a, sub.str("statusUrl"), sub.str("batchId"))
	is.Equal(events, []string{"accepted", "finished"})
	is.Equal(last["status"], "cancelled")
	cur, err := a.platform.Ledger.Current(context.Background(), sub.str("batchId"))
	is.NoErr(err)
	is.True(cur.CancelRequested)
}
