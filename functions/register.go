// Package functions registers the three functions with the Functions Framework
// and builds each one's handler from configuration. Deployed, every instance
// builds the clients of its own function once, on its first request; the local
// stack builds all three over one set of clients.
package functions

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/assetgen/assetgen/functions/generate"
	"github.com/assetgen/assetgen/functions/progress"
	"github.com/assetgen/assetgen/functions/submit"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/cloud"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/health"
	"github.com/assetgen/assetgen/shared/imagegen"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/problem"
)

func init() {
	functions.HTTP("Submit", lazy(func(ctx context.Context, cfg config.Config, c *cloud.Clients, log *slog.Logger) (http.Handler, error) {
		if err := c.OpenTasks(ctx, cfg); err != nil {
			return nil, err
		}
		return NewSubmit(cfg, c, log)
	}))
	functions.HTTP("Generate", lazy(func(_ context.Context, cfg config.Config, c *cloud.Clients, log *slog.Logger) (http.Handler, error) {
		return NewGenerate(cfg, c, log), nil
	}))
	functions.HTTP("Progress", lazy(func(_ context.Context, cfg config.Config, c *cloud.Clients, log *slog.Logger) (http.Handler, error) {
		h, _ := NewProgress(cfg, c, log)
		return h, nil
	}))
}

type builder func(context.Context, config.Config, *cloud.Clients, *slog.Logger) (http.Handler, error)

// lazy builds a function's dependencies from the environment once, on the first
// request of the instance. A build failure is logged and answered as a problem
// document on every request, never a crash loop.
func lazy(build builder) func(http.ResponseWriter, *http.Request) {
	get := sync.OnceValues(func() (http.Handler, error) {
		cfg, err := config.Load(os.Getenv)
		if err != nil {
			return nil, err
		}
		log := obs.NewLogger(os.Stdout, cfg.LogLevel)
		slog.SetDefault(log)
		ctx := context.Background()
		c, err := cloud.Open(ctx, cfg)
		if err != nil {
			return nil, err
		}
		h, err := build(ctx, cfg, c, log)
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		return h, nil
	})
	return func(w http.ResponseWriter, r *http.Request) {
		h, err := get()
		if err != nil {
			slog.Error("functions: cannot start", "error", err)
			problem.Write(w, r, problem.Wrap(problem.NotReady, err, "the function is misconfigured; see its logs"))
			return
		}
		h.ServeHTTP(w, r)
	}
}

// instanceID names this instance's readiness probe object.
var instanceID = func() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	if rev := os.Getenv("K_REVISION"); rev != "" {
		return rev + "-" + hex.EncodeToString(b[:])
	}
	return "local-" + hex.EncodeToString(b[:])
}()

// readinessTTL caches readiness so probes write the probe object rarely.
const readinessTTL = 5 * time.Second

func writeProbe(c *cloud.Clients) health.Check {
	return health.Check{Name: "bucket", Fn: func(ctx context.Context) error { return c.Store.Probe(ctx, instanceID) }}
}

func rules(cfg config.Config) batch.Rules {
	return batch.Rules{Models: cfg.Models}
}

// NewSubmit builds the submit function over c (which needs its tasks client).
func NewSubmit(cfg config.Config, c *cloud.Clients, log *slog.Logger) (http.Handler, error) {
	if cfg.GenerateURL == "" {
		return nil, fmt.Errorf("functions: GENERATE_URL must name the generate function")
	}
	q := c.Enqueuer(cfg)
	ready := health.NewReadiness(readinessTTL, writeProbe(c), health.Check{Name: "queue", Fn: q.Ping})
	return submit.New(submit.Config{
		Rules:           rules(cfg),
		PublicBaseURL:   cfg.PublicBaseURL,
		ProgressBaseURL: cfg.ProgressBaseURL,
		LiveAvailable:   false,
	}, c.Store, q, c.Signer, ready, log), nil
}

// NewGenerate builds the generate function over c.
func NewGenerate(cfg config.Config, c *cloud.Clients, log *slog.Logger) http.Handler {
	gens := generate.Generators{batch.DryRun: imagegen.NewPlaceholder(cfg.DryRunDelay)}
	return generate.New(generate.Config{
		Lease:          cfg.RowLease,
		MaxAttempts:    cfg.MaxAttempts,
		AttemptTimeout: cfg.DispatchDeadline - min(cfg.DispatchDeadline/10, 10*time.Second),
	}, c.Store, gens, health.NewReadiness(readinessTTL, writeProbe(c)), log)
}

// NewProgress builds the progress service over c and returns its hub too.
func NewProgress(cfg config.Config, c *cloud.Clients, log *slog.Logger) (http.Handler, *progress.Hub) {
	hub := progress.NewHub(progress.Config{
		PollMin: cfg.SSEPollMin, PollMax: cfg.SSEPollMax, Heartbeat: cfg.SSEHeartbeat,
		MaxDuration: cfg.SSEMaxDuration, Retry: cfg.SSERetry,
	}, c.Store, c.Signer.Sign, log)
	ready := health.NewReadiness(readinessTTL, health.Check{Name: "bucket", Fn: c.Store.PingRead})
	return progress.New(hub, ready, log), hub
}
