package refs

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/problem"
)

func TestFetchImages(t *testing.T) {
	pngb, jpgb, gifb, webpb := pngBytes(t, 6, 4, 1), jpegBytes(t, 8, 8), gifBytes(t, 3, 5), webpBytes(t)
	srv, _ := serve(t, map[string]http.HandlerFunc{
		"/a.png":  bytesRoute(pngb),
		"/b.jpg":  bytesRoute(jpgb),
		"/c.gif":  bytesRoute(gifb),
		"/d.webp": bytesRoute(webpb),
		// The server's Content-Type is ignored: the content decides.
		"/lying.html": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write(pngb)
		},
	})
	f := newTestFetcher(Options{AllowLoopback: true})
	tests := []struct {
		path string
		data []byte
		mime string
		w, h int
	}{
		{"/a.png", pngb, "image/png", 6, 4},
		{"/b.jpg", jpgb, "image/jpeg", 8, 8},
		{"/c.gif", gifb, "image/gif", 3, 5},
		{"/d.webp", webpb, "image/webp", 1, 1},
		{"/lying.html", pngb, "image/png", 6, 4},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			is := is.New(t)
			got, err := f.Fetch(context.Background(), srv.URL+tt.path)
			is.NoErr(err)                           // fetched
			is.Equal(got.URL, srv.URL+tt.path)      // URL as given
			is.Equal(got.MIMEType, tt.mime)         // sniffed MIME
			is.Equal(got.SHA256, sha(tt.data))      // SHA-256 of the bytes
			is.True(bytes.Equal(got.Data, tt.data)) // the bytes
			is.Equal(got.Width, tt.w)               // width
			is.Equal(got.Height, tt.h)              // height
		})
	}
}

func TestFetchBombsAndJunk(t *testing.T) {
	const maxBytes = 4 << 10
	big := bytes.Repeat([]byte("x"), 3*maxBytes)
	small := pngBytes(t, 2, 2, 1)
	atCap := append(bytes.Clone(small), make([]byte, maxBytes-len(small))...)
	truncated := pngBytes(t, 2, 2, 3)[:20]
	srv, _ := serve(t, map[string]http.HandlerFunc{
		"/bomb.png": bytesRoute(pngBomb(100000, 100000)),
		// Chunked, no Content-Length: only reading can tell.
		"/chunked": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "image/png")
			_, _ = w.Write(small)
			for i := 0; i < len(big); i += 512 {
				_, _ = w.Write(big[i : i+512])
				w.(http.Flusher).Flush()
			}
		},
		// A declared length over the cap fails before reading.
		"/declared": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			_, _ = w.Write(big)
		},
		"/exactly": bytesRoute(atCap),
		"/page.html": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "image/png") // lies
			_, _ = w.Write([]byte("<!DOCTYPE html><html><head><title>Not an image</title></head></html>"))
		},
		"/truncated.png": bytesRoute(truncated),
		"/empty":         func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) },
	})
	// The oversize body really comes without a length.
	resp, err := http.Get(srv.URL + "/chunked")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.ContentLength != -1 || len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("/chunked: Content-Length %d, Transfer-Encoding %v; want chunked", resp.ContentLength, resp.TransferEncoding)
	}

	f := newTestFetcher(Options{AllowLoopback: true, MaxBytes: maxBytes, MaxPixels: 1_000_000})
	tests := []struct {
		path   string
		code   problem.Code
		reason string
	}{
		{"/bomb.png", problem.RefTooLarge, "100000×100000 pixels"},
		{"/chunked", problem.RefTooLarge, "larger than 4 KiB"},
		{"/declared", problem.RefTooLarge, "larger than 4 KiB"},
		{"/exactly", "", ""}, // at the cap, not over it
		{"/page.html", problem.RefNotImage, "text/html"},
		{"/truncated.png", problem.RefNotImage, "not a readable png"},
		{"/empty", problem.RefNotImage, "not a PNG, JPEG, WebP or GIF"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			is := is.New(t)
			_, err := f.Fetch(context.Background(), srv.URL+tt.path)
			if tt.code == "" {
				is.NoErr(err) // accepted
				return
			}
			pe := problemOf(t, err)
			is.Equal(pe.Code, tt.code)                      // code
			is.True(strings.Contains(pe.Detail, tt.reason)) // reason
		})
	}
}

