package refs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/ledger"
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

// fetched is the outcome of fetching and storing one distinct URL. The bytes
// are not kept: memory stays at Concurrency × MaxBytes whatever the batch.
type fetched struct {
	img     Image // without Data
	created bool
	err     error
}

// Resolve fetches every distinct URL of rows once (at most Concurrency at a
// time), stores each distinct content once, content-addressed at
// ledger.RefObject(sha) in b (a content an earlier batch stored is not
// uploaded again), and merges each row (see Merge) under limit. rows[i] is row
// i's URLs in merge order (batch.MergeRefURLs). b may be nil when no row has
// a reference.
//
// All or nothing for the batch: if any reference fails, Resolve returns a
// *problem.Error whose code is that of the first failing URL (in row order) and
// whose Fields list every failing reference at every place locate(url) says it
// was written (JSON pointers such as /rows/0/refs/1 or /refs/0). Contents
// fetched before the failure may stay stored: they are content-addressed, shared
// by every batch, and pruned by retention when nothing uses them. A storage
// failure is returned as the storage adapter classified it.
func (f *Fetcher) Resolve(ctx context.Context, b *bucket.Bucket, rows [][]string, limit int, locate func(url string) []string) ([]RowRefs, Stats, error) {
	var st Stats
	var distinct []string
	seen := map[string]bool{}
	for _, urls := range rows {
		st.Submitted += len(urls)
		for _, u := range urls {
			if !seen[u] {
				seen[u] = true
				distinct = append(distinct, u)
			}
		}
	}
	st.DistinctURLs = len(distinct)

	// Fetch and store everything, failures included: the answer lists every bad
	// reference, so one failure does not cancel the others.
	results := make([]fetched, len(distinct))
	var g errgroup.Group
	g.SetLimit(f.o.Concurrency)
	for i, u := range distinct {
		g.Go(func() error {
			results[i] = f.fetchAndStore(ctx, b, u)
			return nil
		})
	}
	_ = g.Wait() // the goroutines report through results
	if err := ctx.Err(); err != nil {
		// The caller gave up; the references are not to blame.
		return nil, st, fmt.Errorf("refs: resolve: %w", context.Cause(ctx))
	}
	for _, r := range results {
		var se *storeError
		if errors.As(r.err, &se) {
			return nil, st, fmt.Errorf("refs: storing reference images: %w", se.err)
		}
	}
	if err := failures(distinct, results, locate); err != nil {
		return nil, st, err
	}

	shaOf := make(map[string]string, len(distinct))
	byHash := make(map[string]Image, len(distinct)) // the first URL's copy of each content
	for _, r := range results {
		if _, dup := byHash[r.img.SHA256]; !dup {
			byHash[r.img.SHA256] = r.img
		}
		shaOf[r.img.URL] = r.img.SHA256
		if r.created {
			st.Uploaded++
		}
	}
	st.UniqueContents = len(byHash)

	out := make([]RowRefs, len(rows))
	for i, urls := range rows {
		keptURLs, dropped := Merge(urls, shaOf, limit)
		rr := RowRefs{Dropped: dropped}
		for _, u := range keptURLs {
			img := byHash[shaOf[u]]
			rr.Refs = append(rr.Refs, ledger.Ref{
				URL:      u,
				SHA256:   img.SHA256,
				Object:   ledger.RefObject(img.SHA256),
				MIMEType: img.MIMEType,
			})
		}
		out[i] = rr
	}
	return out, st, nil
}

// storeError marks a failure to store a fetched reference: the bucket's fault,
// not the reference's.
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }

// fetchAndStore fetches one URL and stores its content once. Touch first: a
// content an earlier batch stored costs a read, not an upload, and is marked in
// use so retention keeps it; the write is create-once, so a concurrent writer
// of the same content is not an error. Its custom time records when it was
// last in use, so the lifecycle rule on days since custom time deletes only
// what nobody uses.
func (f *Fetcher) fetchAndStore(ctx context.Context, b *bucket.Bucket, u string) fetched {
	img, err := f.Fetch(ctx, u)
	if err != nil {
		return fetched{err: err}
	}
	name := ledger.RefObject(img.SHA256)
	ok, err := b.Touch(ctx, name, 24*time.Hour)
	if err != nil {
		return fetched{err: &storeError{fmt.Errorf("refs: store %s: %w", u, err)}}
	}
	created := false
	if !ok {
		res, err := b.Create(ctx, name, img.Data, bucket.Meta{ContentType: img.MIMEType, CustomTime: time.Now().UTC()})
		if err != nil {
			return fetched{err: &storeError{fmt.Errorf("refs: store %s: %w", u, err)}}
		}
		created = res.Outcome == bucket.Won
	}
	img.Data = nil
	return fetched{img: img, created: created}
}

// failures gathers every failed fetch into one problem, or returns nil.
func failures(urls []string, results []fetched, locate func(string) []string) error {
	var (
		code   problem.Code
		fields []problem.FieldError
		causes []error
		detail string
		bad    int
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
