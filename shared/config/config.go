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
	{"SSE_POLL_MIN", "250ms", "Fastest ledger poll of a progress tail (while rows change)."},
	{"SSE_POLL_MAX", "2s", "Slowest ledger poll of a progress tail (while nothing changes)."},
	{"SSE_MAX_DURATION", "59m", "A progress stream ends itself after this long, before Cloud Run's request timeout."},
	{"SSE_RETRY", "2s", "Reconnect delay suggested to EventSource clients (retry:)."},
	{"DRY_RUN_DELAY", "0", "Time the placeholder generator takes per image, to watch progress arrive."},
	{"MODELS_JSON", "", "JSON overlay of the model table: prices, reference limits, aspect ratios, default."},
	{"LOG_LEVEL", "info", "debug, info, warn or error."},
	{"STORAGE_EMULATOR_HOST", "(local: set by make run)", "host:port of a Cloud Storage emulator; the storage client uses it instead of Google Cloud."},
	{"TASKS_EMULATOR_HOST", "(local: set by make run)", "host:port of the Cloud Tasks stand-in; the tasks client uses it instead of Google Cloud."},
}

// Config is the parsed environment.
type Config struct {
	Bucket              string
	Queue               string
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
	DryRunDelay         time.Duration
	Models              models.Table
	LogLevel            slog.Level
	StorageEmulatorHost string
	TasksEmulatorHost   string
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
		DryRunDelay:         p.dur("DRY_RUN_DELAY", 0),
		StorageEmulatorHost: p.str("STORAGE_EMULATOR_HOST", ""),
		TasksEmulatorHost:   p.str("TASKS_EMULATOR_HOST", ""),
	}
	c.RowLease = p.dur("ROW_LEASE", c.DispatchDeadline+30*time.Second)
	if c.ProgressBaseURL == "" {
		c.ProgressBaseURL = c.PublicBaseURL
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
	if !strings.HasPrefix(c.Queue, "projects/") || strings.Count(c.Queue, "/") != 5 {
		p.fail("TASKS_QUEUE", fmt.Errorf("want projects/P/locations/L/queues/Q, got %q", c.Queue))
	}
}