func TestFetchRetries(t *testing.T) {
	img := pngBytes(t, 2, 2, 5)
	var flaky, limited atomic.Int32
	srv, hits := serve(t, map[string]http.HandlerFunc{
		"/flaky.png": func(w http.ResponseWriter, r *http.Request) {
			if flaky.Add(1) <= 2 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			bytesRoute(img)(w, r)
		},
		"/limited.png": func(w http.ResponseWriter, r *http.Request) {
			if limited.Add(1) <= 1 {
				http.Error(w, "slow down", http.StatusTooManyRequests)
				return
			}
			bytesRoute(img)(w, r)
		},
		"/down.png":      func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusBadGateway) },
		"/forbidden.png": func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "no", http.StatusForbidden) },
	})
	f := newTestFetcher(Options{AllowLoopback: true, Retries: 2})

	t.Run("503 twice then 200", func(t *testing.T) {
		is := is.New(t)
		got, err := f.Fetch(context.Background(), srv.URL+"/flaky.png")
		is.NoErr(err)                         // succeeds on the third attempt
		is.Equal(got.SHA256, sha(img))        // with the image
		is.Equal(hits.count("/flaky.png"), 3) // three requests
	})
	t.Run("429 then 200", func(t *testing.T) {
		is := is.New(t)
		_, err := f.Fetch(context.Background(), srv.URL+"/limited.png")
		is.NoErr(err)                           // rate limiting is retried
		is.Equal(hits.count("/limited.png"), 2) // two requests
	})
	t.Run("5xx every time", func(t *testing.T) {
		is := is.New(t)
		_, err := f.Fetch(context.Background(), srv.URL+"/down.png")
		pe := problemOf(t, err)
		is.Equal(pe.Code, problem.RefFetchFailed)          // fails
		is.True(strings.Contains(pe.Detail, "502"))        // says what the server said
		is.True(strings.Contains(pe.Detail, "3 attempts")) // after every attempt
		is.Equal(hits.count("/down.png"), 3)               // Retries+1 requests
	})
	t.Run("404 is not retried", func(t *testing.T) {
		is := is.New(t)
		_, err := f.Fetch(context.Background(), srv.URL+"/missing.png")
		pe := problemOf(t, err)
		is.Equal(pe.Code, problem.RefFetchFailed)   // fails
		is.True(strings.Contains(pe.Detail, "404")) // with the status
		is.Equal(hits.count("/missing.png"), 1)     // one request
	})
	t.Run("403 is not retried", func(t *testing.T) {
		is := is.New(t)
		_, err := f.Fetch(context.Background(), srv.URL+"/forbidden.png")
		is.Equal(problemOf(t, err).Code, problem.RefFetchFailed) // fails
		is.Equal(hits.count("/forbidden.png"), 1)                // one request
	})
}

// countingTransport counts round trips: one per attempt when nothing redirects.
type countingTransport struct {
	next http.RoundTripper
	n    atomic.Int32
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

func TestFetchTimeout(t *testing.T) {
	is := is.New(t)
	// The server holds every request until the client gives up on it.
	srv, hits := serve(t, map[string]http.HandlerFunc{
		"/hang.png": func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
	})
	f := newTestFetcher(Options{AllowLoopback: true, Timeout: 150 * time.Millisecond, Retries: 2})
	ct := &countingTransport{next: f.client.Transport}
	f.client.Transport = ct

	start := time.Now()
	_, err := f.Fetch(context.Background(), srv.URL+"/hang.png")
	pe := problemOf(t, err)
	is.Equal(pe.Code, problem.RefFetchFailed)            // fails
	is.True(strings.Contains(pe.Detail, "timed out"))    // as a timeout
	is.True(strings.Contains(pe.Detail, "3 attempts"))   // after every attempt
	is.Equal(ct.n.Load(), int32(3))                      // Retries+1 attempts
	is.True(time.Since(start) >= 3*150*time.Millisecond) // each ran to its timeout
	is.True(hits.total() <= 3)                           // and no more reached the server
}

func TestFetchCancelled(t *testing.T) {
	is := is.New(t)
	srv, hits := serve(t, map[string]http.HandlerFunc{
		"/hang.png": func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
	})
	f := newTestFetcher(Options{AllowLoopback: true, Timeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	ct := &countingTransport{next: f.client.Transport}
	f.client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		cancel() // the caller gives up while the request is out
		return ct.RoundTrip(r)
	})
	_, err := f.Fetch(ctx, srv.URL+"/hang.png")
	is.Equal(problemOf(t, err).Code, problem.RefFetchFailed) // fails
	is.Equal(ct.n.Load(), int32(1))                          // and is not retried
	is.True(hits.total() <= 1)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
