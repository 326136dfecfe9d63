// Package config reads the platform's settings from the environment, once per
// instance. Every variable, its default and its meaning is listed in Vars, which
// the README's configuration table mirrors (a test keeps them in step).
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/assetgen/assetgen/shared/models"
)

// Var documents one environment variable.
type Var struct {
	Name    string
	Default string
	Help    string
}

// Vars lists every variable the functions read, in the order the README shows.
var Vars = []Var{
	{"BUCKET", "assetgen-local", "Cloud Storage bucket holding the ledger, images and references."},
	{"TASKS_QUEUE", "projects/assetgen-local/locations/local/queues/generate", "Full name of the Cloud Tasks queue for row tasks."},
	{"TASKS_DRY_RUN_QUEUE", "TASKS_QUEUE (local: TASKS_QUEUE-dry-run)", "Full name of the Cloud Tasks queue for dry-run row tasks, so free dry runs never wait in front of live (paid) rows; generate accepts tasks from both queues."},
	{"GENERATE_URL", "(local: http://127.0.0.1:$PORT/tasks/generate)", "URL Cloud Tasks posts row tasks to (the generate function)."},
	{"TASKS_SERVICE_ACCOUNT", "", "Service account whose OIDC token Cloud Tasks attaches to each task; empty sends none."},
	{"TASKS_DISPATCH_DEADLINE", "10m", "How long one task delivery may run (Cloud Tasks allows 15s–30m)."},
	{"TASKS_MAX_ATTEMPTS", "8", "Deliveries per task before its row is failed (match the queue's retry config)."},
	{"ROW_LEASE", "TASKS_DISPATCH_DEADLINE + 30s", "How long a running row belongs to one attempt before another may take over."},
	{"PUBLIC_BASE_URL", "(the request's own origin)", "Origin of the submit function, used in statusUrl."},
	{"PROGRESS_BASE_URL", "PUBLIC_BASE_URL", "Origin of the progress service, used in progressUrl."},
	{"SIGNED_URL_TTL", "15m", "Validity of signed image URLs (at most 7 days)."},
	{"SIGNING_SERVICE_ACCOUNT", "(detected)", "Service account that signs URLs through IAM signBlob in the cloud."},
	{"SIGNING_KEY_FILE", "(local: $DATA_DIR/signing-key.pem)", "PEM key that signs URLs locally; unset in the cloud."},
	{"SSE_HEARTBEAT", "30s", "Interval of event: ping on progress streams."},
	{"SSE_POLL_MIN", "250ms", "Ledger poll of a progress tail while rows are being generated or change (after a poll that saw rows finish while others still generate, the next comes within 50 ms; a running row's result is also looked for from a second after the row's last write, every 50 ms while it may land)."},
	{"SSE_POLL_MAX", "2s", "Slowest ledger poll of a progress tail, reached while rows only wait in the queue."},
	{"SSE_MAX_DURATION", "59m", "A progress stream ends itself after this long, before Cloud Run's request timeout."},
	{"SSE_MIN_HEADROOM", "0.1", "The progress service refuses new streams (503 OVERLOADED) while less than this share of its memory limit is free."},
	{"SSE_MAX_STREAMS_PER_USER", "50", "Progress streams one user may hold open on one instance; more answer 429 RATE_LIMITED."},
	{"SSE_RETRY", "2s", "Reconnect delay suggested to EventSource clients (retry:)."},
	{"DRY_RUN_DELAY", "0", "Time the placeholder generator takes per image, to watch progress arrive."},
	{"LIVE_BACKEND", "", "Image model backend of live runs: vertex (Application Default Credentials), gemini (API key), or empty for none."},
	{"GOOGLE_CLOUD_PROJECT", "", "Project of the Vertex AI backend."},
	{"VERTEX_LOCATION", "global", "Location of the Vertex AI backend."},
	{"GEMINI_API_KEY", "", "API key of the Gemini API backend (from Secret Manager in the cloud; never in the repo)."},
	{"GEMINI_BASE_URL", "", "Endpoint override of the model API (a proxy, or a fake model in tests)."},
	{"MODEL_TIMEOUT", "120s", "Longest wait for one image from the model."},
	{"DAILY_BUDGET_USD", "25", "Default daily budget of each user for live runs, in USD; per-user overrides in config/budgets.json."},
	{"DAILY_BUDGET_TOTAL_USD", "250", "Daily cap on the live spend of the whole deployment, every user together, in USD (UTC days); 0 stops live runs."},
	{"BUDGET_PATIENCE", "10s", "How long a submit keeps retrying a contended budget before answering 503 BUDGET_CONTENDED."},
	{"CONFIG_TTL", "30s", "How long flags and budget overrides read from the bucket are cached."},
	{"HYBRID_V1_ENABLED", "on", "Master switch of the batch API: on, off, or a percentage of users (canary), e.g. 10%."},
	{"LIVE_RUNS", "on", "Live (paid) runs: on, off, or a percentage of users; dry runs are unaffected."},
	{"REFS_ALLOW_LOOPBACK", "false", "Let references come from 127.0.0.1 over http (local demos and tests only; refused in the cloud)."},
	{"REF_BUCKETS", "", "Comma-separated buckets gs:// references may name."},
	{"REF_MAX_FETCHES", "8", "Reference fetches running at once on one instance, across all its submits; the others wait their turn."},
	{"REF_MAX_INFLIGHT_MIB", "128", "MiB of reference images being fetched at once on one instance: each fetch reserves its size limit (10 MiB) or its declared length before reading (at least 10)."},
	{"REF_RESOLVE_TIMEOUT", "25s", "Longest a submit spends fetching its references, waits included; then it answers 422 REF_FETCH_FAILED naming the slow ones. Keep it well below the submit function's timeout (60s)."},
	{"MODELS_JSON", "", "JSON overlay of the model table: prices per size, reference limits, aspect ratios, sizes, formats, seed support, backends, default; a model set to null is withdrawn."},
	{"LOG_LEVEL", "info", "debug, info, warn or error."},
	{"AUTH_MODE", "(local: none)", "How callers authenticate: google (ID tokens), apikey (keys in config/apikeys.json), or none (local stack only)."},
	{"AUTH_ALLOW", "", "Who may call with AUTH_MODE=google (required there: empty refuses to start): comma-separated e-mail addresses and *@domain entries, case-insensitive; the token must carry email_verified. Service accounts (*.gserviceaccount.com) only by exact address."},
	{"AUTH_AUDIENCES", "", "Accepted ID-token audiences (comma-separated): OAuth client ids, the Identity Platform project id."},
	{"AUTH_ISSUERS", "https://accounts.google.com,accounts.google.com", "Accepted ID-token issuers; add https://securetoken.google.com/<project> for Identity Platform."},
	{"AUTH_JWKS_URLS", "(Google's and Identity Platform's)", "Key sets that sign accepted ID tokens."},
	{"PROGRESS_TOKEN_KEYS", "(local: derived from the signing key)", "HMAC keys of progress tokens, id:base64,… — the first signs, all verify (rotation). From Secret Manager."},
	{"PROGRESS_TOKEN_TTL", "1h", "Lifetime of the progress token in progressUrl."},
	{"CORS_ORIGINS", "", "Browser origins allowed to call the API (comma-separated, or *)."},
	{"SUBMIT_RATE_PER_MINUTE", "30", "Submits per user per minute on one instance before 429 RATE_LIMITED."},
	{"MAX_QUEUED_ROWS_PER_USER", "100", "Rows of one user's unfinished batches; a submit that would go over answers 429 RATE_LIMITED."},
	{"UPLOADS_PER_USER_PER_DAY", "200", "Reference uploads (POST /uploads) one user may start in any 24 hours; more answer 429 RATE_LIMITED."},
	{"TASKS_OIDC_AUDIENCE", "", "Audience of the tasks' OIDC tokens (empty: Cloud Tasks uses GENERATE_URL). When set, generate checks each task's token as Cloud Run hands it on (signature removed after Cloud Run's IAM check): this audience, Google's issuer, TASKS_SERVICE_ACCOUNT's verified e-mail, not expired. Required, with TASKS_SERVICE_ACCOUNT, everywhere but on the emulators: without it generate refuses to start."},
	{"WEBHOOK_SIGNING_KEYS", "(local: derived from the signing key)", "Ed25519 keys that sign completion webhooks (X-Assetgen-Signature), id:base64-seed,… (32-byte seeds) — the first signs, all are published at GET /webhooks/keys (rotation). From Secret Manager; a malformed value stops the instance."},
	{"NOTIFY_MAX_ELAPSED", "30s", "How long one webhook or Sheets delivery keeps retrying before it is recorded as failed (the housekeeping job retries it later)."},
	{"METRICS_TOKEN", "", "Bearer token a scraper presents to read /metrics on a deployment (open locally; off when empty)."},
	{"SHEETS_API_URL", "", "Endpoint of the Google Sheets API; empty uses Google's in the cloud and disables write-back locally."},
	{"HISTORY_RETENTION", "720h", "How long batches, their images and history are kept: stable image links last as long; the housekeeping job deletes what is older."},
	{"STORAGE_EMULATOR_HOST", "(local: set by make run)", "host:port of a Cloud Storage emulator; the storage client uses it instead of Google Cloud."},
	{"TASKS_EMULATOR_HOST", "(local: set by make run)", "host:port of the Cloud Tasks stand-in; the tasks client uses it instead of Google Cloud."},
	{"K_SERVICE", "(set by Cloud Run)", "Name of the Cloud Run service; where it is set (or Cloud Storage is real), generate refuses to start unless TASKS_OIDC_AUDIENCE is set."},
}

