package imagegen_test

import (
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/imagegen"
)

// Only raster formats a browser shows without running anything are stored, and
// their type comes from their bytes, not from what the model claims.
func TestCheckedTrustsBytesNotClaims(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
	jpeg := []byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, 'J', 'F', 'I', 'F'}
	webp := []byte("RIFF\x24\x00\x00\x00WEBPVP8 ")
	cases := []struct {
		name    string
		img     imagegen.Image
		want    string
		refused bool
	}{
		{"png", imagegen.Image{MIMEType: "image/png", Data: png}, "image/png", false},
		{"jpeg claimed as png", imagegen.Image{MIMEType: "image/png", Data: jpeg}, "image/jpeg", false},
		{"webp", imagegen.Image{MIMEType: "image/webp", Data: webp}, "image/webp", false},
		{"svg", imagegen.Image{MIMEType: "image/svg+xml", Data: []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`)}, "", true},
		{"html claimed as png", imagegen.Image{MIMEType: "image/png", Data: []byte("<!doctype html><script>alert(1)</script>")}, "", true},
		{"gif", imagegen.Image{MIMEType: "image/gif", Data: []byte("GIF89a\x01\x00")}, "", true},
		{"riff but not webp", imagegen.Image{MIMEType: "image/webp", Data: []byte("RIFF\x24\x00\x00\x00AVI LIST")}, "", true},
		{"empty", imagegen.Image{MIMEType: "image/png"}, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			got, err := imagegen.Checked(c.img)
			if c.refused {
				is.True(err != nil)                                      // refused
				is.Equal(imagegen.ClassOf(err), imagegen.Permanent)      // not retried
				is.True(strings.Contains(err.Error(), "BAD_IMAGE_TYPE")) // says why
				return
			}
			is.NoErr(err)                  // accepted
			is.Equal(got.MIMEType, c.want) // type from the bytes
		})
	}
}
