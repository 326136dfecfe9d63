package main

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/ledger"
)

// rowWatch sits in front of the fault injector and watches one batch's row 0
// and manifest: the row's content reads after the model was called and before
// the row's second write (its finishing write) landed, and, once armed, the
// manifest's read held until the row's first read arrives.
type rowWatch struct {
	faults *devstack.Faults
	model  atomic.Pointer[devstack.FakeModel]

	mu       sync.Mutex
	row      string // the row object
	manifest string // the manifest object
	// holdManifest makes the manifest's read wait for the row's first read
	// (for at most a few seconds, so a claim that reads them one after the
	// other fails the test instead of hanging).
	holdManifest bool
	rowRead      chan struct{}
	held         bool // the manifest's read waited and the row's read came
	timedOut     bool // it waited in vain
	writes       int  // landed writes of the row
	// loseFinish loses the answer of the row's second write.
	loseFinish bool
	// between counts the row's content reads after the model call and
	// before its second write landed.
	between int
}

func (w *rowWatch) watch(m *ledger.Manifest) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.row, w.manifest = ledger.RowObject(m.BatchID, 0), ledger.ManifestObject(m.BatchID)
	w.rowRead = make(chan struct{})
}

func (w *rowWatch) wrap(next http.Handler) http.Handler {
	inner := w.faults.Wrap(next)
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		row, manifest, rowRead := w.row, w.manifest, w.rowRead
		w.mu.Unlock()
		read := r.Method == http.MethodGet && r.URL.Query().Get("alt") == "media"
		switch {
		case row == "":
		case read && strings.HasSuffix(r.URL.Path, "/o/"+manifest):
			w.mu.Lock()
			hold := w.holdManifest
			w.holdManifest = false
			w.mu.Unlock()
			if hold {
				select {
				case <-rowRead:
					w.mu.Lock()
					w.held = true
					w.mu.Unlock()
				case <-time.After(5 * time.Second):
					w.mu.Lock()
					w.timedOut = true
					w.mu.Unlock()
				}
			}
		case read && strings.HasSuffix(r.URL.Path, "/o/"+row):
			w.mu.Lock()
			select {
			case <-rowRead:
			default:
				close(rowRead)
			}
			if mod := w.model.Load(); mod != nil && mod.Calls() > 0 && w.writes < 2 {
				w.between++
			}
			w.mu.Unlock()
		}
		rec := &statusRecorder{ResponseWriter: rw, status: http.StatusOK}
		inner.ServeHTTP(rec, r)
		if row != "" && strings.HasPrefix(r.URL.Path, "/upload/") && r.URL.Query().Get("name") == row && rec.status < 300 {
			w.mu.Lock()
			if w.writes++; w.writes == 1 && w.loseFinish {
				w.faults.LoseAnswers(row, 1)
			}
			w.mu.Unlock()
		}
	})
}

// statusRecorder notes the status an answer was given.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func watchedStack(t *testing.T) (*app, *rowWatch) {
	t.Helper()
	w := &rowWatch{faults: devstack.NewFaults(1)}
	env := map[string]string{"LOCAL_FAKE_MODEL": "true", "LOCAL_FAKE_MODEL_DELAY": "10ms", "DAILY_BUDGET_USD": "1", "CONFIG_TTL": "0"}
	a := startAppWith(t, env, options{wrapGCS: w.wrap})
	w.model.Store(a.model)
	return a, w
}

// A row task reads the batch's manifest and its row at the same time: the
// claim is one round trip of reads and one write, not a read of the manifest,
// then of the row, then the write.
func TestClaimReadsManifestAndRowTogether(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, w := watchedStack(t)
	m := liveManifest(t, a, "manifest beside the row", 1)
	w.watch(m)
	w.mu.Lock()
	w.holdManifest = true
	w.mu.Unlock()
	ans, err := deliver(deadline(t, time.Minute), a, m)
	is.NoErr(err)
	is.Equal(ans.status, http.StatusOK)
	row, _, err := a.platform.Ledger.ReadRow(context.Background(), m, 0)
	is.NoErr(err)
	is.Equal(row.Status, ledger.Done)
	w.mu.Lock()
	defer w.mu.Unlock()
	is.True(!w.timedOut) // the row was not read after the manifest
	is.True(w.held)      // but while the manifest's read was still open
}

// The row's finishing write is a compare-and-swap against the generation of
// the attempt's own claim: it does not read the row first.
func TestFinishingWriteDoesNotReadTheRow(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, w := watchedStack(t)
	m := liveManifest(t, a, "finish without a read", 2)
	w.watch(m)
	ans, err := deliver(deadline(t, time.Minute), a, m)
	is.NoErr(err)
	is.Equal(ans.status, http.StatusOK)
	row, _, err := a.platform.Ledger.ReadRow(context.Background(), m, 0)
	is.NoErr(err)
	is.Equal(row.Status, ledger.Done)
	w.mu.Lock()
	defer w.mu.Unlock()
	is.Equal(w.writes, 2)  // the claim and the finishing write
	is.Equal(w.between, 0) // no read of the row between the model call and the finish
}

// A finishing write that lands but whose answer is lost is this attempt's:
// the client's retry meets it (412), the adapter recognises its own write, and
// the row is finished once, not judged taken over or finished twice.
func TestFinishingWriteWhoseAnswerIsLostFinishesOnce(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, w := watchedStack(t)
	m := liveManifest(t, a, "lost finish", 2)
	w.watch(m)
	w.mu.Lock()
	w.loseFinish = true
	w.mu.Unlock()
	ans, err := deliver(deadline(t, time.Minute), a, m)
	is.NoErr(err)
	is.Equal(ans.status, http.StatusOK)
	is.True(strings.HasPrefix(ans.str("outcome"), "finished")) // not superseded
	row, _, err := a.platform.Ledger.ReadRow(context.Background(), m, 0)
	is.NoErr(err)
	is.Equal(row.Status, ledger.Done)
	is.Equal(countActions(row)["finished"], 1) // finished once
	for i, c := range row.History {
		is.Equal(c.Version, i+1) // no write applied twice
	}
	is.Equal(w.faults.Counts().LostAnswers, int64(1)) // the finishing write's answer was lost
	is.Equal(a.model.Calls(), int64(2))               // and nothing was made twice
}
