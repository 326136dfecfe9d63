package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// options are the job's flags.
type options struct {
	dryRun     bool
	maxRows    int
	maxBatches int
	maxObjects int
	retention  time.Duration
	stuckAfter time.Duration
}

// Defaults. Retention follows the bucket's lifecycle rule (retention_days = 30).
const (
	defaultRetention = 720 * time.Hour
	// minRetention keeps batches well past the 24 hours an Idempotency-Key may
	// still name them.
	minRetention = 48 * time.Hour
)

// parseFlags reads the flags; HISTORY_RETENTION (a Go duration such as 720h)
// is the default of --retention. flag.ErrHelp means usage was printed.
func parseFlags(args []string, getenv func(string) string, out io.Writer) (options, error) {
	retention := defaultRetention
	if v := strings.TrimSpace(getenv("HISTORY_RETENTION")); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return options{}, fmt.Errorf("HISTORY_RETENTION: want a duration such as 720h, got %q", v)
		}
		retention = d
	}
	var o options
	fs := flag.NewFlagSet("housekeeping", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.BoolVar(&o.dryRun, "dry-run", false, "report what would be done; change nothing")
	fs.IntVar(&o.maxRows, "max-rows", 500, "most row objects read per run")
	fs.IntVar(&o.maxBatches, "max-batches", 200, "most batches examined for recovery, and most batches pruned, per run")
	fs.IntVar(&o.maxObjects, "max-objects", 5000, "most idempotency records and budget accounts examined for pruning per run")
	fs.DurationVar(&o.retention, "retention", retention, "batches and budget days older than this are deleted (default: HISTORY_RETENTION, else 720h)")
	fs.DurationVar(&o.stuckAfter, "stuck-after", 15*time.Minute, "a queued row (or a released running row) unchanged for this long is re-enqueued")
	fs.Usage = func() {
		fmt.Fprintln(out, "usage: housekeeping [flags]")
		fmt.Fprintln(out, "Recovers stuck rows, completes batches whose finisher crashed, and prunes old batches,")
		fmt.Fprintln(out, "idempotency records and budget days. Configuration comes from the environment (BUCKET, ...).")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %q", fs.Args()))
	}
	if o.maxRows < 1 || o.maxBatches < 1 || o.maxObjects < 1 {
		errs = append(errs, errors.New("--max-rows, --max-batches and --max-objects must be at least 1"))
	}
	if o.retention < minRetention {
		errs = append(errs, fmt.Errorf("--retention must be at least %s (idempotency keys name batches for 24h), got %s", minRetention, o.retention))
	}
	if o.stuckAfter < time.Minute {
		errs = append(errs, fmt.Errorf("--stuck-after must be at least 1m, got %s", o.stuckAfter))
	}
	return o, errors.Join(errs...)
}
