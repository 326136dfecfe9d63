// Command ssesoak holds progress streams open against a stack or deployment
// for a while and checks what they delivered. -streams streams are split over
// -batches groups; each group submits a dry-run batch, its streams follow it to
// event: done (reconnecting with Last-Event-ID whenever a connection ends
// early, as EventSource does), then the group submits the next batch, until
// -duration has passed. Every -refresh each group mints a fresh progress URL
// (GET /batch/{id}/progress-token), as a page open for longer than the token's
// lifetime must; a bearer token is re-read from -token-file then too.
//
// Per stream it counts connections, drops (a connection that ended before
// done), refusals (a connection answered with an error status), duplicates (an
// row event id delivered twice), regressions (a row event older than one already
// seen) and gaps (a row whose final version, read from GET /batch after done,
// the stream never delivered). It exits non-zero on any duplicate, regression
// or gap, or when a stream gave up.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ssesoak:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ssesoak", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.Base, "base", "http://127.0.0.1:8080", "origin of the submit function")
	fs.IntVar(&o.Streams, "streams", 50, "progress streams held open at once")
	fs.IntVar(&o.Batches, "batches", 5, "batches running at once; the streams are split over them")
	fs.IntVar(&o.Rows, "rows", 10, "rows per batch (1-10)")
	fs.IntVar(&o.Variants, "variants", 3, "variants per row (1-3)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Minute, "how long to keep submitting and streaming")
	fs.DurationVar(&o.Refresh, "refresh", 5*time.Minute, "mint a fresh progress URL (and re-read -token-file) this often")
	tokenEnv := fs.String("token-env", "", "name of an environment variable holding a bearer token")
	fs.StringVar(&o.TokenFile, "token-file", "", "file holding a bearer token, re-read every -refresh (overrides -token-env)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.Streams < 1 || o.Batches < 1 || o.Batches > o.Streams {
		return errors.New("need 1 ≤ -batches ≤ -streams")
	}
	if *tokenEnv != "" {
		o.Token = getenv(*tokenEnv)
	}
	start := time.Now()
	tot, err := soak(ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ssesoak: %d streams over %d concurrent batches for %s against %s\n", o.Streams, o.Batches, time.Since(start).Round(time.Second), o.Base)
	fmt.Fprintf(stdout, "batches %d, streams followed to done %d, events %d, connections %d, drops %d, reconnects %d, refusals %d, token refreshes %d\n",
		tot.Batches, tot.Finished, tot.Events, tot.Connections, tot.Drops, tot.Reconnects, tot.Refusals, tot.Refreshes)
	fmt.Fprintf(stdout, "duplicates %d, regressions %d, gaps %d, streams that gave up %d, streams opened after their batch finished %d\n", tot.Duplicates, tot.Regressions, tot.Gaps, tot.GaveUp, tot.Late)
	for _, e := range tot.Errors {
		fmt.Fprintln(stdout, "  ", e)
	}
	if bad := tot.Duplicates + tot.Regressions + tot.Gaps + tot.GaveUp; bad > 0 {
		return fmt.Errorf("%d stream faults", bad)
	}
	if tot.Finished == 0 {
		return errors.New("no stream reached done")
	}
	return nil
}

func readToken(o options) (string, error) {
	if o.TokenFile == "" {
		return o.Token, nil
	}
	b, err := os.ReadFile(o.TokenFile)
	if err != nil {
		return "", fmt.Errorf("reading -token-file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
