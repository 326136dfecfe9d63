// Command loadtest submits dry-run batches to a deployment (or the local stack),
// follows every batch to completion over its progress stream, fetches every
// image through its signed URL and checks it is a PNG. It prints the wall
// time, the submit latency (p50, p95), the error rate and each batch's time to
// event: done, and exits non-zero when a gate fails: submit p95 at or over
// -max-submit-p95, or failed batches at or over -max-error-rate.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/assetgen/assetgen/shared/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	base := fs.String("base", "http://127.0.0.1:8080", "origin of the submit function")
	p := client.Plan{KeepGoing: true}
	fs.IntVar(&p.Batches, "batches", 10, "batches to submit, all at once")
	fs.IntVar(&p.Rows, "rows", 10, "rows per batch (1-10)")
	fs.IntVar(&p.Variants, "variants", 3, "variants per row (1-3)")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	tokenEnv := fs.String("token-env", "", "name of an environment variable holding a bearer token")
	var g gates
	fs.DurationVar(&g.MaxSubmitP95, "max-submit-p95", 2*time.Second, "fail when the submit latency's p95 reaches this")
	fs.Float64Var(&g.MaxErrorRate, "max-error-rate", 0.05, "fail when this share of batches (0-1) fails")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := client.New(*base)
	if *tokenEnv != "" {
		c.Token = getenv(*tokenEnv)
	}
	rep, runErr := c.Exercise(ctx, p)
	s := summarize(rep)
	fmt.Fprintf(stdout, "loadtest: %d/%d images verified in %.2fs (%d batches × %d rows × %d variants) against %s\n",
		rep.Verified, p.Images(), rep.Elapsed.Seconds(), p.Batches, p.Rows, p.Variants, *base)
	fmt.Fprintf(stdout, "submit latency: p50 %s p95 %s; errors: %d of %d batches (%.1f%%); time to done: p50 %s p95 %s max %s\n",
		ms(s.SubmitP50), ms(s.SubmitP95), s.Failed, s.Batches, 100*s.ErrorRate, ms(s.DoneP50), ms(s.DoneP95), ms(s.DoneMax))
	for i, b := range rep.Batches {
		line := fmt.Sprintf("  batch %2d %-36s submit %s", i, b.ID, ms(b.Submit))
		if b.Done > 0 {
			line += " done " + ms(b.Done)
		}
		if b.Err != nil {
			line += " FAILED: " + b.Err.Error()
		}
		fmt.Fprintln(stdout, line)
	}
	failed := g.check(s)
	for _, f := range failed {
		fmt.Fprintln(stdout, "gate failed:", f)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d gate(s) failed", len(failed))
	}
	fmt.Fprintf(stdout, "gates passed: submit p95 %s < %s, errors %.1f%% < %.1f%%\n", ms(s.SubmitP95), ms(g.MaxSubmitP95), 100*s.ErrorRate, 100*g.MaxErrorRate)
	if runErr != nil && s.Failed == 0 {
		// Every batch finished but the run still failed (images missing).
		return runErr
	}
	return nil
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }
