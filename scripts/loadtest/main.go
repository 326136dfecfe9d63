// Command loadtest submits dry-run batches to a deployment (or the local stack),
// follows every batch to completion over its progress stream, fetches every
// image through its signed URL and checks it is a PNG. It prints one summary
// line and exits non-zero on any failure.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	base := fs.String("base", "http://127.0.0.1:8080", "origin of the submit function")
	batches := fs.Int("batches", 10, "batches to submit, all at once")
	rows := fs.Int("rows", 10, "rows per batch (1-10)")
	variants := fs.Int("variants", 3, "variants per row (1-3)")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	token := fs.String("token-env", "", "name of an environment variable holding a bearer token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := client.New(*base)
	if *token != "" {
		c.Token = os.Getenv(*token)
	}

	start := time.Now()
	var images, checked atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	fetch := &errgroup.Group{}
	fetch.SetLimit(16)
	for b := range *batches {
		g.Go(func() error {
			req := batch.Request{RunMode: string(batch.DryRun)}
			for r := range *rows {
				v := *variants
				req.Rows = append(req.Rows, batch.RowRequest{Prompt: fmt.Sprintf("load test batch %d row %d", b, r), Variants: &v})
			}
			sub, err := c.Submit(gctx, req, "")
			if err != nil {
				return fmt.Errorf("batch %d: submit: %w", b, err)
			}
			final := map[int]api.Row{}
			var totals api.Totals
			_, err = c.Follow(gctx, sub.ProgressURL, "", func(ev client.Event) error {
				switch ev.Type {
				case "row":
					var r api.Row
					if err := json.Unmarshal(ev.Data, &r); err != nil {
						return err
					}
					final[r.Index] = r
				case "done":
					return json.Unmarshal(ev.Data, &totals)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("batch %s: progress: %w", sub.BatchID, err)
			}
			if totals.Variants.Done != *rows**variants {
				return fmt.Errorf("batch %s: %d of %d images done (%+v)", sub.BatchID, totals.Variants.Done, *rows**variants, totals.Variants)
			}
			for _, r := range final {
				for _, v := range r.Variants {
					images.Add(1)
					url := v.URL
					fetch.Go(func() error {
						if err := checkPNG(ctx, c.HTTP, url); err != nil {
							return fmt.Errorf("batch %s row %d: %w", sub.BatchID, r.Index, err)
						}
						checked.Add(1)
						return nil
					})
				}
			}
			return nil
		})
	}
	err := g.Wait()
	if ferr := fetch.Wait(); err == nil {
		err = ferr
	}
	want := int64(*batches * *rows * *variants)
	fmt.Fprintf(stdout, "loadtest: %d/%d images verified in %.2fs (%d batches × %d rows × %d variants) against %s\n",
		checked.Load(), want, time.Since(start).Seconds(), *batches, *rows, *variants, *base)
	if err == nil && checked.Load() != want {
		err = fmt.Errorf("verified %d images, want %d", checked.Load(), want)
	}
	return err
}

var pngMagic = []byte("\x89PNG\r\n\x1a\n")

func checkPNG(ctx context.Context, hc *http.Client, url string) error {
	if url == "" {
		return fmt.Errorf("a done variant has no URL")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(b, pngMagic) {
		return fmt.Errorf("image URL answered %d with %d bytes that are not a PNG", resp.StatusCode, len(b))
	}
	return nil
}
