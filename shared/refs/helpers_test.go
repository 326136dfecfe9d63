package refs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/googleapis/gax-go/v2"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/problem"
)

// testImage is a small picture whose colour makes each call's bytes distinct.
func testImage(w, h int, shade uint8) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{R: shade, G: uint8(x), B: uint8(y), A: 255})
		}
	}
	return img
}

func pngBytes(t testing.TB, w, h int, shade uint8) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, testImage(w, h, shade)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func jpegBytes(t testing.TB, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, testImage(w, h, 7), nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gifBytes(t testing.TB, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := gif.Encode(&b, testImage(w, h, 9), nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// webpBytes is a 1×1 lossless WebP (nothing in Go encodes WebP).
func webpBytes(t testing.TB) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pngBomb is the start of a PNG that declares w×h RGBA pixels: the signature and
// a valid IHDR chunk, no image data. A full decode would need w×h×4 bytes.
func pngBomb(w, h uint32) []byte {
	var ihdr [13]byte
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8] = 8 // bit depth
	ihdr[9] = 6 // colour type RGBA
	b := []byte("\x89PNG\r\n\x1a\n")
	b = binary.BigEndian.AppendUint32(b, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr[:]...)
	b = append(b, chunk...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(chunk))
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// newTestFetcher is a fetcher with a backoff short enough for tests.
func newTestFetcher(o Options) *Fetcher {
	f := NewFetcher(nil, o)
	f.backoff = gax.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, Multiplier: 2}
	return f
}

// problemOf asserts err is a *problem.Error and returns it.
func problemOf(t *testing.T, err error) *problem.Error {
	t.Helper()
	var pe *problem.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *problem.Error", err, err)
	}
	return pe
}

// isRefused reports whether the address policy stopped a dial somewhere in err.
func isRefused(err error) bool {
	var re *refusedError
	return errors.As(err, &re)
}

// hits counts requests per path, connections, and how many requests run at once.
type hits struct {
	mu       sync.Mutex
	n        map[string]int
	conns    atomic.Int32
	inFlight atomic.Int32
	peak     atomic.Int32
}

func (h *hits) count(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[path]
}

func (h *hits) total() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, v := range h.n {
		n += v
	}
	return n
}

func (h *hits) handler(routes map[string]http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.n[r.URL.Path]++
		h.mu.Unlock()
		cur := h.inFlight.Add(1)
		defer h.inFlight.Add(-1)
		for {
			p := h.peak.Load()
			if cur <= p || h.peak.CompareAndSwap(p, cur) {
				break
			}
		}
		if route, ok := routes[r.URL.Path]; ok {
			route(w, r)
			return
		}
		http.NotFound(w, r)
	})
}

// serve starts a plain-HTTP loopback server over routes and counts its
// requests and connections (a refused dial never makes one).
func serve(t *testing.T, routes map[string]http.HandlerFunc) (*httptest.Server, *hits) {
	return start(t, routes, false)
}

// serveTLS is serve over HTTPS.
func serveTLS(t *testing.T, routes map[string]http.HandlerFunc) (*httptest.Server, *hits) {
	return start(t, routes, true)
}

func start(t *testing.T, routes map[string]http.HandlerFunc, tls bool) (*httptest.Server, *hits) {
	t.Helper()
	h := &hits{n: map[string]int{}}
	srv := httptest.NewUnstartedServer(h.handler(routes))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			h.conns.Add(1)
		}
	}
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, h
}

// bytesRoute answers with fixed bytes under a Content-Type that says nothing.
func bytesRoute(b []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(b)
	}
}

// paddedPNG is a valid PNG of about size bytes: a small image whose private
// ancillary chunk carries pseudo-random padding (decoders skip it).
func paddedPNG(t testing.TB, size int, shade uint8) []byte {
	t.Helper()
	img := pngBytes(t, 2, 2, shade)
	pad := make([]byte, max(size-len(img)-12, 0))
	for i := range pad {
		pad[i] = byte(i*31 + int(shade))
	}
	chunk := append([]byte("prVt"), pad...)
	out := append([]byte(nil), img[:33]...) // signature and IHDR
	out = binary.BigEndian.AppendUint32(out, uint32(len(pad)))
	out = append(out, chunk...)
	out = binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(chunk))
	return append(out, img[33:]...)
}

// objects lists the object names under prefix.
func objects(t *testing.T, b *bucket.Bucket, prefix string) []string {
	t.Helper()
	var names []string
	for a, err := range b.List(context.Background(), bucket.Query{Prefix: prefix}) {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, a.Name)
	}
	return names
}

// waitFor polls cond until it holds, failing the test if it does not within
// ten seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		<-tick.C
	}
}
