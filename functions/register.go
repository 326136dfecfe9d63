// Package functions registers the three functions with the Functions Framework
// and builds each one's handler from configuration. Deployed, every instance
// builds the clients of its own function once, on its first request; the local
// stack builds all three over one set of clients.
package functions

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/assetgen/assetgen/functions/console"
	"github.com/assetgen/assetgen/functions/generate"
	"github.com/assetgen/assetgen/functions/progress"
	"github.com/assetgen/assetgen/functions/submit"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/cloud"
	"github.com/assetgen/assetgen/shared/completion"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/cors"
	"github.com/assetgen/assetgen/shared/flags"
	"github.com/assetgen/assetgen/shared/health"
	"github.com/assetgen/assetgen/shared/idempotency"
	"github.com/assetgen/assetgen/shared/imagegen"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/metrics"
	"github.com/assetgen/assetgen/shared/notify"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/problem"
	"github.com/assetgen/assetgen/shared/refs"
)

func init() {
	functions.HTTP("Submit", lazy(func(ctx context.Context, p *Platform) (http.Handler, error) {
		if err := p.Clients.OpenTasks(ctx, p.Cfg); err != nil {
			return nil, err
		}
		return p.Submit()
	}))
	functions.HTTP("Generate", lazy(func(ctx context.Context, p *Platform) (http.Handler, error) {
		return p.Generate(ctx)
	}))
	functions.HTTP("Progress", lazy(func(_ context.Context, p *Platform) (http.Handler, error) {
		h, hub, err := p.Progress()
		if err != nil {
			return nil, err
		}
		go drainOnSIGTERM(hub, p.Log)
		return h, nil
	}))
}

// drainOnSIGTERM is the progress service's shutdown in the cloud, where the
// Functions Framework has none: on SIGTERM every stream tells its client to
// reconnect (EventSource resumes elsewhere from its Last-Event-ID), and the
// process exits once they are gone, inside Cloud Run's 10 s grace period.
func drainOnSIGTERM(hub *progress.Hub, log *slog.Logger) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	log.Info("progress: SIGTERM, sending streams elsewhere")
	hub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	if err := hub.WaitIdle(ctx); err != nil {
		log.Warn("progress: streams still open at exit", "error", err)
	}
	os.Exit(0)
}

type builder func(context.Context, *Platform) (http.Handler, error)

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
		p, err := NewPlatform(cfg, c, os.Getenv, log)
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		h, err := build(ctx, p)
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

func writeProbe(c *cloud.Clients) health.Check { return health.BucketWrites(c.Bucket, instanceID) }

// Platform is what every function of an instance shares, built once from the
// configuration: the clients, and the stores and switches over them.
type Platform struct {
	Cfg     config.Config
	Clients *cloud.Clients
	Log     *slog.Logger
	Budgets *budget.Store
	Flags   *flags.Set
	Keys    *idempotency.Keys
	// Tokens signs progress tokens and image links.
	Tokens *auth.Tokens

	finisherOnce sync.Once
	finisher     *completion.Finisher
	finisherErr  error
}

// NewPlatform builds the shared pieces over c.
func NewPlatform(cfg config.Config, c *cloud.Clients, getenv func(string) string, log *slog.Logger) (*Platform, error) {
	fl, err := flags.New(getenv, func(ctx context.Context) (map[string]string, error) {
		var m map[string]string
		_, err := c.Bucket.ReadJSON(ctx, layout.FlagsObject, &m)
		if errors.Is(err, bucket.ErrNotFound) {
			return nil, flags.ErrNoObject
		}
		return m, err
	}, cfg.ConfigTTL)
	if err != nil {
		return nil, err
	}
	budgets := budget.NewStore(c.Bucket, budget.NewLimits(c.Bucket, cfg.DailyBudgetUSD, cfg.ConfigTTL), cfg.BudgetPatience)
	tokens, err := auth.TokensFromConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Platform{
		Cfg: cfg, Clients: c, Log: log, Budgets: budgets, Flags: fl, Tokens: tokens,
		Keys: idempotency.New(c.Bucket),
	}, nil
}

