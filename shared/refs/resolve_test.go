package refs

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/devstack/stacktest"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/problem"
)

// request is the refs part of a batch request: the global list and each row's
// own. It gives Resolve its rows (in merge order) and its locate function.
type request struct {
	global []string
	own    [][]string
}

func (r request) rows() [][]string {
	out := make([][]string, len(r.own))
	for i, own := range r.own {
		out[i] = batch.MergeRefURLs(own, r.global)
	}
	return out
}

// locate returns the JSON pointers where the request wrote u.
func (r request) locate(u string) []string {
	var out []string
	for i, g := range r.global {
		if g == u {
			out = append(out, fmt.Sprintf("/refs/%d", i))
		}
	}
	for row, own := range r.own {
		for j, x := range own {
			if x == u {
				out = append(out, fmt.Sprintf("/rows/%d/refs/%d", row, j))
			}
		}
	}
	return out
}

func TestResolveSharedGlobalRef(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Bucket
	a, b, g := pngBytes(t, 3, 3, 10), jpegBytes(t, 4, 4), gifBytes(t, 5, 5)
	srv, hits := serve(t, map[string]http.HandlerFunc{"/a.png": bytesRoute(a), "/b.jpg": bytesRoute(b), "/g.gif": bytesRoute(g)})
	req := request{
		global: []string{srv.URL + "/g.gif"},
		own:    [][]string{{srv.URL + "/a.png"}, {srv.URL + "/b.jpg"}},
	}
	f := newTestFetcher(Options{AllowLoopback: true})

	got, st, err := f.Resolve(context.Background(), store, req.rows(), 3, req.locate)
	is.NoErr(err) // resolved
	is.Equal(got, []RowRefs{
		{Refs: []ledger.Ref{
			{URL: srv.URL + "/a.png", SHA256: sha(a), Object: ledger.RefObject(sha(a)), MIMEType: "image/png"},
			{URL: srv.URL + "/g.gif", SHA256: sha(g), Object: ledger.RefObject(sha(g)), MIMEType: "image/gif"},
		}},
		{Refs: []ledger.Ref{
			{URL: srv.URL + "/b.jpg", SHA256: sha(b), Object: ledger.RefObject(sha(b)), MIMEType: "image/jpeg"},
			{URL: srv.URL + "/g.gif", SHA256: sha(g), Object: ledger.RefObject(sha(g)), MIMEType: "image/gif"},
		}},
	}) // own refs first, then the global one
	is.Equal(st, Stats{Submitted: 4, DistinctURLs: 3, UniqueContents: 3, Uploaded: 3})
	is.Equal(st.DedupRate(), 0.25) // one of four refs needed no content of its own
	for _, p := range []string{"/a.png", "/b.jpg", "/g.gif"} {
		is.Equal(hits.count(p), 1) // each distinct URL fetched once
	}
	for _, data := range [][]byte{a, b, g} {
		stored, err := store.ReadBytes(context.Background(), ledger.RefObject(sha(data)))
		is.NoErr(err)                      // stored content-addressed
		is.True(bytes.Equal(stored, data)) // the very bytes
	}

	// The same content again (a later batch) is fetched but not uploaded.
	got2, st2, err := f.Resolve(context.Background(), store, req.rows(), 3, req.locate)
	is.NoErr(err)             // resolved again
	is.Equal(got2, got)       // to the same refs
	is.Equal(st2.Uploaded, 0) // nothing uploaded
}

