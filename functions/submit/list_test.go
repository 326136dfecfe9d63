package submit_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/functions/submit"
	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/batchindex"
	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/problem"
)

// list asks GET /batch as user with query and decodes the page.
func (hs *harness) list(t *testing.T, user, query string) api.BatchList {
	t.Helper()
	w := hs.do(http.MethodGet, "/batch"+query, user, "")
	if w.Code != http.StatusOK {
		t.Fatalf("GET /batch%s answered %d: %s", query, w.Code, w.Body)
	}
	var page api.BatchList
	if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil {
		t.Fatal(err)
	}
	return page
}

// listAll follows the cursors from the first page on, with query's other
// parameters, and returns every batch id in the order the pages gave them.
func (hs *harness) listAll(t *testing.T, user string, q url.Values) []string {
	t.Helper()
	var ids []string
	for range 100 {
		page := hs.list(t, user, "?"+q.Encode())
		for _, it := range page.Items {
			ids = append(ids, it.BatchID)
		}
		if page.NextCursor == "" {
			return ids
		}
		q.Set("cursor", page.NextCursor)
	}
	t.Fatal("the cursors never ended")
	return nil
}

func ids(items []api.BatchSummary) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.BatchID)
	}
	return out
}

// newest returns submitted batch ids newest first.
func newest(subs ...api.SubmitResponse) []string {
	var out []string
	for _, s := range slices.Backward(subs) {
		out = append(out, s.BatchID)
	}
	return out
}

func TestListShowsTheCallersBatchesNewestFirst(t *testing.T) {
	is := is.New(t)
	hs := newHarness(t)
	a := hs.submit(t, "alice", `{"runMode":"dry_run","rows":[{"prompt":"one"}]}`)
	b := hs.submit(t, "alice", `{"runMode":"dry_run","rows":[{"prompt":"two","variants":3},{"prompt":"three"}]}`)
	c := hs.submit(t, "alice", `{"runMode":"dry_run","rows":[{"prompt":"four","variants":2}]}`)
	bobs := hs.submit(t, "bob", `{"runMode":"dry_run","rows":[{"prompt":"bob's"}]}`)

	page := hs.list(t, "alice", "")
	is.Equal(ids(page.Items), newest(a, b, c)) // alice's batches, newest first, none of bob's
	is.Equal(page.Limit, 20)                   // the default page size
	is.Equal(page.NextCursor, "")              // one page holds them all

	it := page.Items[1]
	is.Equal(it.BatchID, b.BatchID)
	is.True(it.CreatedAt.Equal(b.CreatedAt)) // when it was submitted
	is.Equal(it.RunMode, "dry_run")
	is.Equal(it.Model, "gemini-2.5-flash-image")
	is.Equal(it.Status, ledger.Queued)      // nothing ran (this stack's tasks are never worked)
	is.Equal(it.Totals.Rows.Total(), 2)     // the rows it asked for
	is.Equal(it.Totals.Rows.Queued, 2)      // every one queued
	is.Equal(it.Totals.Variants.Total(), 4) // 3 + 1 images
	is.Equal(it.Totals.Variants.Queued, 4)
	is.Equal(it.Links.Self, b.StatusURL) // the batch's own URL
	is.Equal(it.Links.History, b.StatusURL+"/history")
	is.Equal(it.Links.Archive, b.StatusURL+"/archive")

	var status api.Batch // the same counts as the batch's own route
	w := hs.do(http.MethodGet, "/batch/"+b.BatchID, "alice", "")
	is.NoErr(json.Unmarshal(w.Body.Bytes(), &status))
	is.Equal(it.Totals, status.Totals)

	is.Equal(ids(hs.list(t, "bob", "").Items), []string{bobs.BatchID}) // bob sees his own only
	w = hs.do(http.MethodGet, "/batch", "carol", "")
	is.Equal(w.Code, http.StatusOK)
	is.True(strings.Contains(w.Body.String(), `"items":[]`)) // no batches: an empty list, not null
}