// LocalVars are the settings only the local stack (make run) reads.
var LocalVars = []Var{
	{"PORT", "8080", "Port of the local stack (all three functions)."},
	{"HOST", "127.0.0.1", "Interface the local stack listens on; with AUTH_MODE=none (its default) only a loopback address or localhost, since that mode trusts X-Assetgen-User."},
	{"DATA_DIR", ".data", "Where the local stack keeps the emulated bucket, its signing key and its unfinished tasks (a restart on the same PORT delivers them)."},
	{"LOCAL_GCS_ADDR", "127.0.0.1:4443", "Address of the embedded Cloud Storage emulator (signed URLs point here)."},
	{"LOCAL_TASKS_ADDR", "127.0.0.1:8123", "Address of the embedded Cloud Tasks stand-in (gRPC)."},
	{"TASKS_DUPLICATE_DELIVERY", "false", "Deliver every task twice, to watch at-least-once delivery do no harm."},
	{"LOCAL_TASKS_MAX_CONCURRENT", "100", "Deliveries the Cloud Tasks stand-in makes at once (the queue's max concurrent dispatches)."},
	{"LOCAL_TASKS_DRY_RUN_MAX_CONCURRENT", "100", "Deliveries the Cloud Tasks stand-in makes at once from the dry-run queue (TASKS_DRY_RUN_QUEUE, locally TASKS_QUEUE-dry-run unless set), on top of LOCAL_TASKS_MAX_CONCURRENT."},
	{"LOCAL_CLOUD_RUN_IAM", "false", "Put a Cloud Run-like IAM check before the generate route: tasks carry signed OIDC tokens of TASKS_SERVICE_ACCOUNT, the check answers 401/403 as Cloud Run does and hands generate the token with its signature removed."},
	{"LOCAL_FAKE_MODEL", "false", "Serve live runs from an embedded fake of the model APIs, as Vertex AI (every model; LIVE_BACKEND=gemini: as the Gemini API), free; prompt markers such as [blocked] script failures."},
	{"LOCAL_FAKE_MODEL_DELAY", "1s", "How long the fake model takes per image."},
	{"LOCAL_TASKS_NAME_WINDOW", "1h", "How long the Cloud Tasks stand-in keeps the name of a task that ran or was deleted taken (CreateTask answers AlreadyExists and nothing runs), as Cloud Tasks does for up to about an hour; remembered in DATA_DIR across restarts."},
	{"LOCAL_STORAGE_FAULTS", "", "Faults between the storage client and the emulator, e.g. `error=0.1,lost=0.05,latency=50ms`: error fails that share of requests before they reach the emulator (503 or 429), lost lets the emulator apply that share and then answers 503 or resets the connection, latency delays every call; seed=N repeats the draws."},
}

