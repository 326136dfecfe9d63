package refs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/googleapis/gax-go/v2"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/problem"
)

// Fetcher fetches reference images under the address policy, the size caps and
// the image checks. Build one per instance and share it: it holds the HTTP
// client (and its connection pool) and the instance's limits on reference
// work, and is safe for concurrent use.
type Fetcher struct {
	o       Options
	buckets *bucket.Client
	client  *http.Client
	backoff gax.Backoff // copied per fetch: a Backoff keeps state
	lim     *limits
}

// NewFetcher returns a fetcher that reads gs:// references through the
// storage adapter (nil refuses them) and everything else over HTTPS under the
// options.
func NewFetcher(buckets *bucket.Client, o Options) *Fetcher {
	o = o.withDefaults()
	return &Fetcher{
		o:       o,
		buckets: buckets,
		client: &http.Client{
			Transport:     newTransport(o),
			CheckRedirect: checkRedirect(o),
			// No Jar: cookies are neither kept nor forwarded between hops.
		},
		backoff: gax.Backoff{Initial: 250 * time.Millisecond, Max: 4 * time.Second, Multiplier: 2},
		lim:     newLimits(o.MaxFetches, o.MaxInflight),
	}
}

// newTransport is the HTTP transport of every fetch. Proxy is nil on purpose: a
// proxy would dial on our behalf and bypass the address policy.
func newTransport(o Options) *http.Transport {
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            newDialer(o).DialContext,
		ForceAttemptHTTP2:      true,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    o.Timeout,
		MaxIdleConns:           32,
		MaxIdleConnsPerHost:    o.MaxFetches,
		IdleConnTimeout:        30 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
}

// Image is a fetched reference that passed every check.
type Image struct {
	URL      string // as the user wrote it
	SHA256   string // hex digest of the content
	MIMEType string // sniffed from the content, not taken from the server
	Data     []byte // the content, from Fetch only: Resolve streams it to the bucket
	Width    int
	Height   int
}

// sink receives a reference's content once its header passed the checks; the
// content stays only if it is committed.
type sink interface {
	io.Writer
	commit(ctx context.Context) error
	abort()
}

// opener opens the sink of one attempt's content.
type opener func(ctx context.Context, mimeType string) (sink, error)

// memSink keeps the content in memory, for Fetch.
type memSink struct{ bytes.Buffer }

func (m *memSink) commit(context.Context) error { return nil }
func (m *memSink) abort()                       { m.Reset() }

// Fetch reads one reference (https://, gs:// in an allowed bucket, or http://
// when loopback is allowed), checks it and returns it with its content. It
// takes its share of the instance's limits like any fetch. Errors are
// *problem.Error with code RefNotAllowed, RefFetchFailed, RefTooLarge or
// RefNotImage and a detail that names rawURL and the reason, and no address
// the user did not write.
func (f *Fetcher) Fetch(ctx context.Context, rawURL string) (Image, error) {
	var last *memSink
	img, err := f.fetch(ctx, rawURL, func(context.Context, string) (sink, error) {
		last = &memSink{}
		return last, nil
	})
	if err != nil {
		return Image{}, err
	}
	img.Data = last.Bytes()
	return img, nil
}

// fetch reads one reference, checks its header, and streams its content into
// a sink from open while hashing it: one pass, and no more of the content in
// memory than the header check read. A failure of the sink is a *storeError,
// every other a *problem.Error as Fetch documents.
func (f *Fetcher) fetch(ctx context.Context, rawURL string, open opener) (Image, error) {
	img, err := f.read(ctx, rawURL, open)
	var se *storeError
	if errors.As(err, &se) {
		return Image{}, se
	}
	if err != nil {
		return Image{}, asProblem(rawURL, err)
	}
	img.URL = rawURL
	return img, nil
}

// read reads a reference by scheme.
func (f *Fetcher) read(ctx context.Context, rawURL string, open opener) (Image, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return Image{}, fail(problem.RefNotAllowed, err, "is not an absolute https:// or gs:// URL")
	}
	if u.User != nil {
		return Image{}, fail(problem.RefNotAllowed, nil, "must not carry credentials")
	}
	switch {
	case u.Scheme == "gs":
		return f.readObject(ctx, u, open)
	case schemeAllowed(u.Scheme, f.o.AllowLoopback):
		return f.get(ctx, u, open)
	case u.Scheme == "http":
		return Image{}, fail(problem.RefNotAllowed, nil, "must use https://")
	default:
		return Image{}, fail(problem.RefNotAllowed, nil, "uses scheme %q; use https:// or gs://", u.Scheme)
	}
}

// schemeAllowed says which schemes may be fetched over HTTP, on the first hop
// and on every redirect: https, and http only where loopback is allowed.
func schemeAllowed(scheme string, allowLoopback bool) bool {
	return scheme == "https" || (scheme == "http" && allowLoopback)
}

