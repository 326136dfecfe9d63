package client

import (
	"context"
	"iter"
	"net/http"
	"net/url"
	"strconv"

	"github.com/assetgen/assetgen/shared/api"
)

// ListOptions select a page of the caller's batches. Zero values ask for the
// server's defaults: the first page, 20 items, every status.
type ListOptions struct {
	// Limit is the page size, 1 to 100.
	Limit int
	// Cursor is a previous page's NextCursor.
	Cursor string
	// Status keeps only batches in this status: queued, running, done,
	// failed or cancelled.
	Status string
}

// ListBatches reads one page of the caller's batches, newest first
// (GET /batch). A page may hold fewer items than the limit even when more
// follow; an empty NextCursor is the end.
func (c *Client) ListBatches(ctx context.Context, opts ListOptions) (api.BatchList, error) {
	q := url.Values{}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Cursor != "" {
		q.Set("cursor", opts.Cursor)
	}
	if opts.Status != "" {
		q.Set("status", opts.Status)
	}
	u := c.Base + "/batch"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var out api.BatchList
	err := c.do(ctx, http.MethodGet, u, nil, nil, &out)
	return out, err
}

// AllBatches yields every batch of the caller's from opts.Cursor on, newest
// first, reading pages of opts.Limit as the loop goes. An error ends the
// sequence; breaking out of the loop reads no further page.
func (c *Client) AllBatches(ctx context.Context, opts ListOptions) iter.Seq2[api.BatchSummary, error] {
	return func(yield func(api.BatchSummary, error) bool) {
		for {
			page, err := c.ListBatches(ctx, opts)
			if err != nil {
				yield(api.BatchSummary{}, err)
				return
			}
			for _, b := range page.Items {
				if !yield(b, nil) {
					return
				}
			}
			if page.NextCursor == "" {
				return
			}
			opts.Cursor = page.NextCursor
		}
	}
}
