package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

// holdQueue is the Cloud Tasks stand-in's HTTP client with every delivery of
// one queue held in flight until release is closed: that queue's dispatch
// slots stay taken, as by dry runs that take long.
type holdQueue struct {
	queue   string
	held    chan struct{}
	release chan struct{}
	next    http.RoundTripper
}

func (h *holdQueue) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("X-CloudTasks-QueueName") != h.queue {
		return h.next.RoundTrip(r)
	}
	select {
	case h.held <- struct{}{}:
	case <-h.release:
		return nil, errors.New("held delivery let go")
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	select {
	case <-h.release:
	case <-r.Context().Done():
	}
	return nil, errors.New("held delivery let go")
}

// One user's dry runs fill every dispatch slot of the dry-run queue; a live
// batch (fake model) submitted after them still starts and finishes, because
// it goes to the main queue, which dispatches on its own limits. The dry runs
// meanwhile wait their turn, none of them lost.
func TestDryRunsDoNotDelayLiveBatches(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	hold := &holdQueue{queue: "generate-dry-run", held: make(chan struct{}, 16), release: make(chan struct{}), next: &http.Transport{}}
	a := startAppWith(t, map[string]string{
		"LOCAL_FAKE_MODEL": "true", "LOCAL_FAKE_MODEL_DELAY": "10ms", "DAILY_BUDGET_USD": "1",
		"LOCAL_TASKS_MAX_CONCURRENT": "2", "LOCAL_TASKS_DRY_RUN_MAX_CONCURRENT": "2",
	}, options{deliveries: &http.Client{Transport: hold}})
	t.Cleanup(func() { close(hold.release) })           // before the stack stops
	is.Equal(a.cfg.DryRunQueue, a.cfg.Queue+"-dry-run") // the local stack runs two queues

	var rows []string
	for i := range 6 {
		rows = append(rows, fmt.Sprintf(`{"prompt":"dry %d"}`, i))
	}
	dry := post(t, a.base+"/batch/images", `{"runMode":"dry_run","rows":[`+strings.Join(rows, ",")+`]}`, map[string]string{"X-Assetgen-User": "hog"})
	is.Equal(dry.status, http.StatusAccepted)
	ctx := deadline(t, 60*time.Second)
	for range 2 {
		select {
		case <-hold.held: // a dry-run delivery takes one of the queue's two slots
		case <-ctx.Done():
			t.Fatal("the dry runs never filled their queue")
		}
	}

	live := post(t, a.base+"/batch/images", `{"runMode":"live","confirm":"CONFIRM","rows":[{"prompt":"paid a"},{"prompt":"paid b"}]}`, nil)
	is.Equal(live.status, http.StatusAccepted)
	pollUntil(t, ctx, "the live batch to finish", func() bool {
		return get(t, live.str("statusUrl"), nil).str("status") == "done"
	})
	is.Equal(a.model.Calls(), int64(2)) // both live rows ran on the model

	st := get(t, dry.str("statusUrl"), map[string]string{"X-Assetgen-User": "hog"})
	is.Equal(st.str("status"), "queued")        // the dry runs still wait for their queue
	is.Equal(len(hold.held), 0)                 // and no third delivery got past its two slots
	is.Equal(a.tasks.Stats().Dropped, int64(0)) // nothing was given up
}
