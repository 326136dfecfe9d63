package refs

import (
	"bytes"
	"fmt"
	"image"
	"io"
	"net/http"

	// The decoders image.DecodeConfig may use: the formats image models accept.
	_ "image/gif"
	_ "image/jpeg"
	_ "image/png"

	_ "golang.org/x/image/webp"

	"github.com/assetgen/assetgen/shared/problem"
)

// formats maps each accepted sniffed MIME type to the image package's format name.
var formats = map[string]string{
	"image/png":  "png",
	"image/jpeg": "jpeg",
	"image/gif":  "gif",
	"image/webp": "webp",
}

// inspect checks, from the header alone, that data is a PNG, JPEG, WebP or GIF
// image of at most maxPixels pixels, and returns its MIME type and size.
func inspect(data []byte, maxPixels int64) (mimeType string, width, height int, err error) {
	return inspectStream(bytes.NewReader(data), maxPixels)
}

// inspectStream is inspect over the start of a stream: it reads only as much
// as the sniffer and the header decoder need (the caller keeps what was read,
// to store it with the rest). The content is sniffed (the server's
// Content-Type is not trusted) and the sniffed type must agree with the
// decoder that reads the header. Nothing is decoded in full: a decompression
// bomb declares its size in the header and stops here.
func inspectStream(r io.Reader, maxPixels int64) (mimeType string, width, height int, err error) {
	var sniff [512]byte // all http.DetectContentType looks at
	n, err := io.ReadFull(r, sniff[:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return "", 0, 0, err
	}
	sniffed := http.DetectContentType(sniff[:n])
	format, ok := formats[sniffed]
	if !ok {
		return "", 0, 0, fail(problem.RefNotImage, nil, "is not a PNG, JPEG, WebP or GIF image (its content looks like %s)", sniffed)
	}
	cfg, got, derr := image.DecodeConfig(io.MultiReader(bytes.NewReader(sniff[:n]), r))
	if derr != nil || got != format {
		if derr == nil {
			derr = fmt.Errorf("header reads as %s, content sniffs as %s", got, format)
		}
		return "", 0, 0, fail(problem.RefNotImage, derr, "is not a readable %s image", format)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return "", 0, 0, fail(problem.RefNotImage, nil, "declares an empty image (%d×%d)", cfg.Width, cfg.Height)
	}
	if px := int64(cfg.Width) * int64(cfg.Height); px > maxPixels {
		return "", 0, 0, fail(problem.RefTooLarge, nil, "is %d×%d pixels, more than the %d pixels allowed", cfg.Width, cfg.Height, maxPixels)
	}
	return sniffed, cfg.Width, cfg.Height, nil
}

// copyCapped copies at most limit bytes of src to dst; more is a RefTooLarge
// failure (whatever was copied stays the caller's to discard). It reads one
// byte past the limit to tell "exactly the limit" from "more".
func copyCapped(dst io.Writer, src io.Reader, limit int64) (int64, error) {
	n, err := io.Copy(dst, io.LimitReader(src, limit+1))
	if err != nil {
		return n, err
	}
	if n > limit {
		return n, fail(problem.RefTooLarge, nil, "is larger than %s", sizeText(limit))
	}
	return n, nil
}