// Finisher completes batches and announces them (webhooks, Sheets). Built on
// first use: only submit (cancel) and generate finish batches, so the progress
// service never needs the webhook secret.
func (p *Platform) Finisher(ctx context.Context) (*completion.Finisher, error) {
	p.finisherOnce.Do(func() {
		var n completion.Notifier
		if n, p.finisherErr = completion.NotifierFromConfig(ctx, p.Cfg, p.Tokens); p.finisherErr == nil {
			p.finisher = completion.New(p.Clients.Ledger, p.Clients.Bucket, p.Budgets, n)
		}
	})
	return p.finisher, p.finisherErr
}

// Callers builds the authenticator of the public API from AUTH_MODE. A
// deployment refuses to start without real authentication.
func (p *Platform) Callers() (auth.Authenticator, error) {
	cfg := p.Cfg
	switch cfg.AuthMode {
	case "none":
		if !cfg.Local() {
			return nil, errors.New("functions: AUTH_MODE=none is only for the local stack; use google or apikey")
		}
		return auth.None{}, nil
	case "google":
		return auth.NewGoogle(auth.GoogleOptions{
			Audiences: cfg.AuthAudiences, Issuers: cfg.AuthIssuers, JWKSURLs: cfg.AuthJWKSURLs, Leeway: time.Minute,
		})
	case "apikey":
		return auth.NewAPIKeys(func(ctx context.Context) ([]byte, error) {
			b, err := p.Clients.Bucket.ReadBytes(ctx, layout.APIKeysObject)
			if errors.Is(err, bucket.ErrNotFound) {
				return nil, nil
			}
			return b, err
		}, cfg.ConfigTTL), nil
	}
	return nil, fmt.Errorf("functions: AUTH_MODE must be google or apikey (none locally), got %q", cfg.AuthMode)
}

// metricsAccess opens /metrics on the local stack; a deployment serves it only
// to scrapers presenting METRICS_TOKEN.
func metricsAccess(cfg config.Config) metrics.Access {
	return metrics.Access{Open: cfg.Local(), Token: cfg.MetricsToken}
}

// rules are what submit validates batches against.
func (p *Platform) rules() batch.Rules {
	cfg := p.Cfg
	r := batch.Rules{
		Models: cfg.Models, RefBuckets: cfg.RefBuckets, AllowHTTPRefs: cfg.RefsAllowLoopback,
		CheckWebhook: func(u string) error { return notify.CheckWebhookURL(u, cfg.RefsAllowLoopback) },
	}
	if completion.SheetsAvailable(cfg) {
		r.CheckSheet = func(id, rng string) error { return notify.SheetTarget{SpreadsheetID: id, Range: rng}.Validate() }
	}
	return r
}

// Submit builds the submit function (the platform's clients need their tasks client).
func (p *Platform) Submit() (http.Handler, error) {
	cfg := p.Cfg
	if cfg.GenerateURL == "" {
		return nil, fmt.Errorf("functions: GENERATE_URL must name the generate function")
	}
	callers, err := p.Callers()
	if err != nil {
		return nil, err
	}
	finisher, err := p.Finisher(context.Background())
	if err != nil {
		return nil, err
	}
	q := p.Clients.Enqueuer(cfg)
	ready := health.NewReadiness(readinessTTL, writeProbe(p.Clients), health.Check{Name: "queue", Fn: q.Ping})
	return submit.New(submit.Config{
		Rules:            p.rules(),
		PublicBaseURL:    cfg.PublicBaseURL,
		ProgressBaseURL:  cfg.ProgressBaseURL,
		LiveAvailable:    cfg.LiveBackend != "",
		CORS:             cors.Parse(cfg.CORSOrigins),
		Project:          cfg.Project,
		Metrics:          metricsAccess(cfg),
		SubmitsPerMinute: cfg.SubmitRatePerMinute,
		AssetLinkTTL:     cfg.HistoryRetention,
		ConfigTTL:        cfg.ConfigTTL,
	}, submit.Deps{
		Store: p.Clients.Ledger, Bucket: p.Clients.Bucket, Queue: q, Signer: p.Clients.Signer, Keys: p.Keys,
		Budgets: p.Budgets, Flags: p.Flags, Auth: callers, Tokens: p.Tokens, Finisher: finisher, Ready: ready,
		Refs: refs.NewFetcher(p.Clients.Buckets, refs.Options{AllowLoopback: cfg.RefsAllowLoopback, Buckets: cfg.RefBuckets}),
	}, p.Log), nil
}

