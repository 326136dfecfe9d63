// Command loadtest submits dry-run batches to a deployment (or the local stack),
// follows every batch to completion over its progress stream, fetches every
// image through its signed URL and checks it is a PNG. It prints one summary
// line and exits non-zero on any failure.
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
	var p client.Plan
	fs.IntVar(&p.Batches, "batches", 10, "batches to submit, all at once")
	fs.IntVar(&p.Rows, "rows", 10, "rows per batch (1-10)")
	fs.IntVar(&p.Variants, "variants", 3, "variants per row (1-3)")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	tokenEnv := fs.String("token-env", "", "name of an environment variable holding a bearer token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := client.New(*base)
	if *tokenEnv != "" {
		c.Token = getenv(*tokenEnv)
	}
	rep, err := c.Exercise(ctx, p)
	fmt.Fprintf(stdout, "loadtest: %d/%d images verified in %.2fs (%d batches × %d rows × %d variants) against %s\n",
		rep.Verified, p.Images(), rep.Elapsed.Seconds(), p.Batches, p.Rows, p.Variants, *base)
	return err
}
