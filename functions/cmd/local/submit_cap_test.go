package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/backlog"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/devstack"
)

// capStack is the local stack with a queued-row cap of 10 per user, its
// storage behind faults; hook, if set, sits between the faults and the
// emulator, so it sees what reaches the emulator. Its tasks are acknowledged
// and never run, so an accepted batch stays unfinished.
func capStack(t *testing.T, hook func(http.Handler) http.Handler) (*app, *devstack.Faults) {
	t.Helper()
	faults := devstack.NewFaults(1)
	wrap := faults.Wrap
	if hook != nil {
		wrap = func(h http.Handler) http.Handler { return faults.Wrap(hook(h)) }
	}
	acknowledged := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: r}, nil
	})}
	a := startAppWith(t, map[string]string{"MAX_QUEUED_ROWS_PER_USER": "10"}, options{wrapGCS: wrap, deliveries: acknowledged})
	return a, faults
}

// queueElsewhere marks an unfinished batch of rows for the local user, as a
// submit on another instance would: this instance has not counted it.
func queueElsewhere(t *testing.T, a *app, rows int) backlog.Entry {
	t.Helper()
	e := backlog.Entry{User: auth.LocalUser, BatchID: batch.NewID(), Rows: rows}
	if _, err := backlog.New(a.platform.Bucket).Mark(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	return e
}

func dryBatch(rows int) string {
	r := make([]string, rows)
	for i := range r {
		r[i] = `{"prompt":"row"}`
	}
	return `{"runMode":"dry_run","rows":[` + strings.Join(r, ",") + `]}`
}

// overCap checks a refusal by the queued-row cap.
func overCap(t *testing.T, ans answer, queued float64) {
	t.Helper()
	is := is.New(t)
	is.Equal(ans.status, http.StatusTooManyRequests) // over the queued-row cap
	is.Equal(ans.str("code"), "RATE_LIMITED")        // its stable code
	is.Equal(ans.header.Get("Retry-After"), "60")
	is.Equal(ans.doc["queuedRows"], queued) // the rows counted, the batch's own marker left out
	is.Equal(ans.doc["maxQueuedRows"], 10.0)
}

// listGate, once armed, holds listings of the queued-row markers until a
// write reaches the emulator: a submit's count then answers only after its
// writes began, as when the listing is the slower call (on a busy machine
// the listing may answer first, and the submit is refused before writing).
type listGate struct {
	mu    sync.Mutex
	wrote chan struct{} // nil until armed
	open  func()
}

func (g *listGate) arm() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.wrote = make(chan struct{})
	g.open = sync.OnceFunc(func() { close(g.wrote) })
}