func TestResolveDedupByContent(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Bucket
	img, other := pngBytes(t, 3, 3, 20), pngBytes(t, 3, 3, 21)
	srv, hits := serve(t, map[string]http.HandlerFunc{
		"/one.png":   bytesRoute(img),
		"/copy.png":  bytesRoute(img), // same bytes, another URL
		"/other.png": bytesRoute(other),
	})
	one, cp, oth := srv.URL+"/one.png", srv.URL+"/copy.png", srv.URL+"/other.png"
	req := request{own: [][]string{{one, cp, oth}, {cp, oth}}}
	f := newTestFetcher(Options{AllowLoopback: true})

	got, st, err := f.Resolve(context.Background(), store, req.rows(), 3, req.locate)
	is.NoErr(err) // resolved
	is.Equal(len(got[0].Refs), 2)
	is.Equal(got[0].Refs[0].URL, one)
	is.Equal(got[0].Refs[1].URL, oth)
	is.Equal(got[0].Dropped, []ledger.Dropped{{URL: cp, Reason: "duplicate of " + one}}) // first occurrence wins
	is.Equal(len(got[1].Refs), 2)
	is.Equal(got[1].Refs[0].URL, cp)                            // row 1's own first copy stays
	is.Equal(got[1].Refs[0].Object, ledger.RefObject(sha(img))) // stored once for both rows
	is.Equal(got[1].Dropped, []ledger.Dropped(nil))
	is.Equal(st, Stats{Submitted: 5, DistinctURLs: 3, UniqueContents: 2, Uploaded: 2})
	is.Equal(hits.count("/copy.png"), 1) // fetched once for both rows
}

func TestResolveCap(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Bucket
	routes := map[string]http.HandlerFunc{}
	for i := range 4 {
		routes[fmt.Sprintf("/%d.png", i)] = bytesRoute(pngBytes(t, 2, 2, uint8(30+i)))
	}
	srv, _ := serve(t, routes)
	u := func(i int) string { return fmt.Sprintf("%s/%d.png", srv.URL, i) }
	req := request{global: []string{u(2), u(3)}, own: [][]string{{u(0), u(1)}}}
	f := newTestFetcher(Options{AllowLoopback: true})

	got, st, err := f.Resolve(context.Background(), store, req.rows(), 2, req.locate)
	is.NoErr(err) // resolved
	is.Equal(len(got[0].Refs), 2)
	is.Equal(got[0].Refs[0].URL, u(0)) // the row's own refs first
	is.Equal(got[0].Refs[1].URL, u(1))
	is.Equal(got[0].Dropped, []ledger.Dropped{
		{URL: u(2), Reason: "over the limit of 2 references"},
		{URL: u(3), Reason: "over the limit of 2 references"},
	}) // the extras, in order
	is.Equal(st.UniqueContents, 4) // all fetched and checked
	is.Equal(st.Uploaded, 4)       // each stored as it arrived, so bytes are never held for the merge
}

func TestResolveConcurrency(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Bucket
	routes := map[string]http.HandlerFunc{}
	var rows [][]string
	for i := range 8 {
		routes[fmt.Sprintf("/%d.png", i)] = bytesRoute(pngBytes(t, 2, 2, uint8(40+i)))
	}
	srv, hits := serve(t, routes)
	for r := range 4 { // every row lists every URL: 32 occurrences, 8 URLs
		var row []string
		for i := range 8 {
			row = append(row, fmt.Sprintf("%s/%d.png", srv.URL, (i+r)%8))
		}
		rows = append(rows, row)
	}
	f := newTestFetcher(Options{AllowLoopback: true, Concurrency: 2})

	_, st, err := f.Resolve(context.Background(), store, rows, -1, nil)
	is.NoErr(err)                  // resolved
	is.Equal(st.Submitted, 32)     // every occurrence counted
	is.Equal(st.DistinctURLs, 8)   // eight URLs
	is.Equal(hits.total(), 8)      // each fetched exactly once
	is.True(hits.peak.Load() <= 2) // never more than Concurrency at once
}

