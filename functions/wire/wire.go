// Package wire builds the functions' handlers from a platform: each function's
// Config from the settings, its Deps from the platform's clients and stores.
// The Functions Framework registrations, the local stack and the benchmarks
// build handlers through it, so a deployment, `make run` and the tests serve
// the same wiring.
package wire

import (
	"net/http"
	"strings"
	"time"

	"github.com/assetgen/assetgen/functions/console"
	"github.com/assetgen/assetgen/functions/generate"
	"github.com/assetgen/assetgen/functions/progress"
	"github.com/assetgen/assetgen/functions/submit"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/cors"
	"github.com/assetgen/assetgen/shared/health"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/metrics"
	"github.com/assetgen/assetgen/shared/platform"
)

// Submit builds the submit function; it needs the task queue.
func Submit(p *platform.Platform) (http.Handler, error) {
	cfg := p.Config
	q, err := p.Queue()
	if err != nil {
		return nil, err
	}
	callers, err := p.Callers()
	if err != nil {
		return nil, err
	}
	finisher, err := p.Finisher()
	if err != nil {
		return nil, err
	}
	return submit.New(submit.Config{
		Rules:            p.Rules(),
		PublicBaseURL:    cfg.PublicBaseURL,
		ProgressBaseURL:  cfg.ProgressBaseURL,
		LiveAvailable:    cfg.LiveBackend != "",
		CORS:             corsPolicy(cfg),
		Project:          cfg.Project,
		Metrics:          metricsAccess(cfg),
		SubmitsPerMinute: cfg.SubmitRatePerMinute,
		AssetLinkTTL:     cfg.HistoryRetention,
		ConfigTTL:        cfg.ConfigTTL,
		MaxQueuedRows:    cfg.QueuedRowsPerUser,
		UploadsPerDay:    cfg.UploadsPerDay,
	}, submit.Deps{
		Store: p.Ledger, Bucket: p.Bucket, Queue: q, Signer: p.Signer, Keys: p.Keys,
		Budgets: p.Budgets, Flags: p.Flags, Refs: p.Refs(), Auth: callers, Tokens: p.Tokens, Finisher: finisher,
		Ready: p.Readiness(append([]health.Check{p.BucketWritable(), p.QueueReachable()},
			p.ConfigChecks(layout.FlagsObject, layout.BudgetsObject, layout.APIKeysObject)...)...),
		Log: p.Log,
	}), nil
}

// Generate builds the generate function, with the live model when one is
// configured.
func Generate(p *platform.Platform) (http.Handler, error) {
	cfg := p.Config
	tasks := TaskAuth(cfg)
	if err := tasks.Check(); err != nil {
		return nil, err
	}
	finisher, err := p.Finisher()
	if err != nil {
		return nil, err
	}
	gens, err := p.Generators()
	if err != nil {
		return nil, err
	}
	return generate.New(generate.Config{
		Lease:       cfg.RowLease,
		MaxAttempts: cfg.MaxAttempts,
		// The attempt records its outcome before Cloud Tasks stops waiting.
		AttemptTimeout: cfg.DispatchDeadline - min(cfg.DispatchDeadline/10, 10*time.Second),
		Project:        cfg.Project,
		Metrics:        metricsAccess(cfg),
		Tasks:          tasks,
	}, generate.Deps{
		Store: p.Ledger, Generators: gens, Finisher: finisher,
		Ready: p.Readiness(p.BucketWritable()),
		Log:   p.Log,
	}), nil
}

// TaskAuth is what admits a delivery to generate. Cloud Run verifies the
// task's token for IAM and strips its signature; generate checks what the
// stripped token says and that the delivery names the platform's queue. Only
// on the emulators, off Cloud Run, may the queue header alone admit a task.
func TaskAuth(cfg config.Config) auth.TaskAuth {
	return auth.TaskAuth{
		Queues:       queueIDs(cfg),
		Token:        auth.TaskToken{Audience: cfg.TasksOIDCAudience, ServiceAccount: cfg.TasksServiceAccount, Leeway: time.Minute},
		RequireToken: cfg.CloudRunService != "" || !cfg.Local(),
	}
}

// queueIDs are the short ids of the queues whose tasks generate runs: the
// row queue and, when it is another, the dry-run queue.
func queueIDs(cfg config.Config) []string {
	short := func(q string) string { return q[strings.LastIndex(q, "/")+1:] }
	ids := []string{short(cfg.Queue)}
	if cfg.DryRunQueue != cfg.Queue {
		ids = append(ids, short(cfg.DryRunQueue))
	}
	return ids
}

// Progress builds the progress service, which serves the console too.
func Progress(p *platform.Platform) (*progress.Service, error) {
	cfg := p.Config
	callers, err := p.Callers()
	if err != nil {
		return nil, err
	}
	return progress.New(progress.Config{
		PollMin: cfg.SSEPollMin, PollMax: cfg.SSEPollMax, Heartbeat: cfg.SSEHeartbeat,
		MaxDuration: cfg.SSEMaxDuration, Retry: cfg.SSERetry,
		// URLs are refreshed 5 minutes before they expire, sooner for short TTLs.
		RefreshBefore: min(5*time.Minute, cfg.SignedURLTTL/3),
		WriteTimeout:  30 * time.Second,
		Project:       cfg.Project,
		Metrics:       metricsAccess(cfg),
		CORS:          corsPolicy(cfg),
		Console:       consoleConfig(cfg),
		MinHeadroom:   cfg.SSEMinHeadroom,
		// Per instance: a user's streams spread over instances may add up to
		// more, but no single instance is held by one user.
		MaxStreamsPerUser: cfg.SSEStreamsPerUser,
	}, progress.Deps{
		Store: p.Ledger, Sign: p.Signer.Sign, Auth: auth.Stream{Tokens: p.Tokens, Bearer: callers},
		Ready: p.Readiness(append([]health.Check{p.BucketReadable()}, p.ConfigChecks(layout.APIKeysObject)...)...),
		Log:   p.Log,
	}), nil
}

// Console builds the batch console for a server that serves it on the API's
// own origin (the local stack): the page calls the origin it was loaded from,
// whichever host name the browser used.
func Console(cfg config.Config) http.Handler {
	return console.New(console.Config{StorageOrigin: storageOrigin(cfg)})
}

// consoleConfig points the console that progress serves at submit:
// PUBLIC_BASE_URL, or the page's own origin when that is empty.
func consoleConfig(cfg config.Config) console.Config {
	return console.Config{APIBase: cfg.PublicBaseURL, StorageOrigin: storageOrigin(cfg)}
}

// storageOrigin is where signed URLs point when it is not https: the
// storage emulator of a local stack.
func storageOrigin(cfg config.Config) string {
	if !cfg.Local() {
		return ""
	}
	return "http://" + cfg.StorageEmulatorHost
}

// corsPolicy lets browsers on CORS_ORIGINS call the API; with AUTH_MODE=none
// (the local stack) they may also name the simulated user in X-Assetgen-User,
// as the console and curl do on the stack's own origin.
func corsPolicy(cfg config.Config) cors.Policy {
	p := cors.Parse(cfg.CORSOrigins)
	if cfg.AuthMode == "none" {
		p.Headers = []string{auth.HeaderUser}
	}
	return p
}

// metricsAccess opens /metrics on the local stack; a deployment serves it only
// to scrapers presenting METRICS_TOKEN.
func metricsAccess(cfg config.Config) metrics.Access {
	return metrics.Access{Open: cfg.Local(), Token: cfg.MetricsToken}
}
