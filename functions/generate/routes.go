// Package generate is the generate function: Cloud Tasks delivers one row per
// task, and the function makes that row's images and records each step in the
// ledger. It answers 2xx when the row needs no more work (done, or failed for
// good) and non-2xx only when a retry can help — exactly the Cloud Tasks contract.
package generate

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/completion"
	"github.com/assetgen/assetgen/shared/deps"
	"github.com/assetgen/assetgen/shared/health"
	"github.com/assetgen/assetgen/shared/imagegen"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/ledgerstore"
	"github.com/assetgen/assetgen/shared/metrics"
	"github.com/assetgen/assetgen/shared/obs"
)

// Config tunes the generate function.
type Config struct {
	// Lease is how long a row belongs to one attempt (longer than a delivery's
	// dispatch deadline, so a live attempt is never overtaken).
	Lease time.Duration
	// MaxAttempts is the queue's attempt budget; the last attempt fails the row
	// instead of asking for another retry.
	MaxAttempts int
	// MinWriteGap spaces writes to one row object (Cloud Storage sustains one
	// write per second per object); results arriving closer are coalesced.
	MinWriteGap time.Duration
	// VariantConcurrency bounds the variants of a row made at once.
	VariantConcurrency int
	// Project is the Google Cloud project (trace links in logs).
	Project string
	// Metrics says who may read /metrics.
	Metrics metrics.Access
	// AttemptTimeout bounds one delivery; keep it under the queue's dispatch
	// deadline so the attempt records its outcome before Cloud Tasks gives up.
	AttemptTimeout time.Duration
	// Tasks says which deliveries come from the platform's queue.
	Tasks auth.TaskAuth
}

// Deps are the generate function's collaborators, all built once per instance
// and all required: New panics naming any that is missing.
type Deps struct {
	// Store is the batch ledger.
	Store *ledgerstore.Store
	// Generators serve the run modes; a mode without one fails its images.
	Generators Generators
	// Finisher completes a batch once its last row is final.
	Finisher *completion.Finisher
	Ready    *health.Readiness
	Log      *slog.Logger
}

// Generators maps each run mode to the generator that serves it; a nil entry
// means the mode is not available on this deployment.
type Generators map[ledger.RunMode]imagegen.Generator

// New returns the generate function's handler. All its routes are here.
func New(cfg Config, d Deps) http.Handler {
	deps.Check("generate.New", d)
	if cfg.MinWriteGap <= 0 {
		cfg.MinWriteGap = time.Second
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = 5 * time.Minute
	}
	if cfg.VariantConcurrency <= 0 {
		cfg.VariantConcurrency = batch.MaxVariants
	}
	h := &handler{cfg: cfg, store: d.Store, gens: d.Generators, finisher: d.Finisher, now: time.Now}
	mux := http.NewServeMux()
	// /health and /ready are the probe paths: Cloud Run's front end answers
	// some paths ending in z itself. The z forms stay for existing probes.
	mux.Handle("GET /health", health.Live())
	mux.Handle("GET /ready", d.Ready)
	mux.Handle("GET /healthz", health.Live())
	mux.Handle("GET /readyz", d.Ready)
	mux.Handle("GET /metrics", metrics.Handler(cfg.Metrics))
	// Cloud Tasks posts to whatever path the task names; a function deployed with
	// FUNCTION_TARGET receives every path, so any POST is a task.
	mux.Handle("POST /", cfg.Tasks.Require(h))
	return obs.Middleware(d.Log, obs.Options{Function: "generate", Project: cfg.Project, Observe: metrics.ObserveRequest}, api.Serve(mux))
}