// Markdown renders vars as the README's configuration table.
func Markdown(vars []Var) string {
	var b strings.Builder
	b.WriteString("| variable | default | meaning |\n|---|---|---|\n")
	for _, v := range vars {
		def := "(empty)"
		if v.Default != "" {
			def = "`" + v.Default + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.Name, def, v.Help)
	}
	return b.String()
}

// Config is the parsed environment.
type Config struct {
	Bucket              string
	Queue               string
	DryRunQueue         string
	GenerateURL         string
	TasksServiceAccount string
	DispatchDeadline    time.Duration
	MaxAttempts         int
	RowLease            time.Duration
	PublicBaseURL       string
	ProgressBaseURL     string
	SignedURLTTL        time.Duration
	SigningAccount      string
	SigningKeyFile      string
	SSEHeartbeat        time.Duration
	SSEPollMin          time.Duration
	SSEPollMax          time.Duration
	SSEMaxDuration      time.Duration
	SSERetry            time.Duration
	SSEMinHeadroom      float64
	SSEStreamsPerUser   int
	DryRunDelay         time.Duration
	LiveBackend         string
	Project             string
	VertexLocation      string
	GeminiAPIKey        string
	GeminiBaseURL       string
	ModelTimeout        time.Duration
	DailyBudgetUSD      float64
	DailyBudgetTotalUSD float64
	BudgetPatience      time.Duration
	ConfigTTL           time.Duration
	RefsAllowLoopback   bool
	RefBuckets          []string
	RefMaxFetches       int
	RefMaxInflightMiB   int
	RefResolveTimeout   time.Duration
	AuthMode            string
	AuthAllow           []string
	AuthAudiences       []string
	AuthIssuers         []string
	AuthJWKSURLs        []string
	ProgressTokenKeys   string
	ProgressTokenTTL    time.Duration
	CORSOrigins         string
	SubmitRatePerMinute int
	QueuedRowsPerUser   int
	UploadsPerDay       int
	TasksOIDCAudience   string
	HistoryRetention    time.Duration
	WebhookSigningKeys  string
	SheetsAPIURL        string
	NotifyMaxElapsed    time.Duration
	MetricsToken        string
	Models              models.Table
	LogLevel            slog.Level
	StorageEmulatorHost string
	TasksEmulatorHost   string
	// CloudRunService is K_SERVICE, which Cloud Run sets in every instance.
	CloudRunService string
}

