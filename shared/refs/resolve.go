package refs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/problem"
)

// RowRefs are one row's references after merging: the kept ones, stored, in
// order, and the dropped ones with the reason.
type RowRefs struct {
	Refs    []ledger.Ref
	Dropped []ledger.Dropped
}

// Stats count what one Resolve did.
type Stats struct {
	Submitted      int // every reference occurrence across rows
	DistinctURLs   int // URLs fetched (each once)
	UniqueContents int // distinct contents among them
	Uploaded       int // contents newly written to the bucket
}

// DedupRate is the share of submitted references that needed no content of
// their own: 1 - UniqueContents/Submitted, 0 when nothing was submitted.
func (s Stats) DedupRate() float64 {
	if s.Submitted == 0 {
		return 0
	}
	return 1 - float64(s.UniqueContents)/float64(s.Submitted)
}

// Resolve fetches, checks and stores the references of rows (rows[i] is row
// i's URLs in merge order, batch.MergeRefURLs) and merges each row (see
// Merge) under limit; b may be nil when no row has a reference.
//
// Only what the model can use is fetched: each row fetches its URLs in order,
// as many at a time as it still lacks distinct contents, until it has limit of
// them (a negative limit wants every one); the URLs after that are dropped
// unfetched as over the limit. A URL (compared in normalised form) is fetched
// once for all the rows that want it. Every fetch shares the instance's
// limits on fetches and bytes in flight, and the fetching of one Resolve ends
// at ResolveTimeout: a reference still being fetched (or waiting for the
// instance's limits) then fails with RefFetchFailed, naming its URL.
//
// Contents are streamed into staging/ while they are hashed, and only once
// every row is resolved are the kept ones copied to ledger.RefObject(sha)
// (create-once; a content an earlier batch stored is only touched, so
// retention keeps it). Whatever happens, the staged objects are deleted, so
// a failed Resolve leaves nothing under refs/.
//
// All or nothing for the batch: if any reference fails, Resolve returns a
// *problem.Error whose code is that of the first failing URL (in row order) and
// whose Fields list every failing reference at every place locate(url) says it
// was written (JSON pointers such as /rows/0/refs/1 or /refs/0). A storage
// failure is returned as the storage adapter classified it.
func (f *Fetcher) Resolve(ctx context.Context, b *bucket.Bucket, rows [][]string, limit int, locate func(url string) []string) ([]RowRefs, Stats, error) {
	var st Stats
	for _, urls := range rows {
		st.Submitted += len(urls)
	}
	if st.Submitted == 0 {
		return make([]RowRefs, len(rows)), st, nil
	}
	rctx, cancel := context.WithTimeoutCause(ctx, f.o.ResolveTimeout, errDeadline)
	defer cancel()
	rs := &resolution{f: f, b: b, ctx: rctx, fetches: map[string]*pending{}}
	defer rs.cleanup(ctx)
	var wg sync.WaitGroup
	for _, urls := range rows {
		wg.Go(func() { rs.row(urls, limit) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		// The caller gave up; the references are not to blame.
		return nil, st, fmt.Errorf("refs: resolve: %w", context.Cause(ctx))
	}

	// Every fetched URL in row order, each once: the order failures are told in.
	var fetchedURLs []string
	var results []fetched
	seen := map[string]bool{}
	shaOf := map[string]string{}
	contents := map[string]fetched{} // sha → the first fetch of that content
	for _, urls := range rows {
		for _, u := range urls {
			p := rs.lookup(u)
			if p == nil || seen[u] {
				continue
			}
			seen[u] = true
			fetchedURLs, results = append(fetchedURLs, u), append(results, p.res)
			var se *storeError
			if errors.As(p.res.err, &se) {
				return nil, st, fmt.Errorf("refs: storing reference images: %w", se.err)
			}
			if p.res.err == nil {
				shaOf[u] = p.res.img.SHA256
				if _, dup := contents[p.res.img.SHA256]; !dup {
					contents[p.res.img.SHA256] = p.res
				}
			}
		}
	}
	st.DistinctURLs = len(rs.fetches)
	if err := failures(fetchedURLs, results, locate, f.o.ResolveTimeout); err != nil {
		return nil, st, err
	}
	st.UniqueContents = len(contents)

	out := make([]RowRefs, len(rows))
	kept := map[string]bool{}
	for i, urls := range rows {
		keptURLs, dropped := Merge(urls, shaOf, limit)
		rr := RowRefs{Dropped: dropped}
		for _, u := range keptURLs {
			c := contents[shaOf[u]]
			kept[c.img.SHA256] = true
			rr.Refs = append(rr.Refs, ledger.Ref{
				URL:      u,
				SHA256:   c.img.SHA256,
				Object:   ledger.RefObject(c.img.SHA256),
				MIMEType: c.img.MIMEType,
			})
		}
		out[i] = rr
	}
	uploaded, err := rs.promote(ctx, contents, kept)
	if err != nil {
		return nil, st, err
	}
	st.Uploaded = uploaded
	return out, st, nil
}

// fetched is the outcome of fetching and staging one distinct URL. The bytes
// are not kept: they went to the staged object as they arrived.
type fetched struct {
	img    Image
	staged string // the staged object holding the content
	err    error
}

// pending is one URL's fetch, shared by every row that wants it.
type pending struct {
	done chan struct{}
	res  fetched
}

// resolution is one Resolve at work.
type resolution struct {
	f   *Fetcher
	b   *bucket.Bucket
	ctx context.Context // ends at ResolveTimeout

	mu      sync.Mutex
	fetches map[string]*pending // by normalised URL
	staged  []string            // every staging object opened, to delete
}

// row fetches the first URLs of one row until it has limit distinct contents
// or no URL is left, asking each round for as many as it still lacks. It
// stops at the first failure: the batch fails whole.
func (rs *resolution) row(urls []string, limit int) {
	next := 0
	for next < len(urls) {
		want := len(urls) - next
		if limit >= 0 {
			want = min(want, limit-rs.distinct(urls[:next]))
		}
		if want <= 0 {
			return
		}
		round := make([]*pending, 0, want)
		for _, u := range urls[next : next+want] {
			round = append(round, rs.start(u))
		}
		next += want
		failed := false
		for _, p := range round {
			<-p.done
			failed = failed || p.res.err != nil
		}
		if failed {
			return
		}
	}
}

// distinct counts the contents among urls, all fetched without error.
func (rs *resolution) distinct(urls []string) int {
	seen := map[string]bool{}
	for _, u := range urls {
		seen[rs.lookup(u).res.img.SHA256] = true
	}
	return len(seen)
}

// start returns u's fetch, starting it unless it was started already.
func (rs *resolution) start(u string) *pending {
	key := normalise(u)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if p, ok := rs.fetches[key]; ok {
		return p
	}
	p := &pending{done: make(chan struct{})}
	rs.fetches[key] = p
	go func() {
		defer close(p.done)
		p.res = rs.fetch(u)
	}()
	return p
}

// lookup returns u's fetch, or nil if none was started.
func (rs *resolution) lookup(u string) *pending {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.fetches[normalise(u)]
}

// fetch fetches u and streams its content to a staging object of its own.
func (rs *resolution) fetch(u string) fetched {
	var name string
	img, err := rs.f.fetch(rs.ctx, u, func(ctx context.Context, mimeType string) (sink, error) {
		name = layout.Staging + newStagingID()
		rs.mu.Lock()
		rs.staged = append(rs.staged, name)
		rs.mu.Unlock()
		// The custom time travels with the copy to refs/ where a copy keeps
		// the source's attributes.
		up := rs.b.NewUpload(ctx, name, bucket.Meta{ContentType: mimeType, CustomTime: time.Now().UTC()}, stageChunk)
		return &stagingSink{up: up}, nil
	})
	if err != nil {
		return fetched{err: err}
	}
	return fetched{img: img, staged: name}
}

// promote copies each kept content from its staging object to its place
// under refs/, unless a content stored earlier is there (then it is touched,
// so retention keeps it), and returns how many it created. Copies run on the
// bucket's side: no content passes through the instance again.
func (rs *resolution) promote(ctx context.Context, contents map[string]fetched, kept map[string]bool) (int, error) {
	var created atomic.Int32
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(rs.f.o.MaxFetches)
	for sha, c := range contents {
		if !kept[sha] {
			continue
		}
		g.Go(func() error {
			name := ledger.RefObject(sha)
			ok, err := rs.b.Touch(gctx, name, 24*time.Hour)
			if err != nil || ok {
				return err
			}
			res, err := rs.b.CopyOnce(gctx, c.staged, name, bucket.Meta{ContentType: c.img.MIMEType, CustomTime: time.Now().UTC()})
			if res.Outcome == bucket.Won {
				created.Add(1)
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return 0, fmt.Errorf("refs: storing reference images: %w", err)
	}
	return int(created.Load()), nil
}

// cleanupTimeout bounds the deletion of a Resolve's staging objects.
const cleanupTimeout = 15 * time.Second

// cleanup deletes every staging object the Resolve opened (one that was never
// created is no error), on a context of its own: the Resolve's may be what
// ran out. What it misses, the lifecycle rule on staging/ deletes a day later.
func (rs *resolution) cleanup(ctx context.Context) {
	rs.mu.Lock()
	names := slices.Clone(rs.staged)
	rs.mu.Unlock()
	if len(names) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	var g errgroup.Group
	g.SetLimit(rs.f.o.MaxFetches)
	for _, name := range names {
		g.Go(func() error {
			if err := rs.b.Delete(ctx, name); err != nil {
				obs.Logger(ctx).Warn("refs: deleting a staged reference failed; the lifecycle rule on staging/ removes it", "object", name, "error", err)
			}
			return nil
		})
	}
	_ = g.Wait()
}

// stagingSink is a staged reference's upload.
type stagingSink struct{ up *bucket.Upload }

func (s *stagingSink) Write(p []byte) (int, error) { return s.up.Write(p) }
func (s *stagingSink) abort()                      { s.up.Abort() }

func (s *stagingSink) commit(ctx context.Context) error {
	res, err := s.up.Commit(ctx)
	if err == nil && res.Outcome != bucket.Won {
		err = fmt.Errorf("refs: staging object %s exists already", s.up.Name())
	}
	return err
}

func newStagingID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// normalise is the form in which two URLs that name the same resource
// compare equal: scheme and host in lower case, no default port, no fragment
// (never sent), an empty path as /. A URL that does not parse is its own.
func normalise(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Scheme = strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	u.Host = host
	u.Fragment, u.RawFragment = "", ""
	if u.Path == "" && u.Opaque == "" {
		u.Path = "/"
	}
	return u.String()
}

// storeError marks a failure to store a fetched reference: the bucket's fault,
// not the reference's.
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// slowNamed is how many slow URLs a problem's detail names; its fields name
// every one.
const slowNamed = 5

// failures gathers every failed fetch into one problem, or returns nil. When
// the deadline cut fetches short, the detail names their URLs.
func failures(urls []string, results []fetched, locate func(string) []string, timeout time.Duration) error {
	var (
		code   problem.Code
		fields []problem.FieldError
		causes []error
		detail string
		bad    int
		slow   []string
	)
	for i, r := range results {
		if r.err == nil {
			continue
		}
		pe := asProblemError(urls[i], r.err)
		if bad == 0 {
			code, detail = pe.Code, pe.Detail
		}
		bad++
		causes = append(causes, pe)
		if errors.As(r.err, new(*lateError)) {
			slow = append(slow, urls[i])
		}
		var where []string
		if locate != nil {
			where = locate(urls[i])
		}
		if len(where) == 0 {
			where = []string{""}
		}
		for _, ptr := range where {
			fields = append(fields, problem.FieldError{Field: ptr, Code: string(pe.Code), Detail: pe.Detail})
		}
	}
	if bad == 0 {
		return nil
	}
	if bad > 1 {
		detail = fmt.Sprintf("%d references could not be used", bad)
	}
	if len(slow) > 0 && (bad > 1 || len(slow) > 1) {
		named := strings.Join(slow[:min(len(slow), slowNamed)], ", ")
		if len(slow) > slowNamed {
			named += fmt.Sprintf(" and %d more", len(slow)-slowNamed)
		}
		detail = fmt.Sprintf("%d reference(s) did not resolve within %s: %s", len(slow), timeout, named)
		if bad > len(slow) {
			detail += fmt.Sprintf("; %d more could not be used", bad-len(slow))
		}
	}
	return &problem.Error{Code: code, Detail: detail, Fields: fields, Err: errors.Join(causes...)}
}

// asProblemError returns err as the *problem.Error Fetch returns.
func asProblemError(rawURL string, err error) *problem.Error {
	var pe *problem.Error
	if errors.As(err, &pe) {
		return pe
	}
	return asProblem(rawURL, err)
}
