package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/matryer/is"
	"golang.org/x/sync/errgroup"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/client"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/ledger"
)

// submitMany submits n one-image batches through c, four at a time; every
// tenth one (i%10 == 9) live with a prompt the fake model refuses, so it
// fails. It returns the batch ids in the order they were issued (oldest
// first) once every task has run.
func submitMany(tb testing.TB, a *app, c *client.Client, n int) []string {
	tb.Helper()
	ids := make([]string, n)
	// One at a time: the batches' ids then sort in i's order, which the tests
	// rely on to know where the failed ones are.
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(1)
	for i := range ids {
		g.Go(func() error {
			req := batch.Request{RunMode: "dry_run", Rows: []batch.RowRequest{{Prompt: fmt.Sprintf("batch %d", i)}}}
			if i%10 == 9 {
				req = batch.Request{RunMode: "live", Confirm: "CONFIRM", Rows: []batch.RowRequest{{Prompt: fmt.Sprintf("batch %d [blocked-output]", i)}}}
			}
			resp, err := c.Submit(ctx, req, "")
			ids[i] = resp.BatchID
			return err
		})
	}
	if err := g.Wait(); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := a.tasks.WaitIdle(ctx); err != nil {
		tb.Fatal(err)
	}
	slices.Sort(ids) // ids are UUIDv7: issue order
	return ids
}

// listStack is a stack whose fake model refuses "[blocked-output]" prompts
// and whose queued-row cap does not get in the way of many small batches.
func listStack(tb testing.TB) (*app, *devstack.Faults) {
	faults := devstack.NewFaults(1)
	a := startApp(tb, map[string]string{
		"LOCAL_FAKE_MODEL": "true", "DAILY_BUDGET_USD": "1000", "MAX_QUEUED_ROWS_PER_USER": "1000000", "SUBMIT_RATE_PER_MINUTE": "100000",
	}, faults)
	return a, faults
}

// The Go client lists batches page by page and through the iterator; each
// page is one listing of the user's index entries and one state read per
// finished batch, with or without a status filter.
func TestListThroughTheClient(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, faults := listStack(t)
	c := client.New(a.base)
	ctx := deadline(t, time.Minute)
	ids := submitMany(t, a, c, 23)
	slices.Reverse(ids) // newest first

	faults.Reset()
	page, err := c.ListBatches(ctx, client.ListOptions{Limit: 20})
	is.NoErr(err)
	is.Equal(len(page.Items), 20)
	is.True(page.NextCursor != "")
	n := faults.Counts()
	is.Equal(n.Lists, int64(1))  // one listing for the page
	is.Equal(n.Reads, int64(20)) // one state read per batch
	is.Equal(n.Writes, int64(0)) // and nothing written

	var got []string
	var failed []string
	for b, err := range c.AllBatches(ctx, client.ListOptions{Limit: 7}) {
		is.NoErr(err)
		got = append(got, b.BatchID)
		if b.Status == ledger.Failed {
			failed = append(failed, b.BatchID)
			is.Equal(b.RunMode, "live")
			is.Equal(b.Totals.Variants.Failed, 1)
			continue
		}
		is.Equal(b.Status, ledger.Done) // dry runs made their image
		is.Equal(b.Totals.Variants.Done, 1)
	}
	is.Equal(got, ids)          // every batch once, newest first, across four pages
	is.Equal(len(failed), 2)    // batches 9 and 19
	is.Equal(failed[0], ids[3]) // 19 of 0..22, newest first

	faults.Reset()
	var filtered []string
	for b, err := range c.AllBatches(ctx, client.ListOptions{Status: "failed", Limit: 1}) {
		is.NoErr(err)
		filtered = append(filtered, b.BatchID)
	}
	is.Equal(filtered, failed)                // the filter through the client
	is.Equal(faults.Counts().Lists, int64(3)) // 3 pages: each found one, the last ended the list
	is.True(faults.Counts().Reads <= 23+10)   // states read at most once each, plus the window of the page that filled

	faults.Reset()
	for range c.AllBatches(ctx, client.ListOptions{Limit: 5}) {
		break
	}
	is.Equal(faults.Counts().Lists, int64(1)) // leaving the loop reads no further page

	_, err = c.ListBatches(ctx, client.ListOptions{Status: "finished"})
	var pe *client.ProblemError
	is.True(errors.As(err, &pe)) // a refusal comes back as the problem
	is.Equal(pe.Status, http.StatusBadRequest)
	is.Equal(string(pe.Doc.Code), "VALIDATION_FAILED")
}

