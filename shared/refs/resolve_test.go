package refs

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/devstack/stacktest"
	"github.com/assetgen/assetgen/shared/layout"
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
	var imgs [][]byte
	for i := range 4 {
		imgs = append(imgs, pngBytes(t, 2, 2, uint8(30+i)))
		routes[fmt.Sprintf("/%d.png", i)] = bytesRoute(imgs[i])
	}
	srv, hits := serve(t, routes)
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
	is.Equal(hits.count("/2.png"), 0) // the extras are never fetched
	is.Equal(hits.count("/3.png"), 0)
	is.Equal(st, Stats{Submitted: 4, DistinctURLs: 2, UniqueContents: 2, Uploaded: 2})
	for i, data := range imgs {
		ok, err := store.Exists(context.Background(), ledger.RefObject(sha(data)))
		is.NoErr(err)
		is.Equal(ok, i < 2) // only the kept ones are stored
	}
	is.Equal(objects(t, store, layout.Staging), []string(nil)) // nothing left in staging
}

// A row asks for as many URLs as it lacks distinct contents: duplicates make
// it fetch the next URL, and it stops once it has the model's limit.
func TestResolveFetchesOnlyWhatRowsKeep(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Bucket
	a, b, c, d := pngBytes(t, 2, 2, 70), pngBytes(t, 2, 2, 71), pngBytes(t, 2, 2, 72), pngBytes(t, 2, 2, 73)
	srv, hits := serve(t, map[string]http.HandlerFunc{
		"/a.png": bytesRoute(a), "/copy.png": bytesRoute(a), "/b.png": bytesRoute(b),
		"/c.png": bytesRoute(c), "/d.png": bytesRoute(d),
	})
	at := func(p string) string { return srv.URL + p }
	req := request{
		global: []string{at("/c.png"), at("/d.png")},
		own:    [][]string{{at("/a.png"), at("/copy.png"), at("/b.png")}, {at("/b.png")}},
	}
	f := newTestFetcher(Options{AllowLoopback: true})

	got, st, err := f.Resolve(context.Background(), store, req.rows(), 3, req.locate)
	is.NoErr(err) // resolved
	var keep0 []string
	for _, r := range got[0].Refs {
		keep0 = append(keep0, r.URL)
	}
	is.Equal(keep0, []string{at("/a.png"), at("/b.png"), at("/c.png")}) // a duplicate made room for the next one
	is.Equal(got[0].Dropped, []ledger.Dropped{
		{URL: at("/copy.png"), Reason: "duplicate of " + at("/a.png")},
		{URL: at("/d.png"), Reason: "over the limit of 3 references"},
	})
	is.Equal(len(got[1].Refs), 3) // b, c, d
	is.Equal(got[1].Dropped, []ledger.Dropped(nil))
	for _, p := range []string{"/a.png", "/copy.png", "/b.png", "/c.png", "/d.png"} {
		is.Equal(hits.count(p), 1) // each wanted URL fetched once for every row
	}
	is.Equal(st, Stats{Submitted: 8, DistinctURLs: 5, UniqueContents: 4, Uploaded: 4})

	// With a limit of 1 the second row's global refs are never asked for.
	hits2 := request{global: []string{at("/d.png")}, own: [][]string{{at("/c.png")}}}
	_, st, err = f.Resolve(context.Background(), store, hits2.rows(), 1, hits2.locate)
	is.NoErr(err)
	is.Equal(st.DistinctURLs, 1)      // only the row's own
	is.Equal(hits.count("/d.png"), 1) // not fetched again
}

// URLs that differ only in case of scheme and host, a default port or a
// fragment are one fetch; the later one is a duplicate of the first.
func TestResolveNormalisesURLs(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Bucket
	srv, hits := serve(t, map[string]http.HandlerFunc{"/a.png": bytesRoute(pngBytes(t, 2, 2, 80))})
	first := srv.URL + "/a.png"
	second := strings.Replace(srv.URL, "http://", "HTTP://", 1) + "/a.png#top"
	req := request{own: [][]string{{first, second}}}
	f := newTestFetcher(Options{AllowLoopback: true})

	got, st, err := f.Resolve(context.Background(), store, req.rows(), 3, req.locate)
	is.NoErr(err)
	is.Equal(hits.count("/a.png"), 1) // fetched once
	is.Equal(st.DistinctURLs, 1)
	is.Equal(got[0].Dropped, []ledger.Dropped{{URL: second, Reason: "duplicate of " + first}})
}

