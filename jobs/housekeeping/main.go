// Command housekeeping is the platform's Cloud Run job, run on a schedule: it
// does what no request should have to. It walks unfinished batches newest
// first and re-enqueues rows whose attempt died (expired lease) or that never
// left the queue, fails rows that have used up their attempts, and completes
// batches whose finisher crashed (final state.json, then the once-per-batch
// effects such as budget settlement). Then it prunes batches, idempotency
// records and budget days past retention — the bucket's lifecycle rules do
// that too; the job is the safety net, and does it on the emulator.
//
// Every change is a compare-and-swap transition, a create-once marker or a
// generation-guarded delete, so runs may overlap and repeat without harm. A
// stuck row is re-enqueued under a fresh task name (Cloud Tasks keeps a used
// name taken for up to an hour with nothing behind it); a row that gets two
// tasks is worked once, by the attempt that holds its lease.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/completion"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/ledgerstore"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/platform"
	"github.com/assetgen/assetgen/shared/queue"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "housekeeping:", err)
		os.Exit(1)
	}
}

// run is the whole job: flags and environment in, one summary line out. It
// returns an error when anything failed, so the execution shows as failed; the
// rest of the work is still done and the summary still printed.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	opts, err := parseFlags(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	localSigningKey(&cfg, getenv)
	if cfg.GenerateURL == "" {
		return errors.New("GENERATE_URL must name the generate function (re-enqueued tasks go there)")
	}
	log := obs.NewLogger(stdout, cfg.LogLevel)
	// The same platform the functions build: the ledger, the queue re-enqueued
	// tasks go to, and the finisher (budget settlement, signed webhooks,
	// Sheets, stable links) of the batches it completes.
	p, err := platform.Open(ctx, cfg, platform.Options{Getenv: getenv, Log: log})
	if err != nil {
		return err
	}
	defer p.Close()
	q, err := p.Queue()
	if err != nil {
		return err
	}
	finisher, err := p.Finisher()
	if err != nil {
		return err
	}

	runID := "housekeeping-" + obs.NewRequestID()
	log = log.With("run", runID)
	// The run's id travels into every re-enqueued task (X-Request-Id), so the
	// generate attempts it caused are found by it.
	ctx = obs.WithLogger(obs.WithRequestID(ctx, runID), log)
	j := newJob(opts, cfg, p.Ledger, p.Bucket, q, finisher, log, runID)
	log.Info("housekeeping: start", "dryRun", opts.dryRun, "maxRows", opts.maxRows, "maxBatches", opts.maxBatches,
		"maxObjects", opts.maxObjects, "retention", opts.retention.String(), "stuckAfter", opts.stuckAfter.String())
	err = j.run(ctx)
	log.Info("housekeeping: done", j.rep.attrs()...)
	fmt.Fprintln(stdout, j.rep.summary(opts.dryRun))
	return err
}

// job is one run's dependencies and tallies.
type job struct {
	opts     options
	store    *ledgerstore.Store
	bucket   *bucket.Bucket
	queue    *queue.Enqueuer
	finisher *completion.Finisher
	log      *slog.Logger
	runID    string
	policy   policy
	// now is when the run started: every age is measured from it.
	now time.Time
	rep report
}

func newJob(opts options, cfg config.Config, store *ledgerstore.Store, b *bucket.Bucket, q *queue.Enqueuer, f *completion.Finisher, log *slog.Logger, runID string) *job {
	return &job{
		opts: opts, store: store, bucket: b, queue: q, finisher: f, log: log, runID: runID,
		policy: policy{stuckAfter: opts.stuckAfter, maxAttempts: cfg.MaxAttempts},
		now:    time.Now().UTC(),
	}
}

// cutoff is the retention horizon: older batches and budget days go.
func (j *job) cutoff() time.Time { return j.now.Add(-j.opts.retention) }

// run does the recovery walk, then the pruning. A failed step is logged and
// counted, and the others still run.
func (j *job) run(ctx context.Context) error {
	var errs []error
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"recover", j.recoverBatches},
		{"prune batches", j.pruneBatches},
		{"prune idempotency records", j.pruneKeys},
		{"prune budget days", j.pruneBudgets},
		{"clear queued markers", j.clearQueued},
	}
	for _, s := range steps {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		if err := s.fn(ctx); err != nil {
			j.fail(ctx, s.name, err)
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
		}
	}
	if n := j.rep.errors.Load(); n > 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%d operations failed; see the logs", n))
	}
	return errors.Join(errs...)
}

// fail logs and counts one failed operation.
func (j *job) fail(ctx context.Context, what string, err error, attrs ...any) {
	j.rep.errors.Add(1)
	obs.Logger(ctx).Error("housekeeping: "+what+" failed", append(attrs, "error", err)...)
}

// workers bounds the storage and queue requests one step keeps in flight.
const workers = 8

// localSigningKey points the job at the local stack's signing key when it
// runs against the emulators without SIGNING_KEY_FILE: the progress-token,
// link and webhook keys of `make run` are derived from it, so the job signs
// what the stack verifies. In the cloud the keys come from Secret Manager.
func localSigningKey(cfg *config.Config, getenv func(string) string) {
	if !cfg.Local() || cfg.SigningKeyFile != "" {
		return
	}
	dir := getenv("DATA_DIR")
	if dir == "" {
		dir = ".data"
	}
	if key := filepath.Join(dir, "signing-key.pem"); fileExists(key) {
		cfg.SigningKeyFile = key
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