// get fetches u over HTTP, retrying timeouts, 429 and 5xx with gax backoff.
func (f *Fetcher) get(ctx context.Context, u *url.URL, open opener) (Image, error) {
	bo := f.backoff
	for attempt := 1; ; attempt++ {
		img, err := f.getOnce(ctx, u, open)
		if err == nil {
			return img, nil
		}
		if attempt > f.o.Retries || !shouldRetry(err) {
			return Image{}, describe(late(ctx, err), attempt, f.o)
		}
		if err := gax.Sleep(ctx, bo.Pause()); err != nil {
			return Image{}, describe(late(ctx, err), attempt, f.o)
		}
	}
}

// getOnce is one attempt. It waits for its share of the instance's limits
// first; Options.Timeout then bounds it from dial to last byte stored.
func (f *Fetcher) getOnce(ctx context.Context, u *url.URL, open opener) (Image, error) {
	res, err := f.lim.reserve(ctx, f.o.MaxBytes)
	if err != nil {
		return Image{}, err
	}
	defer res.release()
	actx, cancel := context.WithTimeout(ctx, f.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Image{}, fail(problem.RefNotAllowed, err, "is not a valid URL")
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "image/png, image/jpeg, image/webp, image/gif")
	resp, err := f.client.Do(req)
	if err != nil {
		return Image{}, attemptError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Read a little so the connection can be reused; the rest is dropped.
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		return Image{}, &statusError{status: resp.StatusCode}
	}
	// A declared length over the cap fails early; the cap itself is enforced
	// while reading, whatever the header says. A declared length under it
	// gives the rest of the reservation back: the transport reads no more.
	if resp.ContentLength > f.o.MaxBytes {
		return Image{}, fail(problem.RefTooLarge, nil, "is larger than %s", sizeText(f.o.MaxBytes))
	}
	res.shrink(resp.ContentLength)
	img, err := f.consume(actx, resp.Body, open)
	if err != nil {
		return Image{}, attemptError(ctx, err)
	}
	return img, nil
}

// consume checks the header of an open reference, then streams the whole of
// it into a sink from open, hashing it on the way. Only what the header check
// read is held in memory (a few KiB for ordinary images; never more than
// MaxBytes, which the reservation covers).
func (f *Fetcher) consume(ctx context.Context, body io.Reader, open opener) (Image, error) {
	src := &recordingReader{r: body}
	capped := &io.LimitedReader{R: src, N: f.o.MaxBytes + 1}
	var head bytes.Buffer
	mimeType, w, h, err := inspectStream(io.TeeReader(capped, &head), f.o.MaxPixels)
	if src.err != nil {
		return Image{}, src.err // the transfer failed, not the image
	}
	if int64(head.Len()) > f.o.MaxBytes {
		return Image{}, fail(problem.RefTooLarge, nil, "is larger than %s", sizeText(f.o.MaxBytes))
	}
	if err != nil {
		return Image{}, err
	}
	dst, err := open(ctx, mimeType)
	if err != nil {
		return Image{}, &storeError{err}
	}
	sum := sha256.New()
	_, err = copyCapped(io.MultiWriter(dst, sum), io.MultiReader(&head, capped), f.o.MaxBytes)
	var fl *failure
	switch {
	case src.err != nil:
		dst.abort()
		return Image{}, src.err
	case errors.As(err, &fl):
		dst.abort()
		return Image{}, err
	case err != nil:
		dst.abort()
		return Image{}, storeFailure(ctx, err)
	}
	if err := dst.commit(ctx); err != nil {
		return Image{}, storeFailure(ctx, err)
	}
	return Image{SHA256: hex.EncodeToString(sum.Sum(nil)), MIMEType: mimeType, Width: w, Height: h}, nil
}

// storeFailure is a failed write to the sink: the bucket's fault, unless the
// fetch's own time ran out meanwhile (the write was cut short with it), which
// is the reference's slowness or the batch's deadline.
func storeFailure(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("storing was cut short: %w", ctx.Err())
	}
	return &storeError{err}
}

// recordingReader keeps the first read error other than EOF, so a failed
// transfer is told from content that fails a check.
type recordingReader struct {
	r   io.Reader
	err error
}

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// checkRedirect bounds the redirects of one attempt and re-checks each target's
// scheme; the target's address is checked when it is dialled.
func checkRedirect(o Options) func(req *http.Request, via []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) > o.MaxRedirects {
			if o.MaxRedirects == 0 {
				return &redirectError{why: "it redirects, and redirects are not followed"}
			}
			return &redirectError{why: fmt.Sprintf("it redirects more than %d times", o.MaxRedirects)}
		}
		if !schemeAllowed(req.URL.Scheme, o.AllowLoopback) {
			return &redirectError{why: "it redirects to a URL scheme that is not allowed"}
		}
		if req.URL.User != nil {
			return &redirectError{why: "it redirects to a URL with credentials"}
		}
		return nil
	}
}
