// Package platform builds, from the configuration, everything an instance's
// functions and jobs share: the Google Cloud clients, the stores over the
// bucket, the feature switches, the token signer, the authenticator of callers,
// the finisher of batches, the image models and the readiness checks.
//
// Importing it starts nothing. Open builds what every function needs; what only
// some need (the queue, the finisher with its webhook signing keys, the live model,
// the authenticator) is built on first use, so a function never requires the
// settings of another. Close releases the clients.
package platform

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/cached"
	"github.com/assetgen/assetgen/shared/cloud"
	"github.com/assetgen/assetgen/shared/completion"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/flags"
	"github.com/assetgen/assetgen/shared/health"
	"github.com/assetgen/assetgen/shared/idempotency"
	"github.com/assetgen/assetgen/shared/imagegen"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/notify"
	"github.com/assetgen/assetgen/shared/queue"
	"github.com/assetgen/assetgen/shared/refs"
)

// Options are what Open needs besides the configuration.
type Options struct {
	// Getenv reads the feature switches (HYBRID_V1_ENABLED, LIVE_RUNS) and
	// K_REVISION; os.Getenv in production, a map in tests.
	Getenv func(string) string
	// Log is the instance's logger.
	Log *slog.Logger
	// ModelHTTPClient, when set, is the live model's HTTP client, used as is:
	// no credentials are looked up (the local stack's fake model). Nil in
	// the cloud.
	ModelHTTPClient *http.Client
}

// Platform is what one instance's functions share. The clients (Storage,
// Buckets, Bucket, Ledger, Signer, and Tasks once Queue opened it) come from
// cloud.Clients; reach the queue through Queue, which opens it once.
type Platform struct {
	*cloud.Clients
	Config config.Config
	Log    *slog.Logger
	// Budgets are the users' daily budgets, with limits from the bucket.
	Budgets *budget.Store
	// Flags are the feature switches (environment, overridden from the bucket).
	Flags *flags.Set
	// Keys are the idempotency keys of submits.
	Keys *idempotency.Keys
	// Tokens signs progress tokens and stable image links.
	Tokens *auth.Tokens

	// base is the context clients built on first use keep (credential
	// refreshes): Open's, without its cancellation.
	base     context.Context
	instance string
	limits   *budget.Limits
	// modelClient is Options.ModelHTTPClient.
	modelClient *http.Client

	queue      lazy[*queue.Enqueuer]
	finisher   lazy[*completion.Finisher]
	callers    lazy[auth.Authenticator]
	generators lazy[map[ledger.RunMode]imagegen.Generator]
	fetcher    lazy[*refs.Fetcher]
}

// Open builds the storage clients and the stores, switches and signer over
// them. Close releases what it built.
func Open(ctx context.Context, cfg config.Config, o Options) (*Platform, error) {
	if o.Getenv == nil || o.Log == nil {
		return nil, errors.New("platform: Options.Getenv and Options.Log are required")
	}
	c, err := cloud.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	p := &Platform{Clients: c, Config: cfg, Log: o.Log, base: context.WithoutCancel(ctx), instance: instanceName(o.Getenv), modelClient: o.ModelHTTPClient}
	if err := p.build(o.Getenv); err != nil {
		_ = c.Close()
		return nil, err
	}
	return p, nil
}

func (p *Platform) build(getenv func(string) string) error {
	cfg := p.Config
	fl, err := flags.New(getenv, func(ctx context.Context) (map[string]string, error) {
		var m map[string]string
		_, err := p.Bucket.ReadJSON(ctx, layout.FlagsObject, &m)
		if errors.Is(err, bucket.ErrNotFound) {
			return nil, flags.ErrNoObject
		}
		return m, err
	}, cfg.ConfigTTL)
	if err != nil {
		return err
	}
	if p.Tokens, err = auth.TokensFromConfig(cfg); err != nil {
		return err
	}
	// A malformed webhook key stops any instance given one at start, not
	// the first finisher of a batch.
	if cfg.WebhookSigningKeys != "" {
		if _, err := completion.WebhookKeysFromConfig(cfg); err != nil {
			return err
		}
	}
	p.Flags = fl
	p.limits = budget.NewLimits(p.Bucket, cfg.DailyBudgetUSD, cfg.ConfigTTL)
	total := budget.Total{LimitUSD: cfg.DailyBudgetTotalUSD, Shards: budget.TotalShards}
	p.Budgets = budget.NewStore(p.Bucket, p.limits, total, cfg.BudgetPatience)
	p.Keys = idempotency.New(p.Bucket)
	return nil
}

