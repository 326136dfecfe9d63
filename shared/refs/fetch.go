package refs

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
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
// client (and its connection pool) and is safe for concurrent use.
type Fetcher struct {
	o       Options
	buckets *bucket.Client
	client  *http.Client
	backoff gax.Backoff // copied per fetch: a Backoff keeps state
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
		MaxIdleConnsPerHost:    o.Concurrency,
		IdleConnTimeout:        30 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
}

// Image is a fetched reference that passed every check.
type Image struct {
	URL      string // as the user wrote it
	SHA256   string // hex digest of Data
	MIMEType string // sniffed from the content, not taken from the server
	Data     []byte
	Width    int
	Height   int
}

// Fetch reads one reference (https://, gs:// in an allowed bucket, or http://
// when loopback is allowed) and checks it. Errors are *problem.Error with code
// RefNotAllowed, RefFetchFailed, RefTooLarge or RefNotImage and a detail that
// names rawURL and the reason, and no address the user did not write.
func (f *Fetcher) Fetch(ctx context.Context, rawURL string) (Image, error) {
	data, err := f.read(ctx, rawURL)
	if err != nil {
		return Image{}, asProblem(rawURL, err)
	}
	mimeType, w, h, err := inspect(data, f.o.MaxPixels)
	if err != nil {
		return Image{}, asProblem(rawURL, err)
	}
	sum := sha256.Sum256(data)
	return Image{URL: rawURL, SHA256: hex.EncodeToString(sum[:]), MIMEType: mimeType, Data: data, Width: w, Height: h}, nil
}

// read returns the bytes of a reference, by scheme.
func (f *Fetcher) read(ctx context.Context, rawURL string) ([]byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return nil, fail(problem.RefNotAllowed, err, "is not an absolute https:// or gs:// URL")
	}
	if u.User != nil {
		return nil, fail(problem.RefNotAllowed, nil, "must not carry credentials")
	}
	switch {
	case u.Scheme == "gs":
		return f.readObject(ctx, u)
	case schemeAllowed(u.Scheme, f.o.AllowLoopback):
		return f.get(ctx, u)
	case u.Scheme == "http":
		return nil, fail(problem.RefNotAllowed, nil, "must use https://")
	default:
		return nil, fail(problem.RefNotAllowed, nil, "uses scheme %q; use https:// or gs://", u.Scheme)
	}
}

// schemeAllowed says which schemes may be fetched over HTTP, on the first hop
// and on every redirect: https, and http only where loopback is allowed.
func schemeAllowed(scheme string, allowLoopback bool) bool {
	return scheme == "https" || (scheme == "http" && allowLoopback)
}

// get fetches u over HTTP, retrying timeouts, 429 and 5xx with gax backoff.
func (f *Fetcher) get(ctx context.Context, u *url.URL) ([]byte, error) {
	bo := f.backoff
	for attempt := 1; ; attempt++ {
		data, err := f.getOnce(ctx, u)
		if err == nil {
			return data, nil
		}
		if attempt > f.o.Retries || !shouldRetry(err) {
			return nil, describe(err, attempt, f.o)
		}
		if err := gax.Sleep(ctx, bo.Pause()); err != nil {
			return nil, describe(err, attempt, f.o)
		}
	}
}

// getOnce is one attempt, bounded by Options.Timeout from dial to last byte.
func (f *Fetcher) getOnce(ctx context.Context, u *url.URL) ([]byte, error) {
	actx, cancel := context.WithTimeout(ctx, f.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fail(problem.RefNotAllowed, err, "is not a valid URL")
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "image/png, image/jpeg, image/webp, image/gif")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, attemptError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Read a little so the connection can be reused; the rest is dropped.
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		return nil, &statusError{status: resp.StatusCode}
	}
	// A declared length over the cap fails early; the cap itself is enforced
	// while reading, whatever the header says.
	if resp.ContentLength > f.o.MaxBytes {
		return nil, fail(problem.RefTooLarge, nil, "is larger than %s", sizeText(f.o.MaxBytes))
	}
	data, err := readCapped(resp.Body, f.o.MaxBytes)
	if err != nil {
		return nil, attemptError(ctx, err)
	}
	return data, nil
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