// A submit that fails after it listed the batch (the queued marker cannot be
// written) unlists it with the rest of its rollback; one whose entry cannot
// be written fails whole.
func TestFailedSubmitIsNotListed(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, faults := liveStack(t, nil)
	for _, prefix := range []string{layout.Queued, layout.Users} {
		faults.RejectWrites(prefix, 1, http.StatusForbidden)
		ans := post(t, a.base+"/batch/images", `{"runMode":"live","confirm":"CONFIRM","rows":[{"prompt":"x"}]}`,
			map[string]string{"Idempotency-Key": "k-" + prefix})
		is.Equal(ans.status, http.StatusServiceUnavailable) // the submit fails
		is.Equal(ans.str("code"), "GCS_WRITE_FAILED")
		is.Equal(len(objects(t, a, layout.Users)), 0)   // no entry left behind
		is.Equal(len(objects(t, a, layout.Batches)), 0) // nor any batch
		list := get(t, a.base+"/batch", nil)
		is.Equal(list.status, http.StatusOK)
		is.Equal(len(list.doc["items"].([]any)), 0) // the list is empty
	}
	ok := post(t, a.base+"/batch/images", `{"runMode":"live","confirm":"CONFIRM","rows":[{"prompt":"x"}]}`, nil)
	is.Equal(ok.status, http.StatusAccepted)
	is.Equal(len(objects(t, a, layout.Users)), 1) // a submit that works lists its batch
}

// GET /batch is per user: each user's list holds only their batches, a
// cursor does not carry over to another user, and without a credential the
// list is 401 like every user route.
func TestListIsPerUser(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := startApp(t, map[string]string{"AUTH_MODE": "apikey", "CONFIG_TTL": "0"}, devstack.NewFaults(1))
	putJSON(t, a, layout.APIKeysObject, map[string]any{"keys": map[string]any{
		auth.HashKey("ak_alice"): map[string]string{"user": "alice"},
		auth.HashKey("ak_bob"):   map[string]string{"user": "bob"},
	}})
	alice := &client.Client{Base: a.base, HTTP: http.DefaultClient, Token: "ak_alice"}
	bob := &client.Client{Base: a.base, HTTP: http.DefaultClient, Token: "ak_bob"}
	ctx := deadline(t, time.Minute)
	var alices []string
	for i := range 3 {
		resp, err := alice.Submit(ctx, batch.Request{RunMode: "dry_run", Rows: []batch.RowRequest{{Prompt: fmt.Sprint("alice ", i)}}}, "")
		is.NoErr(err)
		alices = append(alices, resp.BatchID)
	}
	bobs, err := bob.Submit(ctx, batch.Request{RunMode: "dry_run", Rows: []batch.RowRequest{{Prompt: "bob"}}}, "")
	is.NoErr(err)

	page, err := alice.ListBatches(ctx, client.ListOptions{Limit: 2})
	is.NoErr(err)
	is.Equal(itemIDs(page.Items), []string{alices[2], alices[1]}) // alice's newest two
	list, err := bob.ListBatches(ctx, client.ListOptions{})
	is.NoErr(err)
	is.Equal(itemIDs(list.Items), []string{bobs.BatchID}) // bob's list: his batch only

	_, err = bob.ListBatches(ctx, client.ListOptions{Cursor: page.NextCursor})
	var pe *client.ProblemError
	is.True(errors.As(err, &pe))
	is.Equal(pe.Status, http.StatusBadRequest) // alice's cursor is not bob's to use

	none := get(t, a.base+"/batch", nil)
	is.Equal(none.status, http.StatusUnauthorized) // no credential, no list
	q := url.Values{"cursor": {page.NextCursor}}
	is.Equal(get(t, a.base+"/batch?"+q.Encode(), nil).status, http.StatusUnauthorized)
}

func itemIDs(items []api.BatchSummary) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.BatchID)
	}
	return out
}

// BenchmarkListPage measures what a page of GET /batch costs in Cloud
// Storage operations for a user with 150 batches (every tenth failed, the
// rest done): each iteration walks the whole list, page by page.
func BenchmarkListPage(b *testing.B) {
	a, faults := listStack(b)
	c := client.New(a.base)
	submitMany(b, a, c, 150)
	for _, bc := range []client.ListOptions{
		{Limit: 20}, {Limit: 100}, {Limit: 20, Status: "done"}, {Limit: 100, Status: "done"}, {Limit: 20, Status: "failed"},
	} {
		name := fmt.Sprintf("limit=%d", bc.Limit)
		if bc.Status != "" {
			name += ",status=" + bc.Status
		}
		b.Run(name, func(b *testing.B) {
			faults.Reset()
			var pages, items int64
			for b.Loop() {
				opts := bc
				for {
					page, err := c.ListBatches(context.Background(), opts)
					if err != nil {
						b.Fatal(err)
					}
					pages++
					items += int64(len(page.Items))
					if page.NextCursor == "" {
						break
					}
					opts.Cursor = page.NextCursor
				}
			}
			n := faults.Counts()
			b.ReportMetric(float64(pages)/float64(b.N), "pages/walk")
			b.ReportMetric(float64(items)/float64(pages), "items/page")
			b.ReportMetric(float64(n.Lists)/float64(pages), "lists/page")
			b.ReportMetric(float64(n.Reads)/float64(pages), "reads/page")
			b.ReportMetric(float64(n.Writes)/float64(pages), "writes/page")
		})
	}
}
