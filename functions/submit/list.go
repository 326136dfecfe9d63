package submit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"golang.org/x/sync/errgroup"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batchindex"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/problem"
)

// The bounds of GET /batch.
const (
	// defaultListLimit and maxListLimit bound a page's items.
	defaultListLimit = 20
	maxListLimit     = 100
	// maxListScan is how many batches one filtered request examines (one
	// state read each): a filter that matches few batches answers a short
	// page and a cursor rather than reading the user's whole history.
	maxListScan = 100
	// minListWindow is how many batches a filtered request reads at once
	// when its page is nearly full.
	minListWindow = 10
	// listReaders bounds the state reads of one request in flight.
	listReaders = 8
)

// listStatuses are the values of the status filter.
var listStatuses = map[string]bool{
	string(ledger.Queued): true, string(ledger.Running): true, string(ledger.Done): true,
	string(ledger.Failed): true, string(ledger.Cancelled): true,
}

// listQuery is a validated GET /batch query.
type listQuery struct {
	limit  int
	status string
	// from is the index key the page starts at ("" for the newest).
	from string
}

// parseListQuery validates limit, status and cursor, reporting every
// offending parameter. A cursor is valid only for the user and the status
// filter it was made for.
func parseListQuery(v url.Values, user string) (listQuery, error) {
	q := listQuery{limit: defaultListLimit}
	var fields []problem.FieldError
	bad := func(name, code, detail string) {
		fields = append(fields, problem.FieldError{Field: "/query/" + name, Code: code, Detail: detail})
	}
	for _, name := range []string{"limit", "status", "cursor"} {
		if len(v[name]) > 1 {
			bad(name, problem.FieldInvalidValue, "give "+name+" once")
		}
	}
	if v.Has("limit") {
		n, err := strconv.Atoi(v.Get("limit"))
		switch {
		case err != nil:
			bad("limit", problem.FieldInvalidValue, "a whole number from 1 to "+strconv.Itoa(maxListLimit))
		case n < 1 || n > maxListLimit:
			bad("limit", problem.FieldOutOfRange, "from 1 to "+strconv.Itoa(maxListLimit))
		default:
			q.limit = n
		}
	}
	if v.Has("status") {
		q.status = v.Get("status")
		if !listStatuses[q.status] {
			bad("status", problem.FieldUnknownValue, "one of queued, running, done, failed, cancelled")
		}
	}
	if v.Has("cursor") {
		key, err := batchindex.DecodeCursor(user, q.status, v.Get("cursor"))
		if err != nil {
			bad("cursor", problem.FieldInvalidValue, "not a cursor this list gave for this status filter; start again without one")
		}
		q.from = key
	}
	if len(fields) > 0 {
		return q, &problem.Error{Code: problem.ValidationFailed, Detail: fmt.Sprintf("%d query parameter(s) are invalid", len(fields)), Fields: fields}
	}
	return q, nil
}

// handleList answers a page of the caller's batches, newest first. The page
// is one listing of the caller's index entries, which carry what never
// changes about a batch, and one read of each batch's state.json for its
// status and counts (plus its rows while it runs). A status filter examines
// at most maxListScan batches per request.
func (s *server) handleList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.From(r.Context())
		q, err := parseListQuery(r.URL.Query(), p.UserID)
		if err != nil {
			problem.Write(w, r, err)
			return
		}
		page, err := s.listBatches(r.Context(), r, p.UserID, q)
		if err != nil {
			problem.Write(w, r, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, page)
	})
}

// listBatches builds one page. Unfiltered, it lists limit+1 entries (the last
// one only tells where the next page starts) and reads the states of limit.
// Filtered, it lists up to maxListScan+1 entries and reads their states in
// windows until the page is full, then resumes the next page right after the
// last item. Either way a page is one listing.
func (s *server) listBatches(ctx context.Context, r *http.Request, user string, q listQuery) (api.BatchList, error) {
	out := api.BatchList{Items: []api.BatchSummary{}, Limit: q.limit}
	n := q.limit
	if q.status != "" {
		n = maxListScan
	}
	entries, next, err := batchindex.New(s.Bucket).List(ctx, user, q.from, n)
	if err != nil {
		return out, fmt.Errorf("submit: listing the batches: %w", err)
	}
	base := s.publicBase(r)
	for len(entries) > 0 {
		w := len(entries)
		if q.status != "" {
			w = min(w, max(q.limit-len(out.Items), minListWindow))
		}
		window := entries[:w]
		entries = entries[w:]
		items, err := s.summaries(ctx, base, window)
		if err != nil {
			return out, err
		}
		for i, it := range items {
			if it == nil || q.status != "" && string(it.Status) != q.status {
				continue
			}
			out.Items = append(out.Items, *it)
			if len(out.Items) < q.limit {
				continue
			}
			// The page is full: the next one starts right after this item.
			switch {
			case i+1 < len(window):
				next = window[i+1].Key
			case len(entries) > 0:
				next = entries[0].Key
			}
			entries = nil
			break
		}
	}
	if next != "" {
		out.NextCursor = batchindex.EncodeCursor(user, q.status, next)
	}
	return out, nil
}

// summaries reads the batches of entries concurrently: nil for a batch
// without a state (being submitted, rolled back or pruned just now).
func (s *server) summaries(ctx context.Context, base string, entries []batchindex.Entry) ([]*api.BatchSummary, error) {
	out := make([]*api.BatchSummary, len(entries))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(listReaders)
	for i, e := range entries {
		g.Go(func() error {
			t, ok, err := s.totals(gctx, e)
			if err != nil || !ok {
				return err
			}
			self := base + "/batch/" + e.BatchID
			out[i] = &api.BatchSummary{
				BatchID: e.BatchID, CreatedAt: e.CreatedAt, RunMode: string(e.RunMode), Model: e.Model, Totals: t,
				Links: api.BatchLinks{Self: self, History: self + "/history", Archive: self + "/archive"},
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("submit: reading the batches' states: %w", err)
	}
	return out, nil
}

// totals are a batch's status and counts, as GET /batch/{id} reports them.
// A finished batch's state.json holds them, and so does an accepted one's (no
// row has started); a started or cancelled batch's come from its rows. Only
// unfinished batches cost more than one read, and a user has few of them
// (MAX_QUEUED_ROWS_PER_USER).
func (s *server) totals(ctx context.Context, e batchindex.Entry) (api.Totals, bool, error) {
	st, err := s.Store.Current(ctx, e.BatchID)
	if errors.Is(err, ledger.ErrNotFound) {
		return api.Totals{}, false, nil
	}
	if err != nil {
		return api.Totals{}, false, err
	}
	if st.Summary != nil && (st.Done() || st.Event == ledger.Accepted) {
		sum := *st.Summary
		return api.Totals{Status: sum.Status, Rows: sum.Rows, Variants: sum.Variants, CostUSD: sum.CostUSD}, true, nil
	}
	// The rows are read without the manifest: a row object not written yet
	// reads as the row as submitted, which needs only its variants.
	m := &ledger.Manifest{BatchID: e.BatchID}
	for i, v := range e.Variants {
		m.Rows = append(m.Rows, ledger.ManifestRow{Index: i, Variants: v})
	}
	rows, err := s.Store.Rows(ctx, m)
	if err != nil {
		return api.Totals{}, false, err
	}
	return api.NewTotals(rows), true, nil
}
