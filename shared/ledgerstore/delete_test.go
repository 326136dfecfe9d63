package ledgerstore_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/devstack/stacktest"
	"github.com/assetgen/assetgen/shared/ledger"
)

// failFirstDeletes answers 503 to the first delete of every object whose name
// contains part, without the emulator seeing it, as a busy Cloud Storage does.
type failFirstDeletes struct {
	part   string
	mu     sync.Mutex
	failed map[string]bool
}

func (f *failFirstDeletes) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete && strings.Contains(r.URL.Path, f.part) {
			f.mu.Lock()
			first := !f.failed[r.URL.Path]
			f.failed[r.URL.Path] = true
			f.mu.Unlock()
			if first {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte(`{"error":{"code":503,"message":"injected fault"}}`))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// A 503 on a delete does not leave the batch behind: each delete names the
// generation it removes, so the client retries it.
func TestDeleteBatchRetriesA503(t *testing.T) {
	is := is.New(t)
	m := manifest(2, 1)
	faults := &failFirstDeletes{part: m.BatchID, failed: map[string]bool{}}
	store := stacktest.OpenWith(t, faults.wrap).Ledger
	ctx := context.Background()
	is.NoErr(store.CreateManifest(ctx, m))
	_, err := store.UpdateRow(ctx, m, 1, func(r ledger.Row) (ledger.Row, error) { r = r.Clone(); r.Attempts++; return r, nil })
	is.NoErr(err)

	is.NoErr(store.DeleteBatch(ctx, m.BatchID)) // every delete was retried through its 503
	_, err = store.Manifest(ctx, m.BatchID)
	is.True(errors.Is(err, ledger.ErrNotFound)) // the manifest is gone
	_, gen, err := store.ReadRow(ctx, m, 1)
	is.NoErr(err)
	is.Equal(gen, int64(0))         // and the row
	is.Equal(len(faults.failed), 2) // both deletes met a 503 first
}