func (g *listGate) hook(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		wrote, open := g.wrote, g.open
		g.mu.Unlock()
		switch {
		case wrote == nil:
		case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/upload/"):
			open()
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Query().Get("prefix"), "queued/"):
			select {
			case <-wrote:
			case <-r.Context().Done():
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// A dry run the instance has no reason to doubt is written while its
// queued rows are counted (one round trip instead of two); when the count
// puts it over the cap, it answers the same 429 as a refusal before any write
// and leaves nothing behind: no manifest, state, snapshot, list entry,
// marker. The refusal teaches the instance: the user's next submit is counted
// first and refused without a write. Room again, the user's batch is accepted.
func TestOverCapSubmitWrittenBesideItsCountLeavesNothing(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	gate := &listGate{}
	a, faults := capStack(t, gate.hook)
	elsewhere := queueElsewhere(t, a, 8)
	before := objects(t, a, "")

	faults.Reset()
	gate.arm()
	ans := post(t, a.base+"/batch/images", dryBatch(3), nil)
	overCap(t, ans, 8)
	is.True(faults.Counts().Writes >= 4)        // the batch was written beside its count
	is.Equal(objects(t, a, ""), before)         // and all of it was removed
	is.Equal(len(objects(t, a, "users/")), 0)   // no list entry
	is.Equal(len(objects(t, a, "batches/")), 0) // no manifest, state or snapshot

	faults.Reset()
	again := post(t, a.base+"/batch/images", dryBatch(3), nil)
	overCap(t, again, 8)
	n := faults.Counts()
	is.Equal(n.Writes, int64(0)) // a flood at the cap costs no write after the first refusal
	is.Equal(n.Lists, int64(1))  // one listing per refused submit, as before
	is.Equal(objects(t, a, ""), before)

	is.NoErr(backlog.New(a.platform.Bucket).Clear(context.Background(), elsewhere)) // that batch finished
	ok := post(t, a.base+"/batch/images", dryBatch(3), nil)
	is.Equal(ok.status, http.StatusAccepted) // room again: accepted
	ok = post(t, a.base+"/batch/images", dryBatch(7), nil)
	is.Equal(ok.status, http.StatusAccepted) // 3 + 7: at the cap, not over it
	list := get(t, a.base+"/batch", nil)
	is.Equal(len(list.doc["items"].([]any)), 2) // the two accepted batches, and only them
	rows, err := backlog.New(a.platform.Bucket).Rows(context.Background(), auth.LocalUser)
	is.NoErr(err)
	is.Equal(rows, 10) // their markers, and no refused batch's
}

// A submit with an Idempotency-Key is counted beside the key's look-up,
// before any write: refused, it leaves no key behind, so a retry with the key
// is counted again (refused while the cap is full, accepted once there is
// room), never finished as an earlier attempt's batch.
func TestOverCapSubmitWithAKeyWritesNothing(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, faults := capStack(t, nil)
	elsewhere := queueElsewhere(t, a, 8)
	before := objects(t, a, "")
	key := map[string]string{"Idempotency-Key": "over-the-cap"}

	faults.Reset()
	overCap(t, post(t, a.base+"/batch/images", dryBatch(3), key), 8)
	is.Equal(faults.Counts().Writes, int64(0)) // nothing written, not even the key
	is.Equal(objects(t, a, ""), before)

	overCap(t, post(t, a.base+"/batch/images", dryBatch(3), key), 8) // the retry is counted again

	is.NoErr(backlog.New(a.platform.Bucket).Clear(context.Background(), elsewhere))
	ok := post(t, a.base+"/batch/images", dryBatch(3), key)
	is.Equal(ok.status, http.StatusAccepted) // with room, the key's submit is accepted
	replay := post(t, a.base+"/batch/images", dryBatch(3), key)
	is.Equal(replay.status, http.StatusAccepted)
	is.Equal(replay.str("batchId"), ok.str("batchId")) // and the key names that batch
}

// The queued marker of a batch written beside its count lands but its
// answer is lost, and the client's retry of the write is refused: the marker
// exists although the write failed. Over the cap, the rollback removes it
// with the rest. (Before, only a marker whose write succeeded was undone: this
// one stayed and counted the refused batch's rows against the user.)
func TestOverCapSubmitWhoseMarkerAnswerWasLostLeavesNothing(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	var faults *devstack.Faults
	var armed atomic.Bool
	hook := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Query().Get("name"), "queued/") && armed.CompareAndSwap(true, false) {
				// This write reaches the emulator; its retry will not.
				faults.RejectWrites("queued/", 1, http.StatusForbidden)
			}
			next.ServeHTTP(w, r)
		})
	}
	var a *app
	a, faults = capStack(t, hook)
	queueElsewhere(t, a, 8)
	before := objects(t, a, "")
	faults.Reset()
	faults.LoseAnswers("queued/", 1)
	armed.Store(true)

	ans := post(t, a.base+"/batch/images", dryBatch(3), nil)
	overCap(t, ans, 8)
	is.Equal(faults.Counts().LostAnswers, int64(1)) // the marker landed, its answer lost
	is.Equal(objects(t, a, ""), before)             // and it is gone with the batch
	rows, err := backlog.New(a.platform.Bucket).Rows(context.Background(), auth.LocalUser)
	is.NoErr(err)
	is.Equal(rows, 8) // the refused batch counts nothing
}

// The client goes away while its batch's queued rows are being counted: the
// count does not depend on its connection, so the batch is still held to the
// cap and removed. (Before, the count failed with the connection and a
// failed count lets a batch through: going away mid-submit passed the cap.)
func TestClientGoneDuringTheCountDoesNotPassTheCap(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	reqCtx, disconnect := context.WithCancel(context.Background())
	defer disconnect()
	prefix := backlog.UserPrefix(auth.LocalUser)
	hook := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && r.URL.Query().Get("prefix") == prefix {
				disconnect()
			}
			next.ServeHTTP(w, r)
		})
	}
	a, _ := capStack(t, hook)
	queueElsewhere(t, a, 8)
	before := objects(t, a, "")

	req := httptest.NewRequestWithContext(reqCtx, http.MethodPost, "/batch/images", strings.NewReader(dryBatch(3)))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	a.srv.Handler.ServeHTTP(rec, req)
	is.True(reqCtx.Err() != nil)                   // the client went away during the count
	is.Equal(rec.Code, http.StatusTooManyRequests) // and the cap still held
	is.True(strings.Contains(rec.Body.String(), `"RATE_LIMITED"`))
	is.Equal(objects(t, a, ""), before) // nothing of the batch is left
	is.NoErr(a.tasks.WaitIdle(deadline(t, 10*time.Second)))
	is.Equal(a.tasks.Stats().Created, int64(0)) // and no task was queued
}