// Generate builds the generate function, with the live model when configured.
func (p *Platform) Generate(ctx context.Context) (http.Handler, error) {
	cfg := p.Cfg
	finisher, err := p.Finisher(ctx)
	if err != nil {
		return nil, err
	}
	gens := generate.Generators{ledger.DryRun: imagegen.NewPlaceholder(cfg.DryRunDelay)}
	if cfg.LiveBackend != "" {
		g, err := imagegen.NewGemini(ctx, imagegen.GeminiConfig{
			Backend: cfg.LiveBackend, Project: cfg.Project, Location: cfg.VertexLocation,
			APIKey: cfg.GeminiAPIKey, BaseURL: cfg.GeminiBaseURL, Timeout: cfg.ModelTimeout,
		})
		if err != nil {
			return nil, err
		}
		gens[ledger.Live] = g
	}
	// Cloud Run verifies the task's token for IAM and strips its signature;
	// generate checks what the stripped token says.
	tasks := auth.TaskAuth{
		Queue:      cfg.Queue[strings.LastIndex(cfg.Queue, "/")+1:],
		Token:      auth.TaskToken{Audience: cfg.TasksOIDCAudience, ServiceAccount: cfg.TasksServiceAccount, Leeway: time.Minute},
		OnCloudRun: cfg.CloudRunService != "",
	}
	return generate.New(generate.Config{
		Lease:          cfg.RowLease,
		MaxAttempts:    cfg.MaxAttempts,
		AttemptTimeout: cfg.DispatchDeadline - min(cfg.DispatchDeadline/10, 10*time.Second),
		Project:        cfg.Project,
		Metrics:        metricsAccess(cfg),
	}, p.Clients.Ledger, gens, finisher, tasks, health.NewReadiness(readinessTTL, writeProbe(p.Clients)), p.Log), nil
}

// Progress builds the progress service and returns its hub too.
func (p *Platform) Progress() (http.Handler, *progress.Hub, error) {
	cfg := p.Cfg
	callers, err := p.Callers()
	if err != nil {
		return nil, nil, err
	}
	hub := progress.NewHub(progress.Config{
		PollMin: cfg.SSEPollMin, PollMax: cfg.SSEPollMax, Heartbeat: cfg.SSEHeartbeat,
		MaxDuration: cfg.SSEMaxDuration, Retry: cfg.SSERetry,
		// URLs are refreshed 5 minutes before they expire, sooner for short TTLs.
		RefreshBefore: min(5*time.Minute, cfg.SignedURLTTL/3),
		WriteTimeout:  30 * time.Second,
		Project:       cfg.Project,
		Metrics:       metricsAccess(cfg),
		CORS:          cors.Parse(cfg.CORSOrigins),
		// The console talks to submit at PUBLIC_BASE_URL (its own origin when
		// empty, as on the local stack).
		Console:     console.New(console.Config{APIBase: cfg.PublicBaseURL}),
		MinHeadroom: cfg.SSEMinHeadroom,
	}, p.Clients.Ledger, p.Clients.Signer.Sign, p.Log)
	ready := health.NewReadiness(readinessTTL, health.BucketReads(p.Clients.Bucket))
	return progress.New(hub, auth.Stream{Tokens: p.Tokens, Bearer: callers}, ready, p.Log), hub, nil
}