// Pages follow one another without gaps or duplicates, even while batches are
// submitted between them: newer batches sort before the cursor.
func TestListPagesWithCursors(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	hs := newHarness(t)
	var subs []api.SubmitResponse
	for i := range 7 {
		subs = append(subs, hs.submit(t, "alice", fmt.Sprintf(`{"runMode":"dry_run","rows":[{"prompt":"p%d"}]}`, i)))
	}
	first := hs.list(t, "alice", "?limit=3")
	is.Equal(len(first.Items), 3)
	is.Equal(first.Limit, 3)
	is.True(first.NextCursor != "") // more follow

	later := []api.SubmitResponse{
		hs.submit(t, "alice", `{"runMode":"dry_run","rows":[{"prompt":"late 1"}]}`),
		hs.submit(t, "alice", `{"runMode":"dry_run","rows":[{"prompt":"late 2"}]}`),
	}
	second := hs.list(t, "alice", "?limit=3&cursor="+first.NextCursor)
	is.Equal(len(second.Items), 3)
	third := hs.list(t, "alice", "?limit=3&cursor="+second.NextCursor)
	is.Equal(len(third.Items), 1)
	is.Equal(third.NextCursor, "") // the last page says so

	got := append(append(ids(first.Items), ids(second.Items)...), ids(third.Items)...)
	is.Equal(got, newest(subs...))                                         // every batch once, in order: no gap, no duplicate
	is.Equal(ids(hs.list(t, "alice", "?limit=2").Items), newest(later...)) // a fresh first page starts with the new ones

	all := hs.listAll(t, "alice", url.Values{"limit": {"4"}})
	is.Equal(all, newest(append(subs, later...)...)) // followed to the end: all nine
	is.Equal(len(hs.list(t, "alice", "?limit=100").Items), 9)
}

// drive moves a queued batch (whose tasks never run here) to status, the way
// generate and completion would: through the ledger's own transitions.
func drive(t *testing.T, hs *harness, batchID string, status ledger.Status) error {
	c := ctx(t)
	m, err := hs.Ledger.Manifest(c, batchID)
	if err != nil {
		return err
	}
	op := ledger.Op{Actor: "test", Now: time.Now().UTC()}
	if status == ledger.Cancelled {
		if w := hs.do(http.MethodPost, "/batch/"+batchID+"/cancel", m.Owner, ""); w.Code != http.StatusOK {
			return fmt.Errorf("cancel answered %d", w.Code)
		}
		return nil
	}
	for i := range m.Rows {
		_, err := hs.Ledger.UpdateRow(c, m, i, func(r ledger.Row) (ledger.Row, error) {
			r, err := ledger.Start(r, op, "test", time.Hour)
			if err != nil || status == ledger.Running {
				return r, err
			}
			if status == ledger.Done {
				if r, err = ledger.RecordVariants(r, op, "test", []ledger.VariantResult{{Index: 0, Object: ledger.ImageObject(batchID, i, 0, ".png")}}); err != nil {
					return r, err
				}
			}
			return ledger.Finish(r, op, "test", &ledger.Failure{Code: string(problem.ModelFailed), Message: "test"})
		})
		if err != nil {
			return err
		}
	}
	if _, _, err := hs.Ledger.Advance(c, batchID, op, func(cur *ledger.State, op ledger.Op) (ledger.State, error) {
		return ledger.StartBatch(cur, batchID, 0, op)
	}); err != nil {
		return err
	}
	if status == ledger.Running {
		return nil
	}
	f, err := hs.Finisher()
	if err != nil {
		return err
	}
	if done, err := f.Finish(c, m); err != nil || !done {
		return fmt.Errorf("finishing %s: %v (complete: %v)", batchID, err, done)
	}
	return nil
}