// instanceName names this instance's readiness probe object: the revision
// (K_REVISION on Cloud Run) and a random suffix.
func instanceName(getenv func(string) string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	if rev := getenv("K_REVISION"); rev != "" {
		return rev + "-" + hex.EncodeToString(b[:])
	}
	return "local-" + hex.EncodeToString(b[:])
}

// Close releases the clients.
func (p *Platform) Close() error { return p.Clients.Close() }

// Queue is the row-task enqueuer, over the Cloud Tasks client it opens on
// first use (Clients.Tasks from then on): tasks go to GENERATE_URL.
func (p *Platform) Queue() (*queue.Enqueuer, error) {
	return p.queue.get(func() (*queue.Enqueuer, error) {
		if p.Config.GenerateURL == "" {
			return nil, errors.New("platform: GENERATE_URL must name the generate function (row tasks go there)")
		}
		if err := p.Clients.OpenTasks(p.base, p.Config); err != nil {
			return nil, err
		}
		return p.Clients.Enqueuer(p.Config), nil
	})
}

// Finisher completes batches and announces them (webhooks, Sheets, stable
// links). Only what finishes batches builds it, so the progress service never
// needs the webhook signing keys.
func (p *Platform) Finisher() (*completion.Finisher, error) {
	return p.finisher.get(func() (*completion.Finisher, error) {
		n, err := completion.NotifierFromConfig(p.base, p.Config, p.Tokens)
		if err != nil {
			return nil, err
		}
		return completion.New(p.Ledger, p.Bucket, p.Budgets, n), nil
	})
}

// Callers authenticates the public API's callers as AUTH_MODE says. A
// deployment refuses to start without real authentication.
func (p *Platform) Callers() (auth.Authenticator, error) {
	return p.callers.get(func() (auth.Authenticator, error) {
		cfg := p.Config
		switch cfg.AuthMode {
		case "none":
			if !cfg.Local() {
				return nil, errors.New("platform: AUTH_MODE=none is only for the local stack; use google or apikey")
			}
			return auth.None{}, nil
		case "google":
			allow, err := auth.ParseAllow(cfg.AuthAllow)
			if err != nil {
				return nil, err
			}
			if allow.Empty() {
				return nil, errors.New("platform: AUTH_MODE=google needs AUTH_ALLOW: without it any Google identity could call")
			}
			return auth.NewGoogle(auth.GoogleOptions{
				Audiences: cfg.AuthAudiences, Issuers: cfg.AuthIssuers, JWKSURLs: cfg.AuthJWKSURLs, Leeway: time.Minute, Allow: allow,
			})
		case "apikey":
			return auth.NewAPIKeys(func(ctx context.Context) ([]byte, error) {
				b, err := p.Bucket.ReadBytes(ctx, layout.APIKeysObject)
				if errors.Is(err, bucket.ErrNotFound) {
					return nil, nil
				}
				return b, err
			}, cfg.ConfigTTL), nil
		}
		return nil, fmt.Errorf("platform: AUTH_MODE must be google or apikey (none locally), got %q", cfg.AuthMode)
	})
}

// Generators are the image generators by run mode: the placeholder for dry
// runs, and the live model when LIVE_BACKEND names one.
func (p *Platform) Generators() (map[ledger.RunMode]imagegen.Generator, error) {
	return p.generators.get(func() (map[ledger.RunMode]imagegen.Generator, error) {
		cfg := p.Config
		gens := map[ledger.RunMode]imagegen.Generator{ledger.DryRun: imagegen.NewPlaceholder(cfg.DryRunDelay)}
		if cfg.LiveBackend == "" {
			return gens, nil
		}
		g, err := imagegen.NewGemini(p.base, imagegen.GeminiConfig{
			Backend: cfg.LiveBackend, Project: cfg.Project, Location: cfg.VertexLocation,
			APIKey: cfg.GeminiAPIKey, BaseURL: cfg.GeminiBaseURL, Timeout: cfg.ModelTimeout, HTTPClient: p.modelClient,
		})
		if err != nil {
			return nil, err
		}
		gens[ledger.Live] = g
		return gens, nil
	})
}

