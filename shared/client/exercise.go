package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/ledger"
)

// Plan is a load to put on a deployment: dry-run batches, all submitted at once.
type Plan struct {
	Batches, Rows, Variants int
}

// Images is how many images the plan makes.
func (p Plan) Images() int { return p.Batches * p.Rows * p.Variants }

// Report is what Exercise saw.
type Report struct {
	Verified int64
	Elapsed  time.Duration
	BatchIDs []string
}

// Exercise runs a plan end to end: it submits every batch, follows each to
// done over its progress stream, and fetches every image through its signed
// URL, checking it is a PNG. Any failure ends the run with an error.
func (c *Client) Exercise(ctx context.Context, p Plan) (Report, error) {
	start := time.Now()
	var verified atomic.Int64
	ids := make([]string, p.Batches)
	g, gctx := errgroup.WithContext(ctx)
	fetch, fctx := errgroup.WithContext(ctx)
	fetch.SetLimit(16)
	for b := range p.Batches {
		g.Go(func() error {
			req := batch.Request{RunMode: string(ledger.DryRun)}
			for r := range p.Rows {
				v := p.Variants
				req.Rows = append(req.Rows, batch.RowRequest{Prompt: fmt.Sprintf("exercise batch %d row %d", b, r), Variants: &v})
			}
			sub, err := c.Submit(gctx, req, "")
			if err != nil {
				return fmt.Errorf("batch %d: submit: %w", b, err)
			}
			ids[b] = sub.BatchID
			final := map[int]api.Row{}
			var totals api.Totals
			_, err = c.Follow(gctx, sub.ProgressURL, "", func(ev Event) error {
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
			if want := p.Rows * p.Variants; totals.Variants.Done != want {
				return fmt.Errorf("batch %s: %d of %d images done (%+v)", sub.BatchID, totals.Variants.Done, want, totals.Variants)
			}
			for _, r := range final {
				for _, v := range r.Variants {
					fetch.Go(func() error {
						if err := c.checkPNG(fctx, v.URL); err != nil {
							return fmt.Errorf("batch %s row %d variant %d: %w", sub.BatchID, r.Index, v.Index, err)
						}
						verified.Add(1)
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
	rep := Report{Verified: verified.Load(), Elapsed: time.Since(start), BatchIDs: ids}
	if err == nil && rep.Verified != int64(p.Images()) {
		err = fmt.Errorf("verified %d images, want %d", rep.Verified, p.Images())
	}
	return rep, err
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