// driveAll drives batches to their statuses at once: each batch-level state
// change waits its turn (about a second apart), batches do not wait for each
// other.
func driveAll(t *testing.T, hs *harness, to map[string]ledger.Status) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(to))
	for id, st := range to {
		wg.Go(func() { errs <- drive(t, hs, id, st) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestListFiltersByStatus(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	hs := newHarness(t)
	want := []ledger.Status{ledger.Done, ledger.Queued, ledger.Running, ledger.Failed, ledger.Cancelled, ledger.Done, ledger.Running}
	var subs []api.SubmitResponse
	to := map[string]ledger.Status{}
	for i, st := range want {
		sub := hs.submit(t, "alice", fmt.Sprintf(`{"runMode":"dry_run","rows":[{"prompt":"p%d"},{"prompt":"q%d","variants":2}]}`, i, i))
		subs = append(subs, sub)
		if st != ledger.Queued {
			to[sub.BatchID] = st
		}
	}
	driveAll(t, hs, to)
	all := hs.list(t, "alice", "").Items
	is.Equal(len(all), len(want))
	for i, it := range all {
		st := want[len(want)-1-i]
		is.Equal(it.Status, st) // each batch's own status
		var b api.Batch
		is.NoErr(json.Unmarshal(hs.do(http.MethodGet, "/batch/"+it.BatchID, "alice", "").Body.Bytes(), &b))
		is.Equal(it.Totals, b.Totals) // and the counts GET /batch/{id} gives, in every status
	}
	is.Equal(all[0].Totals.Rows.Running, 2) // a running batch's counts come from its rows

	for _, st := range []ledger.Status{ledger.Queued, ledger.Running, ledger.Done, ledger.Failed, ledger.Cancelled} {
		var wantIDs []string
		for i, s := range slices.Backward(want) {
			if s == st {
				wantIDs = append(wantIDs, subs[i].BatchID)
			}
		}
		page := hs.list(t, "alice", "?status="+string(st))
		is.Equal(ids(page.Items), wantIDs) // only that status, newest first
		is.Equal(page.NextCursor, "")
		is.Equal(hs.listAll(t, "alice", url.Values{"status": {string(st)}, "limit": {"1"}}), wantIDs) // page by page too
	}
}

// A filter that matches little examines at most 100 batches per request:
// the page comes back short, with a cursor to go on.
func TestFilteredPagesExamineABoundedNumberOfBatches(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	hs := newHarnessWith(t, nil, func(c *submit.Config) { c.SubmitsPerMinute = 1000 })
	subs := make([]api.SubmitResponse, 104)
	codes := make([]int, len(subs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range subs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			w := hs.do(http.MethodPost, "/batch/images", "alice", fmt.Sprintf(`{"runMode":"dry_run","rows":[{"prompt":"p%d"}]}`, i))
			codes[i] = w.Code
			_ = json.Unmarshal(w.Body.Bytes(), &subs[i])
		})
	}
	wg.Wait()
	for _, c := range codes {
		is.Equal(c, http.StatusAccepted) // every submit accepted
	}
	slices.SortFunc(subs, func(a, b api.SubmitResponse) int { return strings.Compare(a.BatchID, b.BatchID) }) // in submit order
	oldest := subs[0].BatchID
	driveAll(t, hs, map[string]ledger.Status{oldest: ledger.Cancelled})

	first := hs.list(t, "alice", "?status=cancelled")
	is.Equal(len(first.Items), 0)   // the newest 100 batches are all queued
	is.True(first.NextCursor != "") // but the list goes on
	second := hs.list(t, "alice", "?status=cancelled&cursor="+first.NextCursor)
	is.Equal(ids(second.Items), []string{oldest}) // the next request finds it
	is.Equal(second.NextCursor, "")

	full := hs.list(t, "alice", "?status=queued&limit=100")
	is.Equal(len(full.Items), 100) // a filter that matches fills its page
	is.True(full.NextCursor != "") // and the rest follows
	rest := hs.list(t, "alice", "?status=queued&limit=100&cursor="+full.NextCursor)
	is.Equal(len(rest.Items), 3) // 104 - 1 cancelled - 100
	is.Equal(rest.NextCursor, "")
}

func TestListQueryIsValidated(t *testing.T) {
	hs := newHarness(t)
	hs.submit(t, "alice", `{"runMode":"dry_run","rows":[{"prompt":"a"}]}`)
	hs.submit(t, "alice", `{"runMode":"dry_run","rows":[{"prompt":"b"}]}`)
	hs.submit(t, "bob", `{"runMode":"dry_run","rows":[{"prompt":"c"}]}`)
	hs.submit(t, "bob", `{"runMode":"dry_run","rows":[{"prompt":"d"}]}`)
	alices := hs.list(t, "alice", "?limit=1").NextCursor
	bobs := hs.list(t, "bob", "?limit=1").NextCursor
	queued := hs.list(t, "alice", "?limit=1&status=queued").NextCursor
	for _, tc := range []struct {
		name, query, field, code string
	}{
		{"zero", "?limit=0", "/query/limit", problem.FieldOutOfRange},
		{"over the maximum", "?limit=101", "/query/limit", problem.FieldOutOfRange},
		{"negative", "?limit=-1", "/query/limit", problem.FieldOutOfRange},
		{"not a number", "?limit=ten", "/query/limit", problem.FieldInvalidValue},
		{"empty", "?limit=", "/query/limit", problem.FieldInvalidValue},
		{"twice", "?limit=1&limit=2", "/query/limit", problem.FieldInvalidValue},
		{"unknown status", "?status=finished", "/query/status", problem.FieldUnknownValue},
		{"garbage cursor", "?cursor=abc", "/query/cursor", problem.FieldInvalidValue},
		{"another user's cursor", "?cursor=" + bobs, "/query/cursor", problem.FieldInvalidValue},
		{"another filter's cursor", "?cursor=" + queued, "/query/cursor", problem.FieldInvalidValue},
		{"a filter's cursor with another", "?status=done&cursor=" + queued, "/query/cursor", problem.FieldInvalidValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			w := hs.do(http.MethodGet, "/batch"+tc.query, "alice", "")
			is.Equal(w.Code, http.StatusBadRequest)
			doc := problemOf(t, w)
			is.Equal(doc.Code, problem.ValidationFailed) // the one code for invalid input
			is.Equal(len(doc.Errors), 1)
			is.Equal(doc.Errors[0].Field, tc.field) // names the parameter
			is.Equal(doc.Errors[0].Code, tc.code)
		})
	}
	is := is.New(t)
	w := hs.do(http.MethodGet, "/batch?limit=0&status=x&cursor=y", "alice", "")
	is.Equal(len(problemOf(t, w).Errors), 3)                                  // every offending parameter at once
	is.Equal(len(hs.list(t, "alice", "?cursor="+alices+"&limit=5").Items), 1) // alice's own cursor works
	is.Equal(len(hs.list(t, "alice", "?limit=100").Items), 2)                 // the maximum is allowed
}

// A cursor is only ever a position in the caller's own list: bob, given
// alice's cursor, is refused and never sees her batches.
func TestListCursorsDoNotCrossUsers(t *testing.T) {
	is := is.New(t)
	hs := newHarness(t)
	var alices []string
	for i := range 3 {
		alices = append(alices, hs.submit(t, "alice", fmt.Sprintf(`{"runMode":"dry_run","rows":[{"prompt":"a%d"}]}`, i)).BatchID)
	}
	bob := hs.submit(t, "bob", `{"runMode":"dry_run","rows":[{"prompt":"b"}]}`)
	cursor := hs.list(t, "alice", "?limit=1").NextCursor
	w := hs.do(http.MethodGet, "/batch?limit=1&cursor="+url.QueryEscape(cursor), "bob", "")
	is.Equal(w.Code, http.StatusBadRequest)
	is.True(!strings.Contains(w.Body.String(), alices[1])) // nothing of alice's
	got := hs.listAll(t, "bob", url.Values{"limit": {"1"}})
	is.Equal(got, []string{bob.BatchID}) // bob's list is bob's batch only
}

// A retried submit, in sequence or racing its twin, lists its batch once.
func TestRetriedSubmitIsListedOnce(t *testing.T) {
	is := is.New(t)
	hs := newHarness(t)
	body := `{"runMode":"dry_run","rows":[{"prompt":"once"}]}`
	first := hs.submit(t, "alice", body, submit.HeaderIdempotencyKey, "k-1")
	hs.submit(t, "alice", body, submit.HeaderIdempotencyKey, "k-1")
	codes := make([]int, 4)
	var wg sync.WaitGroup
	for i := range codes {
		wg.Go(func() {
			codes[i] = hs.do(http.MethodPost, "/batch/images", "alice", `{"runMode":"dry_run","rows":[{"prompt":"twin"}]}`, submit.HeaderIdempotencyKey, "k-2").Code
		})
	}
	wg.Wait()
	for _, c := range codes {
		is.Equal(c, http.StatusAccepted) // every twin answered with the batch
	}
	page := hs.list(t, "alice", "")
	is.Equal(len(page.Items), 2) // two keys, two batches, each once
	is.Equal(page.Items[1].BatchID, first.BatchID)
	n := 0
	for _, err := range hs.Bucket.List(ctx(t), bucket.Query{Prefix: batchindex.UserPrefix("alice")}) {
		is.NoErr(err)
		n++
	}
	is.Equal(n, 2) // one entry per batch in the bucket
}
