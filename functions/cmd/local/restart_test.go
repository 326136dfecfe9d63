package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/matryer/is"
)

// kill stops a stack the way a killed process stops: storage goes first, so
// the row being generated keeps its lease instead of being handed back, then
// the queue and the server drop what is in flight. Nothing is shut down
// gracefully.
func kill(a *app) {
	_ = a.gcs.Close(context.Background())
	a.tasks.Close()
	_ = a.srv.Close()
	_ = a.platform.Close()
	// The test's cleanup closes the stack again; there is nothing left.
	a.gcs, a.tasks, a.platform = nil, nil, nil
}

// freePort is a loopback port free now, for two stacks that must serve the
// same address one after the other (tasks keep the URL they were created for).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// killMidBatch starts a stack whose generator never finishes, submits three
// rows, and kills the stack once one row is being generated (the other two
// wait in the queue behind it). The row's lease lasts two seconds.
func killMidBatch(t *testing.T, env map[string]string) submitted {
	t.Helper()
	is := is.New(t)
	first := map[string]string{"DRY_RUN_DELAY": "1h", "LOCAL_TASKS_MAX_CONCURRENT": "1", "LOCAL_TASKS_DRY_RUN_MAX_CONCURRENT": "1", "ROW_LEASE": "2s"}
	for k, v := range env {
		first[k] = v
	}
	a := startAppWith(t, first, options{})
	sub := (&stack{base: a.base}).submit(t, `{"runMode":"dry_run","rows":[{"prompt":"one"},{"prompt":"two"},{"prompt":"three"}]}`)
	s := openStream(t, sub.ProgressURL, "")
	for running := false; !running; {
		ev, ok := s.next()
		is.True(ok) // the stream reports the batch starting
		var r rowEvent
		running = ev.Type == "row" && json.Unmarshal([]byte(ev.Data), &r) == nil && r.Status == "running"
	}
	s.close()
	kill(a)
	return sub
}

// A killed stack's tasks are delivered again by the next stack on the same
// data dir: the waiting rows run at once, the interrupted one once its lease
// runs out, and the batch finishes.
func TestRestartFinishesTheBatch(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := map[string]string{"PORT": freePort(t), "DATA_DIR": t.TempDir()}
	sub := killMidBatch(t, env)

	a := startAppWith(t, env, options{})
	is.Equal(a.tasks.Stats().Restored, int64(3)) // every unfinished task is read back
	_, _, done := readToDone(t, streamWithin(t, sub.ProgressURL, time.Minute))
	is.Equal(done.Status, "done")        // the batch finished after the restart
	is.Equal(done.VariantCounts.Done, 3) // with every image
	is.Equal(a.tasks.Stats().Created, int64(0))
}

// Cancelling after a restart ends the batch: rows that never started are
// cancelled at once, and the interrupted row, whose task comes back, ends
// cancelled instead of being generated.
func TestCancelAfterRestart(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	env := map[string]string{"PORT": freePort(t), "DATA_DIR": t.TempDir()}
	sub := killMidBatch(t, env)

	// Deliveries wait until the cancel is in: nothing may start a row first.
	gate := make(chan struct{})
	held := &http.Client{Transport: gated{gate: gate, next: http.DefaultTransport}}
	a := startAppWith(t, map[string]string{"PORT": env["PORT"], "DATA_DIR": env["DATA_DIR"], "DRY_RUN_DELAY": "1h"}, options{deliveries: held})
	c := post(t, sub.StatusURL+"/cancel", ``, nil)
	is.Equal(c.status, http.StatusOK) // cancel answers the state
	cancelled := 0
	for _, row := range c.doc["rows"].([]any) {
		if row.(map[string]any)["status"] == "cancelled" {
			cancelled++
		}
	}
	is.Equal(cancelled, 2) // the rows that never started end at once
	close(gate)

	_, _, done := readToDone(t, streamWithin(t, sub.ProgressURL, time.Minute))
	is.Equal(done.Status, "cancelled")   // the interrupted row ended too, so the batch did
	is.Equal(done.VariantCounts.Done, 0) // without generating anything
	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))
	is.Equal(a.tasks.Stats().Dropped, int64(0)) // every returning task was answered
}

// streamWithin opens a progress stream that is cut after d, so a batch that
// never finishes fails the test instead of hanging it.
func streamWithin(t *testing.T, url string, d time.Duration) *sseStream {
	s := openStream(t, url, "")
	cut := time.AfterFunc(d, s.close)
	t.Cleanup(func() { cut.Stop() })
	return s
}

// gated holds every request until gate closes.
type gated struct {
	gate <-chan struct{}
	next http.RoundTripper
}

func (g gated) RoundTrip(r *http.Request) (*http.Response, error) {
	select {
	case <-g.gate:
		return g.next.RoundTrip(r)
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
}