// Local reports whether the config points at the embedded emulators.
func (c Config) Local() bool { return c.StorageEmulatorHost != "" }

// Load reads the configuration through getenv (os.Getenv in production, a map
// in tests) and reports every bad value at once.
func Load(getenv func(string) string) (Config, error) {
	p := parser{getenv: getenv}
	c := Config{
		Bucket:              p.str("BUCKET", "assetgen-local"),
		Queue:               p.str("TASKS_QUEUE", "projects/assetgen-local/locations/local/queues/generate"),
		DryRunQueue:         p.str("TASKS_DRY_RUN_QUEUE", ""),
		GenerateURL:         p.str("GENERATE_URL", ""),
		TasksServiceAccount: p.str("TASKS_SERVICE_ACCOUNT", ""),
		DispatchDeadline:    p.dur("TASKS_DISPATCH_DEADLINE", 10*time.Minute),
		MaxAttempts:         p.int("TASKS_MAX_ATTEMPTS", 8),
		PublicBaseURL:       strings.TrimRight(p.str("PUBLIC_BASE_URL", ""), "/"),
		ProgressBaseURL:     strings.TrimRight(p.str("PROGRESS_BASE_URL", ""), "/"),
		SignedURLTTL:        p.dur("SIGNED_URL_TTL", 15*time.Minute),
		SigningAccount:      p.str("SIGNING_SERVICE_ACCOUNT", ""),
		SigningKeyFile:      p.str("SIGNING_KEY_FILE", ""),
		SSEHeartbeat:        p.dur("SSE_HEARTBEAT", 30*time.Second),
		SSEPollMin:          p.dur("SSE_POLL_MIN", 250*time.Millisecond),
		SSEPollMax:          p.dur("SSE_POLL_MAX", 2*time.Second),
		SSEMaxDuration:      p.dur("SSE_MAX_DURATION", 59*time.Minute),
		SSERetry:            p.dur("SSE_RETRY", 2*time.Second),
		SSEMinHeadroom:      p.float("SSE_MIN_HEADROOM", 0.1),
		SSEStreamsPerUser:   p.int("SSE_MAX_STREAMS_PER_USER", 50),
		DryRunDelay:         p.dur("DRY_RUN_DELAY", 0),
		LiveBackend:         p.str("LIVE_BACKEND", ""),
		Project:             p.str("GOOGLE_CLOUD_PROJECT", ""),
		VertexLocation:      p.str("VERTEX_LOCATION", "global"),
		GeminiAPIKey:        getenv("GEMINI_API_KEY"),
		GeminiBaseURL:       p.str("GEMINI_BASE_URL", ""),
		ModelTimeout:        p.dur("MODEL_TIMEOUT", 120*time.Second),
		DailyBudgetUSD:      p.float("DAILY_BUDGET_USD", 25),
		DailyBudgetTotalUSD: p.float("DAILY_BUDGET_TOTAL_USD", 250),
		BudgetPatience:      p.dur("BUDGET_PATIENCE", 10*time.Second),
		ConfigTTL:           p.dur("CONFIG_TTL", 30*time.Second),
		RefsAllowLoopback:   p.bool("REFS_ALLOW_LOOPBACK"),
		RefBuckets:          p.list("REF_BUCKETS"),
		RefMaxFetches:       p.int("REF_MAX_FETCHES", 8),
		RefMaxInflightMiB:   p.int("REF_MAX_INFLIGHT_MIB", 128),
		RefResolveTimeout:   p.dur("REF_RESOLVE_TIMEOUT", 25*time.Second),
		AuthMode:            p.str("AUTH_MODE", ""),
		AuthAllow:           p.list("AUTH_ALLOW"),
		AuthAudiences:       p.list("AUTH_AUDIENCES"),
		AuthIssuers:         p.list("AUTH_ISSUERS"),
		AuthJWKSURLs:        p.list("AUTH_JWKS_URLS"),
		ProgressTokenKeys:   getenv("PROGRESS_TOKEN_KEYS"),
		ProgressTokenTTL:    p.dur("PROGRESS_TOKEN_TTL", time.Hour),
		CORSOrigins:         p.str("CORS_ORIGINS", ""),
		SubmitRatePerMinute: p.int("SUBMIT_RATE_PER_MINUTE", 30),
		QueuedRowsPerUser:   p.int("MAX_QUEUED_ROWS_PER_USER", 100),
		UploadsPerDay:       p.int("UPLOADS_PER_USER_PER_DAY", 200),
		TasksOIDCAudience:   p.str("TASKS_OIDC_AUDIENCE", ""),
		HistoryRetention:    p.dur("HISTORY_RETENTION", 720*time.Hour),
		WebhookSigningKeys:  getenv("WEBHOOK_SIGNING_KEYS"),
		SheetsAPIURL:        p.str("SHEETS_API_URL", ""),
		NotifyMaxElapsed:    p.dur("NOTIFY_MAX_ELAPSED", 30*time.Second),
		MetricsToken:        getenv("METRICS_TOKEN"),
		StorageEmulatorHost: p.str("STORAGE_EMULATOR_HOST", ""),
		TasksEmulatorHost:   p.str("TASKS_EMULATOR_HOST", ""),
		CloudRunService:     p.str("K_SERVICE", ""),
	}
	c.RowLease = p.dur("ROW_LEASE", c.DispatchDeadline+30*time.Second)
	if c.DryRunQueue == "" {
		c.DryRunQueue = c.Queue
	}
	if c.ProgressBaseURL == "" {
		c.ProgressBaseURL = c.PublicBaseURL
	}
	if c.AuthMode == "" && c.Local() {
		c.AuthMode = "none"
	}
	if err := c.LogLevel.UnmarshalText([]byte(p.str("LOG_LEVEL", "info"))); err != nil {
		p.fail("LOG_LEVEL", err)
	}
	var err error
	if c.Models, err = models.Parse(getenv("MODELS_JSON")); err != nil {
		p.fail("MODELS_JSON", err)
	}
	p.check(c)
	return c, errors.Join(p.errs...)
}

