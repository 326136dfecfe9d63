// Package submit is the submit function: it validates a batch, checks the
// caller's flags and budget, records the batch in the ledger and enqueues one
// Cloud Task per row; it also serves the batch's state and the caller's budget.
package submit

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/cached"
	"github.com/assetgen/assetgen/shared/completion"
	"github.com/assetgen/assetgen/shared/cors"
	"github.com/assetgen/assetgen/shared/deps"
	"github.com/assetgen/assetgen/shared/flags"
	"github.com/assetgen/assetgen/shared/health"
	"github.com/assetgen/assetgen/shared/idempotency"
	"github.com/assetgen/assetgen/shared/ledgerstore"
	"github.com/assetgen/assetgen/shared/metrics"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/openapi"
	"github.com/assetgen/assetgen/shared/queue"
	"github.com/assetgen/assetgen/shared/refs"
	"github.com/assetgen/assetgen/shared/uploads"
	"github.com/assetgen/assetgen/shared/urls"
)

// Config tunes the submit function.
type Config struct {
	Rules batch.Rules
	// PublicBaseURL and ProgressBaseURL are the origins put in statusUrl and
	// progressUrl; empty means the request's own origin.
	PublicBaseURL   string
	ProgressBaseURL string
	// LiveAvailable says whether this deployment has a live image model.
	LiveAvailable bool
	// CORS is the browser origin allow-list.
	CORS cors.Policy
	// SubmitsPerMinute bounds each user's submits on one instance.
	SubmitsPerMinute int
	// Project is the Google Cloud project (trace links in logs).
	Project string
	// Metrics says who may read /metrics.
	Metrics metrics.Access
	// ConfigTTL is how long operator settings read from the bucket are cached.
	ConfigTTL time.Duration
	// AssetLinkTTL is how long stable image links work: as long as images
	// are retained.
	AssetLinkTTL time.Duration
	// MaxQueuedRows bounds the rows of one user's unfinished batches (0: no
	// bound).
	MaxQueuedRows int
	// UploadsPerDay bounds the uploads one user may start in any 24 hours
	// (0: uploads.DefaultPerDay).
	UploadsPerDay int
}

// Deps are the submit function's collaborators, all built once per instance
// and all required: New panics naming any that is missing.
type Deps struct {
	// Store is the batch ledger; Bucket the bucket holding it, for what
	// lives beside the ledger (operator settings, effects markers).
	Store    *ledgerstore.Store
	Bucket   *bucket.Bucket
	Queue    *queue.Enqueuer
	Signer   *urls.Signer
	Keys     *idempotency.Keys
	Budgets  *budget.Store
	Flags    *flags.Set
	Refs     *refs.Fetcher
	Auth     auth.Authenticator
	Tokens   *auth.Tokens
	Finisher *completion.Finisher
	Ready    *health.Readiness
	Log      *slog.Logger
}

// New returns the submit function's handler, serving the routes of routes.
func New(cfg Config, d Deps) http.Handler {
	deps.Check("submit.New", d)
	s := &server{cfg: cfg, Deps: d, now: time.Now, sheets: newSheetGrants(readSheetGrants(d.Bucket), cached.Options{TTL: cfg.ConfigTTL, Log: d.Log}),
		uploads: uploads.New(d.Bucket, d.Signer, uploads.Options{PerDay: cfg.UploadsPerDay, MaxBytes: d.Refs.MaxBytes()})}
	d.Ready.Add(health.ConfigValid(s.sheets.users))
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.pattern, rt.handler)
	}
	return obs.Middleware(d.Log, obs.Options{Function: "submit", Project: cfg.Project, Observe: metrics.ObserveRequest}, cfg.CORS.Wrap(api.Serve(mux)))
}

// route is one ServeMux pattern and its handler.
type route struct {
	pattern string
	handler http.Handler
}

// routes are every route of the submit function: New registers exactly
// these, and a test holds them to the OpenAPI document (shared/openapi).
func (s *server) routes() []route {
	user := func(h http.Handler) http.Handler { return auth.Require(s.Auth, h) }
	// A retry starts generation like a submit: both draw on one allowance.
	submits := newLimiter(s.cfg.SubmitsPerMinute)
	return []route{
		{"POST /batch/images", user(submits.require(s.handleSubmit()))},
		{"GET /batch", user(s.handleList())},
		{"GET /batch/{batchId}", user(s.handleGet())},
		{"GET /batch/{batchId}/history", user(s.handleHistory())},
		{"GET /batch/{batchId}/progress-token", user(s.handleProgressToken())},
		{"POST /batch/{batchId}/cancel", user(s.handleCancel())},
		{"POST /batch/{batchId}/retry", user(submits.require(s.handleRetry()))},
		{"GET /batch/{batchId}/archive", user(s.handleArchive())},
		{"POST /uploads", user(s.handleUpload())},
		// Stable image links authenticate themselves (their token, or the owner's).
		{"GET /assets/{batchId}/{row}/{variant}", s.handleAsset()},
		{"GET /budget", user(s.handleBudget())},
		{"GET /models", s.handleModels()},
		{"GET /webhooks/keys", s.handleWebhookKeys()},
		{"GET /openapi.json", openapi.Handler()},
		// /health and /ready are the probe paths: Cloud Run's front end answers
		// some paths ending in z itself. The z forms stay for existing probes.
		{"GET /health", health.Live()},
		{"GET /ready", s.Ready},
		{"GET /healthz", health.Live()},
		{"GET /readyz", s.Ready},
		{"GET /metrics", metrics.Handler(s.cfg.Metrics)},
	}
}

type server struct {
	cfg Config
	Deps
	now     func() time.Time
	sheets  *sheetGrants
	uploads *uploads.Uploads
	hints   capHints
}
