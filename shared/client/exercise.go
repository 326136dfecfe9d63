package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/ledger"
)

// Plan is a load to put on a deployment: dry-run batches, all submitted at once.
type Plan struct {
	Batches, Rows, Variants int
	// KeepGoing lets every batch run to its end when another fails, so a run
	// measures an error rate instead of stopping at the first failure.
	KeepGoing bool
}

// Images is how many images the plan makes.
func (p Plan) Images() int { return p.Batches * p.Rows * p.Variants }

// Report is what Exercise saw.
type Report struct {
	Verified int64
	Elapsed  time.Duration
	BatchIDs []string
	// Batches has one entry per batch of the plan, in plan order.
	Batches []BatchReport
}

// BatchReport is one batch's run.
type BatchReport struct {
	ID string
	// Submit is how long the submit took to answer (failed submits included).
	Submit time.Duration
	// Done is the time from sending the submit to reading event: done; zero
	// when the batch never got there.
	Done time.Duration
	// Err is why the batch failed, nil when every image was made and verified.
	Err error
}

// Exercise runs a plan end to end: it submits every batch, follows each to
// done over its progress stream, and fetches every image through its signed
// URL, checking it is a PNG. Without KeepGoing the first failure ends the run;
// with it every batch runs and the error joins every batch's failure.
func (c *Client) Exercise(ctx context.Context, p Plan) (Report, error) {
	start := time.Now()
	var verified atomic.Int64
	reps := make([]BatchReport, p.Batches)
	// Image checks of all batches share 16 connections, as a browser would.
	fetches := semaphore.NewWeighted(16)
	g, gctx := errgroup.WithContext(ctx)
	if p.KeepGoing {
		g, gctx = &errgroup.Group{}, ctx
	}
	for b := range p.Batches {
		g.Go(func() error {
			rep := &reps[b]
			rep.Err = c.exerciseBatch(gctx, p, b, rep, fetches, &verified)
			if p.KeepGoing {
				return nil
			}
			return rep.Err
		})
	}
	err := g.Wait()
	rep := Report{Verified: verified.Load(), Elapsed: time.Since(start), Batches: reps}
	var errs []error
	for _, b := range reps {
		rep.BatchIDs = append(rep.BatchIDs, b.ID)
		errs = append(errs, b.Err)
	}
	if p.KeepGoing {
		err = errors.Join(errs...)
	}
	if err == nil && rep.Verified != int64(p.Images()) {
		err = fmt.Errorf("verified %d images, want %d", rep.Verified, p.Images())
	}
	return rep, err
}

// exerciseBatch runs batch b of the plan, recording its timings in rep.
func (c *Client) exerciseBatch(ctx context.Context, p Plan, b int, rep *BatchReport, fetches *semaphore.Weighted, verified *atomic.Int64) error {
	req := batch.Request{RunMode: string(ledger.DryRun)}
	for r := range p.Rows {
		v := p.Variants
		req.Rows = append(req.Rows, batch.RowRequest{Prompt: fmt.Sprintf("exercise batch %d row %d", b, r), Variants: &v})
	}
	sent := time.Now()
	sub, err := c.Submit(ctx, req, "")
	rep.Submit = time.Since(sent)
	if err != nil {
		return fmt.Errorf("batch %d: submit: %w", b, err)
	}
	rep.ID = sub.BatchID
	final := map[int]api.Row{}
	var totals api.Totals
	_, err = c.Follow(ctx, sub.ProgressURL, "", func(ev Event) error {
		switch ev.Type {
		case "row":
			var r api.Row
			if err := json.Unmarshal(ev.Data, &r); err != nil {
				return err
			}
			final[r.Index] = r
		case "done":
			rep.Done = time.Since(sent)
			return json.Unmarshal(ev.Data, &totals)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("batch %s: progress: %w", sub.BatchID, err)
	}
	if want := p.Rows * p.Variants; totals.Variants.Done != want {
		return fmt.Errorf("batch %s: %d of %d images done (%+v)", sub.BatchID, totals.Variants.Done, want, totals.Variants)
	}
	fetch, fctx := errgroup.WithContext(ctx)
	for _, r := range final {
		for _, v := range r.Variants {
			if err := fetches.Acquire(fctx, 1); err != nil {
				break
			}
			fetch.Go(func() error {
				defer fetches.Release(1)
				if err := c.checkPNG(fctx, v.URL); err != nil {
					return fmt.Errorf("batch %s row %d variant %d: %w", sub.BatchID, r.Index, v.Index, err)
				}
				verified.Add(1)
				return nil
			})
		}
	}
	return fetch.Wait()
}

var pngMagic = []byte("\x89PNG\r\n\x1a\n")

func (c *Client) checkPNG(ctx context.Context, url string) error {
	if url == "" {
		return fmt.Errorf("a done variant has no URL")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.HTTP.Do(req)
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
