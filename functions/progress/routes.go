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
	"github.com/assetgen/assetgen/shared/health"
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
	// Console, when set, is the batch console served at / and under
	// console.Prefix, so a deployment serves it with the progress service.
	Console http.Handler
	// MinHeadroom refuses new streams with 503 OVERLOADED while less than this
	// share of the memory limit is free (0 disables the check).
	MinHeadroom float64
}

// New returns the progress service's handler. All its routes are here.
// callers authenticates streams: a progress token, or the deployment's own
// credential (auth.Stream).
func New(hub *Hub, callers auth.Authenticator, ready *health.Readiness, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /progress/{batchId}", auth.Require(callers, hub.handleStream()))
	mux.Handle("GET /healthz", health.Live())
	mux.Handle("GET /readyz", ready)
	mux.Handle("GET /metrics", metrics.Handler(hub.cfg.Metrics))
	if hub.cfg.Console != nil {
		mux.Handle("GET /{$}", hub.cfg.Console)
		mux.Handle(console.Prefix, hub.cfg.Console)
	}
	return obs.Middleware(log, obs.Options{Function: "progress", Project: hub.cfg.Project, Observe: metrics.ObserveRequest}, hub.cfg.CORS.Wrap(api.Serve(mux)))
}