func TestResolveFailsWhole(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Bucket
	good, global := pngBytes(t, 2, 2, 50), pngBytes(t, 2, 2, 51)
	srv, _ := serve(t, map[string]http.HandlerFunc{
		"/good.png":   bytesRoute(good),
		"/global.png": bytesRoute(global),
		"/page.html":  bytesRoute([]byte("<html><body>hello</body></html>")),
		// /missing.png answers 404
	})
	missing, page := srv.URL+"/missing.png", srv.URL+"/page.html"
	req := request{
		global: []string{srv.URL + "/global.png"},
		own: [][]string{
			{srv.URL + "/good.png", missing},
			{page, missing},
		},
	}
	f := newTestFetcher(Options{AllowLoopback: true})

	got, _, err := f.Resolve(context.Background(), store, req.rows(), 3, req.locate)
	is.True(got == nil) // nothing accepted
	pe := problemOf(t, err)
	is.Equal(pe.Code, problem.RefFetchFailed) // the first failure's code
	is.Equal(len(pe.Fields), 3)               // every failing pointer
	is.Equal(pe.Fields[0].Field, "/rows/0/refs/1")
	is.Equal(pe.Fields[0].Code, string(problem.RefFetchFailed))
	is.Equal(pe.Fields[1].Field, "/rows/1/refs/1") // the same URL, where else it was written
	is.Equal(pe.Fields[1].Code, string(problem.RefFetchFailed))
	is.Equal(pe.Fields[2].Field, "/rows/1/refs/0")
	is.Equal(pe.Fields[2].Code, string(problem.RefNotImage))
	for _, fe := range pe.Fields[:2] {
		is.True(strings.Contains(fe.Detail, missing)) // names the URL
		is.True(strings.Contains(fe.Detail, "404"))   // and the reason
	}
	is.True(strings.Contains(pe.Fields[2].Detail, page))
	// Good contents fetched alongside may be stored: content-addressed, shared
	// and pruned by retention, they are not part of any batch.

	// One failure alone: its detail is the problem's detail.
	only := request{own: [][]string{{srv.URL + "/good.png", page}}}
	_, _, err = f.Resolve(context.Background(), store, only.rows(), 3, only.locate)
	pe = problemOf(t, err)
	is.Equal(pe.Code, problem.RefNotImage)
	is.Equal(len(pe.Fields), 1)
	is.Equal(pe.Fields[0].Field, "/rows/0/refs/1")
	is.Equal(pe.Detail, pe.Fields[0].Detail)
}

func TestResolveGCS(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	c := stacktest.Open(t, nil)
	img := pngBytes(t, 7, 3, 60)
	w := c.Storage.Bucket(stacktest.TestBucket).Object("uploads/cat.png").NewWriter(ctx)
	w.ContentType = "text/plain" // not trusted either
	_, err := w.Write(img)
	is.NoErr(err)
	is.NoErr(w.Close()) // uploaded
	big := c.Storage.Bucket(stacktest.TestBucket).Object("uploads/big.bin").NewWriter(ctx)
	_, err = big.Write(bytes.Repeat([]byte{1}, 8<<10))
	is.NoErr(err)
	is.NoErr(big.Close())

	f := NewFetcher(c.Buckets, Options{Buckets: []string{stacktest.TestBucket}, MaxBytes: 4 << 10})
	ref := "gs://" + stacktest.TestBucket + "/uploads/cat.png"
	req := request{own: [][]string{{ref}}}
	got, st, err := f.Resolve(ctx, c.Bucket, req.rows(), 3, req.locate)
	is.NoErr(err) // an allowed bucket works
	is.Equal(got[0].Refs, []ledger.Ref{{URL: ref, SHA256: sha(img), Object: ledger.RefObject(sha(img)), MIMEType: "image/png"}})
	is.Equal(st.Uploaded, 1)

	tests := []struct {
		url  string
		code problem.Code
	}{
		{"gs://another-bucket/uploads/cat.png", problem.RefNotAllowed},
		{"gs://" + stacktest.TestBucket + "/", problem.RefNotAllowed},
		{"gs://" + stacktest.TestBucket + "/uploads/none.png", problem.RefFetchFailed},
		{"gs://" + stacktest.TestBucket + "/uploads/big.bin", problem.RefTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			is := is.New(t)
			_, err := f.Fetch(ctx, tt.url)
			is.Equal(problemOf(t, err).Code, tt.code)
		})
	}
}

func TestResolveNothing(t *testing.T) {
	is := is.New(t)
	f := newTestFetcher(Options{})
	got, st, err := f.Resolve(context.Background(), nil, [][]string{nil, {}}, 3, nil)
	is.NoErr(err)                    // no refs, no store needed
	is.Equal(got, []RowRefs{{}, {}}) // one empty entry per row
	is.Equal(st, Stats{})
}