type parser struct {
	getenv func(string) string
	errs   []error
}

func (p *parser) fail(name string, err error) {
	p.errs = append(p.errs, fmt.Errorf("config: %s: %w", name, err))
}

func (p *parser) str(name, def string) string {
	if v := strings.TrimSpace(p.getenv(name)); v != "" {
		return v
	}
	return def
}

func (p *parser) dur(name string, def time.Duration) time.Duration {
	v := p.str(name, "")
	if v == "" {
		return def
	}
	if v == "0" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		p.fail(name, fmt.Errorf("want a duration such as 30s, got %q", v))
		return def
	}
	return d
}

func (p *parser) float(name string, def float64) float64 {
	v := p.str(name, "")
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 {
		p.fail(name, fmt.Errorf("want a non-negative number, got %q", v))
		return def
	}
	return f
}

func (p *parser) bool(name string) bool {
	v := p.str(name, "")
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(name, fmt.Errorf("want true or false, got %q", v))
	}
	return b
}

func (p *parser) list(name string) []string {
	var out []string
	for _, item := range strings.Split(p.str(name, ""), ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func (p *parser) int(name string, def int) int {
	v := p.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		p.fail(name, fmt.Errorf("want a positive integer, got %q", v))
		return def
	}
	return n
}

func (p *parser) check(c Config) {
	if c.DispatchDeadline < 15*time.Second || c.DispatchDeadline > 30*time.Minute {
		p.fail("TASKS_DISPATCH_DEADLINE", fmt.Errorf("must be within 15s and 30m, got %s", c.DispatchDeadline))
	}
	if c.SignedURLTTL <= 0 || c.SignedURLTTL > 7*24*time.Hour {
		p.fail("SIGNED_URL_TTL", fmt.Errorf("must be within (0, 168h], got %s", c.SignedURLTTL))
	}
	if c.SSEPollMin <= 0 || c.SSEPollMax < c.SSEPollMin {
		p.fail("SSE_POLL_MIN", fmt.Errorf("need 0 < SSE_POLL_MIN ≤ SSE_POLL_MAX, got %s and %s", c.SSEPollMin, c.SSEPollMax))
	}
	if c.SSEHeartbeat <= 0 || c.SSEMaxDuration <= 0 {
		p.fail("SSE_HEARTBEAT", errors.New("SSE_HEARTBEAT and SSE_MAX_DURATION must be positive"))
	}
	for name, u := range map[string]string{"GENERATE_URL": c.GenerateURL, "PUBLIC_BASE_URL": c.PublicBaseURL, "PROGRESS_BASE_URL": c.ProgressBaseURL} {
		if u == "" {
			continue
		}
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			p.fail(name, fmt.Errorf("want an absolute http(s) URL, got %q", u))
		}
	}
	switch c.LiveBackend {
	case "":
	case "vertex":
		if c.Project == "" {
			p.fail("GOOGLE_CLOUD_PROJECT", errors.New("LIVE_BACKEND=vertex needs the project"))
		}
	case "gemini":
		// The key is checked where the model client is built (generate): submit
		// only needs to know that live runs exist, and never sees the key.
	default:
		p.fail("LIVE_BACKEND", fmt.Errorf("want vertex, gemini or empty, got %q", c.LiveBackend))
	}
	// Whether the mode suits the deployment is checked where callers are
	// authenticated (submit, progress); generate serves Cloud Tasks only.
	switch c.AuthMode {
	case "", "none", "google", "apikey":
	default:
		p.fail("AUTH_MODE", fmt.Errorf("want google, apikey or none, got %q", c.AuthMode))
	}
	if c.RefMaxInflightMiB < 10 {
		p.fail("REF_MAX_INFLIGHT_MIB", fmt.Errorf("must hold one reference of 10 MiB at least, got %d", c.RefMaxInflightMiB))
	}
	// The submit function has 60s; the batch is written after its references.
	if c.RefResolveTimeout <= 0 || c.RefResolveTimeout > 50*time.Second {
		p.fail("REF_RESOLVE_TIMEOUT", fmt.Errorf("must be within (0, 50s], below the submit function's 60s timeout, got %s", c.RefResolveTimeout))
	}
	if c.AuthMode == "google" && len(c.AuthAllow) == 0 {
		// A Google signature alone admits every Google identity, any project's
		// service accounts included.
		p.fail("AUTH_ALLOW", errors.New("AUTH_MODE=google needs the e-mail addresses or *@domain entries that may call"))
	}
	if c.RefsAllowLoopback && !c.Local() {
		p.fail("REFS_ALLOW_LOOPBACK", errors.New("only the local stack may fetch references from loopback"))
	}
	queues := [][2]string{{"TASKS_QUEUE", c.Queue}}
	if c.DryRunQueue != c.Queue {
		queues = append(queues, [2]string{"TASKS_DRY_RUN_QUEUE", c.DryRunQueue})
	}
	for _, q := range queues {
		if !strings.HasPrefix(q[1], "projects/") || strings.Count(q[1], "/") != 5 || strings.HasSuffix(q[1], "/") {
			p.fail(q[0], fmt.Errorf("want projects/P/locations/L/queues/Q, got %q", q[1]))
		}
	}
}