func TestNormalise(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://Example.COM/a.png", "https://example.com/a.png"},
		{"HTTPS://example.com:443/a.png", "https://example.com/a.png"},
		{"http://example.com:80/a.png#x", "http://example.com/a.png"},
		{"https://example.com:8443/A.png", "https://example.com:8443/A.png"}, // paths keep their case
		{"https://example.com", "https://example.com/"},
		{"https://[::1]:443/a", "https://[::1]/a"},
		{"gs://bucket/o.png", "gs://bucket/o.png"},
		{"https://example.com/a.png?b=1", "https://example.com/a.png?b=1"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			is.New(t).Equal(normalise(tt.in), tt.want)
		})
	}
}

// Every submit of an instance shares its fetch slots: four concurrent
// Resolves of four references each never have more than MaxFetches requests
// at the server at once.
func TestResolveSharesInstanceFetchLimit(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Bucket
	gate := make(chan struct{})
	routes := map[string]http.HandlerFunc{}
	for i := range 16 {
		img := pngBytes(t, 2, 2, uint8(90+i))
		routes[fmt.Sprintf("/%d.png", i)] = func(w http.ResponseWriter, r *http.Request) {
			<-gate
			bytesRoute(img)(w, r)
		}
	}
	srv, hits := serve(t, routes)
	f := newTestFetcher(Options{AllowLoopback: true, MaxFetches: 3})

	var wg sync.WaitGroup
	errs := make([]error, 4)
	for s := range 4 {
		var row []string
		for i := range 4 {
			row = append(row, fmt.Sprintf("%s/%d.png", srv.URL, s*4+i))
		}
		wg.Go(func() { _, _, errs[s] = f.Resolve(context.Background(), store, [][]string{row}, -1, nil) })
	}
	// Every fetch is either at the server or queued for a slot.
	waitFor(t, func() bool { return int(hits.inFlight.Load())+int(f.lim.waiting.Load()) == 16 })
	is.Equal(hits.inFlight.Load(), int32(3)) // the limit, reached and held
	close(gate)
	wg.Wait()
	for _, err := range errs {
		is.NoErr(err) // every submit resolved
	}
	is.Equal(hits.total(), 16)     // every reference fetched
	is.True(hits.peak.Load() <= 3) // never more than the instance's limit at once
}

// Bytes in flight are reserved before a request is sent: a reference of
// unknown length holds MaxBytes of them, so MaxInflight = 2×MaxBytes lets two
// such fetches run at once, whatever MaxFetches allows.
func TestResolveBoundsBytesInFlight(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Bucket
	gate := make(chan struct{})
	routes := map[string]http.HandlerFunc{}
	var row []string
	for i := range 6 {
		img := pngBytes(t, 2, 2, uint8(110+i))
		routes[fmt.Sprintf("/%d.png", i)] = func(w http.ResponseWriter, _ *http.Request) {
			<-gate
			w.(http.Flusher).Flush() // chunked: no Content-Length
			_, _ = w.Write(img)
		}
	}
	srv, hits := serve(t, routes)
	for i := range 6 {
		row = append(row, fmt.Sprintf("%s/%d.png", srv.URL, i))
	}
	f := newTestFetcher(Options{AllowLoopback: true, MaxFetches: 10, MaxBytes: 1 << 10, MaxInflight: 2 << 10})

	done := make(chan error, 1)
	go func() {
		_, _, err := f.Resolve(context.Background(), store, [][]string{row}, -1, nil)
		done <- err
	}()
	waitFor(t, func() bool { return int(hits.inFlight.Load())+int(f.lim.waiting.Load()) == 6 })
	is.Equal(hits.inFlight.Load(), int32(2)) // two reservations of MaxBytes fill MaxInflight
	close(gate)
	is.NoErr(<-done)               // resolved
	is.True(hits.peak.Load() <= 2) // never more at once
}

