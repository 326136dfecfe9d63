package refs

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/problem"
)

func TestInspect(t *testing.T) {
	pngb := pngBytes(t, 4, 3, 1)
	tests := []struct {
		name       string
		data       []byte
		maxPixels  int64
		mime       string
		w, h       int
		code       problem.Code
		reasonPart string
	}{
		{name: "png", data: pngb, maxPixels: 100, mime: "image/png", w: 4, h: 3},
		{name: "jpeg", data: jpegBytes(t, 5, 2), maxPixels: 100, mime: "image/jpeg", w: 5, h: 2},
		{name: "gif", data: gifBytes(t, 2, 6), maxPixels: 100, mime: "image/gif", w: 2, h: 6},
		{name: "webp", data: webpBytes(t), maxPixels: 100, mime: "image/webp", w: 1, h: 1},
		{name: "exactly the pixel cap", data: pngb, maxPixels: 12, mime: "image/png", w: 4, h: 3},
		{name: "one pixel over the cap", data: pngb, maxPixels: 11, code: problem.RefTooLarge, reasonPart: "4×3 pixels"},
		{name: "png bomb header", data: pngBomb(100000, 100000), maxPixels: 50_000_000, code: problem.RefTooLarge, reasonPart: "100000×100000"},
		{name: "html", data: []byte("<!doctype html><html><body>hi</body></html>"), maxPixels: 100, code: problem.RefNotImage, reasonPart: "text/html"},
		{name: "empty", data: nil, maxPixels: 100, code: problem.RefNotImage},
		{name: "svg", data: []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`), maxPixels: 100, code: problem.RefNotImage},
		{name: "bmp", data: []byte("BM\x00\x00\x00\x00\x00\x00\x00\x00"), maxPixels: 100, code: problem.RefNotImage, reasonPart: "image/bmp"},
		{name: "png signature only", data: pngb[:8], maxPixels: 100, code: problem.RefNotImage, reasonPart: "readable png"},
		{name: "png with a broken header CRC", data: corruptCRC(pngBomb(10, 10)), maxPixels: 100, code: problem.RefNotImage},
		{name: "zero-width png", data: pngBomb(0, 10), maxPixels: 100, code: problem.RefNotImage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			mime, w, h, err := inspect(tt.data, tt.maxPixels)
			if tt.code == "" {
				is.NoErr(err)           // accepted
				is.Equal(mime, tt.mime) // sniffed MIME
				is.Equal(w, tt.w)       // width
				is.Equal(h, tt.h)       // height
				return
			}
			var f *failure
			is.True(errors.As(err, &f))                        // a failure
			is.Equal(f.code, tt.code)                          // code
			is.True(strings.Contains(f.reason, tt.reasonPart)) // reason says why
		})
	}
}

func corruptCRC(b []byte) []byte {
	b = bytes.Clone(b)
	b[len(b)-1] ^= 0xff
	return b
}

func TestCopyCapped(t *testing.T) {
	is := is.New(t)
	data := bytes.Repeat([]byte{1}, 100)

	var got bytes.Buffer
	n, err := copyCapped(&got, bytes.NewReader(data), 100)
	is.NoErr(err)                           // exactly the cap is fine
	is.Equal(n, int64(100))                 // all of it
	is.True(bytes.Equal(got.Bytes(), data)) // the very bytes

	_, err = copyCapped(io.Discard, bytes.NewReader(append(data, 2)), 100)
	var f *failure
	is.True(errors.As(err, &f))           // one byte over fails
	is.Equal(f.code, problem.RefTooLarge) // as too large
	is.Equal(f.reason, "is larger than 100 bytes")

	// A reader that trickles one byte at a time changes nothing.
	_, err = copyCapped(io.Discard, iotest.OneByteReader(bytes.NewReader(make([]byte, 1<<20))), 1<<10)
	is.True(errors.As(err, &f)) // trickled oversize fails too
	is.Equal(f.reason, "is larger than 1 KiB")
}

func TestOptionsDefaults(t *testing.T) {
	is := is.New(t)
	o := Options{}.withDefaults()
	is.Equal(o.MaxBytes, int64(10<<20))
	is.Equal(o.MaxPixels, int64(50_000_000))
	is.Equal(o.Timeout, DefaultTimeout)
	is.Equal(o.Retries, 2)
	is.Equal(o.MaxFetches, 8)
	is.Equal(o.MaxInflight, int64(128<<20))
	is.Equal(o.ResolveTimeout, 25*time.Second)
	is.Equal(o.MaxRedirects, 3)

	o = Options{MaxBytes: 20 << 20, MaxInflight: 1 << 20}.withDefaults()
	is.Equal(o.MaxInflight, int64(20<<20)) // room for one reference at least

	o = Options{Retries: -1, MaxRedirects: -1}.withDefaults()
	is.Equal(o.Retries, 0)      // negative: no retries
	is.Equal(o.MaxRedirects, 0) // negative: no redirects

	buckets := []string{"a"}
	o = Options{Buckets: buckets}.withDefaults()
	buckets[0] = "b"
	is.Equal(o.Buckets, []string{"a"}) // the caller's slice is copied
}
