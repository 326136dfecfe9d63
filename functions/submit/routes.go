// Package submit is the submit function: it validates a batch, records it in the
// ledger and enqueues one Cloud Task per row; it also serves the batch's state.
package submit

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/health"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/queue"
	"github.com/assetgen/assetgen/shared/urls"
)

// Config tunes the submit function.
type Config struct {
	Rules batch.Rules
	// PublicBaseURL and ProgressBaseURL are the origins put in statusUrl and
	// progressUrl; empty means the request's own origin.
	PublicBaseURL   string
	ProgressBaseURL string
	// LiveAvailable says whether this deployment can run live batches.
	LiveAvailable bool
}

// New returns the submit function's handler. All its routes are here.
func New(cfg Config, store *ledger.Store, q *queue.Enqueuer, signer *urls.Signer, ready *health.Readiness, log *slog.Logger) http.Handler {
	s := &server{cfg: cfg, store: store, queue: q, signer: signer, now: time.Now}
	mux := http.NewServeMux()
	mux.Handle("POST /batch/images", s.handleSubmit())
	mux.Handle("GET /batch/{batchId}", s.handleGet())
	mux.Handle("GET /healthz", health.Live())
	mux.Handle("GET /readyz", ready)
	return obs.Middleware(log, api.Serve(mux))
}

type server struct {
	cfg    Config
	store  *ledger.Store
	queue  *queue.Enqueuer
	signer *urls.Signer
	now    func() time.Time
}