// A declared Content-Length gives back the rest of the reservation before the
// body is read, so small references do not wait for one another.
func TestResolveShrinksReservationToContentLength(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Bucket
	gate := make(chan struct{})
	routes := map[string]http.HandlerFunc{}
	var row []string
	for i := range 6 {
		img := pngBytes(t, 2, 2, uint8(120+i))
		routes[fmt.Sprintf("/%d.png", i)] = func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(img)))
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-gate // the body waits: the fetcher holds its reservation meanwhile
			_, _ = w.Write(img)
		}
		row = append(row, fmt.Sprintf("/%d.png", i))
	}
	srv, hits := serve(t, routes)
	for i := range row {
		row[i] = srv.URL + row[i]
	}
	f := newTestFetcher(Options{AllowLoopback: true, MaxFetches: 10, MaxBytes: 4 << 10, MaxInflight: 8 << 10})

	done := make(chan error, 1)
	go func() {
		_, _, err := f.Resolve(context.Background(), store, [][]string{row}, -1, nil)
		done <- err
	}()
	waitFor(t, func() bool { return hits.inFlight.Load() == 6 }) // all six at once, not two
	close(gate)
	is.NoErr(<-done) // resolved
}

// References that never answer hold a submit no longer than ResolveTimeout:
// the answer names them, and nothing fetched meanwhile stays in the bucket.
func TestResolveTimeoutNamesSlowURLs(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Bucket
	good := pngBytes(t, 3, 3, 130)
	hang := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	srv, _ := serve(t, map[string]http.HandlerFunc{"/good.png": bytesRoute(good), "/hang1.png": hang, "/hang2.png": hang})
	slow1, slow2 := srv.URL+"/hang1.png", srv.URL+"/hang2.png"
	req := request{
		global: []string{slow2},
		own:    [][]string{{srv.URL + "/good.png", slow1}, {slow1}},
	}
	f := newTestFetcher(Options{AllowLoopback: true, ResolveTimeout: 300 * time.Millisecond})

	got, _, err := f.Resolve(context.Background(), store, req.rows(), 3, req.locate)
	is.True(got == nil) // nothing accepted
	pe := problemOf(t, err)
	is.Equal(pe.Code, problem.RefFetchFailed)   // 422 REF_FETCH_FAILED
	is.True(strings.Contains(pe.Detail, slow1)) // the detail names the slow URLs
	is.True(strings.Contains(pe.Detail, slow2))
	var fields []string
	for _, fe := range pe.Fields {
		fields = append(fields, fe.Field)
		is.True(strings.Contains(fe.Detail, "did not finish within 300ms")) // and says why
	}
	slices.Sort(fields)
	is.Equal(fields, []string{"/refs/0", "/rows/0/refs/1", "/rows/1/refs/0"}) // every place they were written
	is.Equal(objects(t, store, layout.Refs), []string(nil))                   // nothing stored
	is.Equal(objects(t, store, layout.Staging), []string(nil))                // nothing staged
}

// A fetch still waiting for the instance's limits when the time runs out is
// named too, as waiting rather than slow.
func TestResolveTimeoutWhileQueued(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Bucket
	hang := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	srv, hits := serve(t, map[string]http.HandlerFunc{"/hang1.png": hang, "/hang2.png": hang})
	f := newTestFetcher(Options{AllowLoopback: true, MaxFetches: 1, ResolveTimeout: 300 * time.Millisecond})
	req := request{own: [][]string{{srv.URL + "/hang1.png", srv.URL + "/hang2.png"}}}

	_, _, err := f.Resolve(context.Background(), store, req.rows(), 3, req.locate)
	pe := problemOf(t, err)
	is.Equal(len(pe.Fields), 2) // both named
	var details []string
	for _, fe := range pe.Fields {
		details = append(details, fe.Detail)
	}
	joined := strings.Join(details, "\n")
	is.True(strings.Contains(joined, "did not finish within 300ms")) // the one that hung
	is.True(strings.Contains(joined, "this instance was busy"))      // the one that waited
	is.Equal(hits.total(), 1)                                        // which never reached the server
	is.True(f.lim.fetches.TryAcquire(1))                             // and the slot is free again
}

