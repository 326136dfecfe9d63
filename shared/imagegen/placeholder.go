package imagegen

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"strconv"
	"strings"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Placeholder draws a deterministic PNG for a prompt and variant: a gradient in
// colours derived from the prompt's hash with the prompt written on it. It costs
// nothing and needs no network; Delay makes each image take that long, so a
// frontend can watch progress arrive the way it will in a live run.
type Placeholder struct {
	Delay time.Duration
	// Long is the long side of the image in pixels.
	Long int
}

// NewPlaceholder returns a placeholder generator with 512-pixel images.
func NewPlaceholder(delay time.Duration) *Placeholder {
	return &Placeholder{Delay: delay, Long: 512}
}

// Generate implements Generator.
func (p *Placeholder) Generate(ctx context.Context, req Request) (Image, error) {
	if p.Delay > 0 {
		t := time.NewTimer(p.Delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return Image{}, &Error{Class: Transient, Reason: "CANCELLED", Err: ctx.Err()}
		case <-t.C:
		}
	}
	w, h := dimensions(req.AspectRatio, p.Long)
	sum := sha256.Sum256([]byte(req.Prompt + "\x00" + strconv.Itoa(req.Variant)))
	img := gradient(w, h, color.RGBA{sum[0], sum[1], sum[2], 255}, color.RGBA{sum[3], sum[4], sum[5], 255})
	caption(img, req, sum)

	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		return Image{}, &Error{Class: Permanent, Reason: "ENCODE", Err: err}
	}
	return Image{MIMEType: "image/png", Data: buf.Bytes()}, nil
}

// Palette layout: gradientSteps shades, then the caption band and its ink.
const (
	gradientSteps = 64
	bandIndex     = gradientSteps
	inkIndex      = gradientSteps + 1
)

// gradient paints a diagonal gradient into a paletted image: one byte per pixel
// keeps drawing and PNG encoding cheap.
func gradient(w, h int, from, to color.RGBA) *image.Paletted {
	pal := make(color.Palette, gradientSteps+2)
	for i := range gradientSteps {
		t := i * 255 / (gradientSteps - 1)
		pal[i] = color.RGBA{mix(from.R, to.R, t), mix(from.G, to.G, t), mix(from.B, to.B, t), 255}
	}
	pal[bandIndex] = color.RGBA{24, 24, 28, 255}
	pal[inkIndex] = color.White
	img := image.NewPaletted(image.Rect(0, 0, w, h), pal)
	for y := range h {
		row := img.Pix[y*img.Stride : y*img.Stride+w]
		for x := range row {
			row[x] = uint8((x + y) * (gradientSteps - 1) / (w + h - 2 + 1))
		}
	}
	return img
}

func mix(a, b uint8, t int) uint8 { return uint8((int(a)*(255-t) + int(b)*t) / 255) }

// dimensions maps "W:H" onto a size whose long side is long pixels.
func dimensions(ratio string, long int) (int, int) {
	a, b, ok := strings.Cut(ratio, ":")
	rw, err1 := strconv.Atoi(a)
	rh, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || rw <= 0 || rh <= 0 {
		return long, long
	}
	if rw >= rh {
		return long, max(1, long*rh/rw)
	}
	return max(1, long*rw/rh), long
}

// caption writes the prompt (wrapped) and the variant on a dark band.
func caption(img *image.Paletted, req Request, sum [32]byte) {
	b := img.Bounds()
	perLine := max(8, (b.Dx()-24)/7)
	lines := wrap(req.Prompt, perLine, 6)
	lines = append(lines, fmt.Sprintf("variant %d - %x - placeholder", req.Variant, sum[:4]))
	bandH := min(len(lines)*15+16, b.Dy())
	band := image.Rect(0, b.Dy()-bandH, b.Dx(), b.Dy())
	draw.Draw(img, band, &image.Uniform{img.Palette[bandIndex]}, image.Point{}, draw.Src)
	d := font.Drawer{Dst: img, Src: &image.Uniform{img.Palette[inkIndex]}, Face: basicfont.Face7x13}
	for i, l := range lines {
		d.Dot = fixed.P(12, band.Min.Y+20+i*15)
		d.DrawString(l)
	}
}

func wrap(s string, width, maxLines int) []string {
	var lines []string
	var cur []rune
	for _, word := range strings.Fields(s) {
		w := []rune(word)
		if len(cur) > 0 && len(cur)+1+len(w) > width {
			lines = append(lines, string(cur))
			cur = nil
		}
		if len(cur) > 0 {
			cur = append(cur, ' ')
		}
		cur = append(cur, w...)
		for len(cur) > width {
			lines = append(lines, string(cur[:width]))
			cur = cur[width:]
		}
	}
	if len(cur) > 0 {
		lines = append(lines, string(cur))
	}
	if len(lines) > maxLines {
		lines = append(lines[:maxLines-1], "...")
	}
	return lines
}
