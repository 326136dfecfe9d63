// Package progress is the progress service: it tails a batch's ledger and streams
// Server-Sent Events to every browser watching it.
package progress

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/assetgen/assetgen/functions/console"
	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/cors"
	"github.com/assetgen/assetgen/shared/deps"
	"github.com/assetgen/assetgen/shared/health"
	"github.com/assetgen/assetgen/shared/ledgerstore"
	"github.com/assetgen/assetgen/shared/metrics"
	"github.com/assetgen/assetgen/shared/obs"
)

// Config tunes the streams and the tails.
type Config struct {
	// PollMin and PollMax bound the adaptive ledger poll interval of a tail.
	PollMin, PollMax time.Duration
	// Heartbeat is the interval of event: ping.
	Heartbeat time.Duration
	// MaxDuration ends a stream before the platform's request timeout, so the
	// client reconnects cleanly instead of being cut off.
	MaxDuration time.Duration
	// Retry is the reconnect delay suggested to EventSource.
	Retry time.Duration
	// RefreshBefore is how long before a signed URL expires the stream sends
	// the row again with fresh URLs.
	RefreshBefore time.Duration
	// WriteTimeout bounds one write to a client; a client that stops reading
	// is dropped instead of holding its buffers forever.
	WriteTimeout time.Duration
	// Project is the Google Cloud project (trace links in logs).
	Project string
	// Metrics says who may read /metrics.
	Metrics metrics.Access
	// CORS is the browser origin allow-list (consoles on other origins).
	CORS cors.Policy
	// Console configures the batch console, served at / and under
	// console.Prefix: a deployment serves it with the progress service.
	Console console.Config
	// MinHeadroom refuses new streams with 503 OVERLOADED while less than this
	// share of the memory limit is free (0 disables the check).
	MinHeadroom float64
	// MaxStreamsPerUser bounds one user's open streams on this instance;
	// beyond it a new stream is refused with 429 RATE_LIMITED (0: no cap).
	MaxStreamsPerUser int
}

// Deps are the progress service's collaborators, all built once per instance
// and all required: New panics naming any that is missing.
type Deps struct {
	// Store is the batch ledger the tails read.
	Store *ledgerstore.Store
	// Sign signs the image URLs put in events.
	Sign api.SignFunc
	// Auth authenticates streams: a progress token, or the deployment's own
	// credential (auth.Stream).
	Auth  auth.Authenticator
	Ready *health.Readiness
	Log   *slog.Logger
}

// Service is the progress service's handler and the hub its streams share:
// Close sends every stream elsewhere, WaitIdle waits for them to end.
type Service struct {
	*Hub
	handler http.Handler
}

// ServeHTTP implements http.Handler.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// New returns the progress service, serving the routes of routes.
func New(cfg Config, d Deps) *Service {
	deps.Check("progress.New", d)
	hub := newHub(cfg, d.Store, d.Sign, d.Log)
	page := console.New(cfg.Console)
	mux := http.NewServeMux()
	for _, rt := range routes(cfg, d, hub, page) {
		mux.Handle(rt.pattern, rt.handler)
	}
	h := obs.Middleware(d.Log, obs.Options{Function: "progress", Project: cfg.Project, Observe: metrics.ObserveRequest}, cfg.CORS.Wrap(api.Serve(mux)))
	return &Service{Hub: hub, handler: h}
}

// route is one ServeMux pattern and its handler.
type route struct {
	pattern string
	handler http.Handler
}

// routes are every route of the progress service: New registers exactly
// these, and a test holds them to the OpenAPI document (shared/openapi).
func routes(cfg Config, d Deps, hub *Hub, page http.Handler) []route {
	return []route{
		// The stream authenticates itself (auth.Admit): under auth.Require
		// every idle stream would hold a second copy of its request.
		{"GET /progress/{batchId}", hub.handleStream(d.Auth, newUserStreams(cfg.MaxStreamsPerUser))},
		// /health and /ready are the probe paths: Cloud Run's front end answers
		// some paths ending in z itself. The z forms stay for existing probes.
		{"GET /health", health.Live()},
		{"GET /ready", d.Ready},
		{"GET /healthz", health.Live()},
		{"GET /readyz", d.Ready},
		{"GET /metrics", metrics.Handler(cfg.Metrics)},
		{"GET /{$}", page},
		{console.Prefix, page},
	}
}