// Contents larger than the storage writer's chunk are streamed across
// chunks, stored byte for byte under their SHA-256.
func TestResolveStreamsLargeContent(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Bucket
	big := paddedPNG(t, 3<<20+12345, 150)
	srv, _ := serve(t, map[string]http.HandlerFunc{"/big.png": bytesRoute(big)})
	f := newTestFetcher(Options{AllowLoopback: true})
	req := request{own: [][]string{{srv.URL + "/big.png"}}}

	got, st, err := f.Resolve(context.Background(), store, req.rows(), 3, req.locate)
	is.NoErr(err)                             // resolved
	is.Equal(got[0].Refs[0].SHA256, sha(big)) // hashed while streaming
	is.Equal(st.Uploaded, 1)
	stored, err := store.ReadBytes(context.Background(), ledger.RefObject(sha(big)))
	is.NoErr(err)
	is.True(bytes.Equal(stored, big)) // the very bytes
	a, err := store.Stat(context.Background(), ledger.RefObject(sha(big)))
	is.NoErr(err)
	is.Equal(a.ContentType, "image/png")                       // the sniffed type
	is.Equal(objects(t, store, layout.Staging), []string(nil)) // staging emptied
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

// A private bucket's objects are read only under a grant of the context, and
// only under its prefix, whatever Buckets says.
func TestResolveGCSPrivateNeedsAGrant(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	c := stacktest.Open(t, nil)
	img := pngBytes(t, 5, 5, 90)
	for _, name := range []string{"uploads/alice/1", "uploads/bob/1"} {
		w := c.Storage.Bucket(stacktest.TestBucket).Object(name).NewWriter(ctx)
		_, err := w.Write(img)
		is.NoErr(err)
		is.NoErr(w.Close()) // uploaded
	}
	f := NewFetcher(c.Buckets, Options{Buckets: []string{stacktest.TestBucket}, Private: []string{stacktest.TestBucket}})
	alice := "gs://" + stacktest.TestBucket + "/uploads/alice/1"
	bob := "gs://" + stacktest.TestBucket + "/uploads/bob/1"

	_, err := f.Fetch(ctx, alice)
	is.Equal(problemOf(t, err).Code, problem.RefNotAllowed) // no grant: not even a listed bucket is read
	granted := WithGrant(ctx, Grant{Bucket: stacktest.TestBucket, Prefix: "uploads/alice/"})
	got, err := f.Fetch(granted, alice)
	is.NoErr(err)                  // the granted prefix is read
	is.Equal(got.SHA256, sha(img)) // and hashed like any reference
	_, err = f.Fetch(granted, bob)
	is.Equal(problemOf(t, err).Code, problem.RefNotAllowed) // another prefix is not
	other := WithGrant(ctx, Grant{Bucket: "elsewhere", Prefix: "uploads/alice/"})
	_, err = f.Fetch(other, alice)
	is.Equal(problemOf(t, err).Code, problem.RefNotAllowed) // a grant names its bucket

	held := WithGrant(ctx, Grant{Bucket: stacktest.TestBucket, Prefix: "uploads/alice/", SHA256: map[string]string{"uploads/alice/1": sha([]byte("other"))}})
	_, err = f.Fetch(held, alice)
	is.Equal(problemOf(t, err).Code, problem.RefFetchFailed) // content that is not what was declared
	req := request{own: [][]string{{alice}}}
	_, _, err = f.Resolve(held, c.Bucket, req.rows(), 3, req.locate)
	is.Equal(problemOf(t, err).Fields[0].Field, "/rows/0/refs/0")                         // fails the reference where it was written
	is.Equal(len(objects(t, c.Bucket, "refs/"))+len(objects(t, c.Bucket, "staging/")), 0) // and keeps nothing of it
	held = WithGrant(ctx, Grant{Bucket: stacktest.TestBucket, Prefix: "uploads/alice/", SHA256: map[string]string{"uploads/alice/1": sha(img)}})
	_, err = f.Fetch(held, alice)
	is.NoErr(err) // the declared digest passes
	rows, _, err := f.Resolve(granted, c.Bucket, req.rows(), 3, req.locate)
	is.NoErr(err)                                                // Resolve passes the grant to its fetches
	is.Equal(rows[0].Refs[0].Object, ledger.RefObject(sha(img))) // stored by content
	is.Equal(f.MaxBytes(), int64(DefaultMaxBytes))               // the size cap uploads are held to
}

func TestResolveNothing(t *testing.T) {
	is := is.New(t)
	f := newTestFetcher(Options{})
	got, st, err := f.Resolve(context.Background(), nil, [][]string{nil, {}}, 3, nil)
	is.NoErr(err)                    // no refs, no store needed
	is.Equal(got, []RowRefs{{}, {}}) // one empty entry per row
	is.Equal(st, Stats{})
}
