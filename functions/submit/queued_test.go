package submit_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/functions/submit"
	"github.com/assetgen/assetgen/shared/backlog"
	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/problem"
)

// newCappedHarness is the submit handler with at most maxRows queued rows
// per user. The stack's tasks are acknowledged and never run, so a batch
// stays unfinished until it is cancelled.
func newCappedHarness(t *testing.T, maxRows int) *harness {
	t.Helper()
	return newHarnessWith(t, nil, func(c *submit.Config) { c.MaxQueuedRows = maxRows })
}

func dryRows(n int) string {
	rows := make([]string, n)
	for i := range rows {
		rows[i] = `{"prompt":"row"}`
	}
	return `{"runMode":"dry_run","rows":[` + strings.Join(rows, ",") + `]}`
}

// A user's unfinished batches hold at most the cap in rows: the batch that
// would go over is refused with 429 RATE_LIMITED, Retry-After and the counts,
// nothing of it is written, another user is not affected, and once a batch
// finishes its rows no longer count.
func TestQueuedRowsPerUserAreCapped(t *testing.T) {
	is := is.New(t)
	hs := newCappedHarness(t, 8)

	first := hs.submit(t, "mallory", dryRows(5))
	hs.submit(t, "mallory", dryRows(3)) // 8 rows: at the cap, not over it

	w := hs.do(http.MethodPost, "/batch/images", "mallory", dryRows(1))
	is.Equal(w.Code, http.StatusTooManyRequests) // one row too many
	is.Equal(w.Header().Get("Retry-After"), "60")
	doc := problemOf(t, w)
	is.Equal(doc.Code, problem.RateLimited)
	var counts struct{ QueuedRows, BatchRows, MaxQueuedRows int }
	is.NoErr(json.Unmarshal(w.Body.Bytes(), &counts))
	is.Equal(counts.QueuedRows, 8) // says how many rows are queued
	is.Equal(counts.BatchRows, 1)
	is.Equal(counts.MaxQueuedRows, 8) // and the cap
	is.True(strings.Contains(doc.Detail, "8 rows"))

	batches := 0
	for a, err := range hs.Bucket.List(ctx(t), bucket.Query{Prefix: layout.Batches}) {
		is.NoErr(err) // list the batches
		if strings.HasSuffix(a.Name, "/manifest.json") {
			batches++
		}
	}
	is.Equal(batches, 2) // the refused batch wrote nothing

	hs.submit(t, "alice", dryRows(8)) // another user has a cap of their own

	c := hs.do(http.MethodPost, "/batch/"+first.BatchID+"/cancel", "mallory", "")
	is.Equal(c.Code, http.StatusOK)     // its rows never started: the batch finishes at once
	hs.submit(t, "mallory", dryRows(5)) // the finished batch's rows no longer count

	n, err := backlog.New(hs.Bucket).Rows(ctx(t), "mallory")
	is.NoErr(err)
	is.Equal(n, 8) // 3 + 5 rows of unfinished batches
}