// Refs fetches reference images through the address policy and stores them.
func (p *Platform) Refs() *refs.Fetcher {
	f, _ := p.fetcher.get(func() (*refs.Fetcher, error) {
		cfg := p.Config
		return refs.NewFetcher(p.Buckets, refs.Options{
			AllowLoopback: cfg.RefsAllowLoopback, Buckets: cfg.RefBuckets, MaxFetches: cfg.RefMaxFetches,
			MaxInflight: int64(cfg.RefMaxInflightMiB) << 20, ResolveTimeout: cfg.RefResolveTimeout,
			// The platform's bucket holds every user's uploads: a submit reads
			// only its caller's (refs.WithGrant).
			Private: []string{cfg.Bucket},
		}), nil
	})
	return f
}

// Rules are what submitted batches are validated against: the model table,
// the reference buckets, and the announcement targets this deployment can
// serve.
func (p *Platform) Rules() batch.Rules {
	cfg := p.Config
	r := batch.Rules{
		Models: cfg.Models, RefBuckets: cfg.RefBuckets, UploadsBucket: cfg.Bucket, AllowHTTPRefs: cfg.RefsAllowLoopback, LiveBackend: cfg.LiveBackend,
		CheckWebhook: func(u string) error { return notify.CheckWebhookURL(u, cfg.RefsAllowLoopback) },
	}
	if completion.SheetsAvailable(cfg) {
		r.CheckSheet = func(id, rng string) error { return notify.SheetTarget{SpreadsheetID: id, Range: rng}.Validate() }
	}
	return r
}

// ReadinessTTL caches readiness, so probes write the probe object rarely.
const ReadinessTTL = 5 * time.Second

// Readiness is a /readyz over checks, cached for ReadinessTTL.
func (p *Platform) Readiness(checks ...health.Check) *health.Readiness {
	return health.NewReadiness(ReadinessTTL, checks...)
}

// ConfigChecks are readiness checks of the named operator settings this
// platform keeps (layout.FlagsObject, BudgetsObject, APIKeysObject): each
// fails, naming its object, while the object is invalid. Objects it does not
// keep (the key table outside AUTH_MODE=apikey) are left out.
func (p *Platform) ConfigChecks(objects ...string) []health.Check {
	var out []health.Check
	for _, name := range objects {
		var v cached.Validity
		switch name {
		case layout.FlagsObject:
			v = p.Flags.Config()
		case layout.BudgetsObject:
			v = p.limits.Config()
		case layout.APIKeysObject:
			if callers, err := p.Callers(); err == nil {
				if keys, ok := callers.(*auth.APIKeys); ok {
					v = keys.Config()
				}
			}
		}
		if v != nil {
			out = append(out, health.ConfigValid(v))
		}
	}
	return out
}

// BucketWritable checks that the bucket takes this instance's probe write.
func (p *Platform) BucketWritable() health.Check { return health.BucketWrites(p.Bucket, p.instance) }

// BucketReadable checks that the bucket can be listed (read-only services).
func (p *Platform) BucketReadable() health.Check { return health.BucketReads(p.Bucket) }

// QueueReachable checks that the task queue exists and answers.
func (p *Platform) QueueReachable() health.Check {
	return health.Check{Name: "queue", Fn: func(ctx context.Context) error {
		q, err := p.Queue()
		if err != nil {
			return err
		}
		return q.Ping(ctx)
	}}
}

// lazy is a value built on first use. A failed build is not kept: the next
// call tries again.
type lazy[T any] struct {
	mu  sync.Mutex
	v   T
	set bool
}

func (l *lazy[T]) get(build func() (T, error)) (T, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.set {
		return l.v, nil
	}
	v, err := build()
	if err != nil {
		return v, err
	}
	l.v, l.set = v, true
	return v, nil
}
