package imagegen

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"image/png"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Placeholder draws a deterministic image for a prompt and variant (or seed,
// when the request names one): a gradient in colours derived from a hash of
// them with the prompt written on it, as PNG or JPEG, twice as large per size
// step. It costs nothing and needs no network; Delay makes each image take
// that long, so a frontend can watch progress arrive the way it will in a
// live run.
type Placeholder struct {
	Delay time.Duration
	// Long is the long side of a 1K image in pixels; 2K doubles it, 4K
	// doubles it again.
	Long int
}

var _ Batcher = (*Placeholder)(nil)

// NewPlaceholder returns a placeholder generator with 512-pixel images.
func NewPlaceholder(delay time.Duration) *Placeholder {
	return &Placeholder{Delay: delay, Long: 512}
}

// Generate implements Generator.
func (p *Placeholder) Generate(ctx context.Context, req Request) (Image, error) {
	if err := p.wait(ctx); err != nil {
		return Image{}, err
	}
	return p.draw(req)
}

// wait takes Delay, as a model call takes its time.
func (p *Placeholder) wait(ctx context.Context) error {
	if p.Delay <= 0 {
		return nil
	}
	t := time.NewTimer(p.Delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return &Error{Class: Transient, Reason: "CANCELLED", Err: ctx.Err()}
	case <-t.C:
		return nil
	}
}

// GenerateBatch implements Batcher: the images of variants, each drawn as
// Generate draws it (a seeded call's image i takes the seed plus i), after
// one Delay, as one model call takes.
func (p *Placeholder) GenerateBatch(ctx context.Context, req Request, variants []int) ([]Result, error) {
	if len(variants) < 1 || len(variants) > MaxBatch {
		return nil, &Error{Class: Permanent, Reason: "BAD_REQUEST", Err: fmt.Errorf("%d images asked of one call; 1 to %d", len(variants), MaxBatch)}
	}
	if err := p.wait(ctx); err != nil {
		return nil, err
	}
	out := make([]Result, len(variants))
	for i, v := range variants {
		r := req
		r.Variant = v
		if req.Seed != nil {
			s := SeedFor(int64(*req.Seed), i)
			r.Seed = &s
		}
		out[i].Image, out[i].Err = p.draw(r)
	}
	return out, nil
}

func (p *Placeholder) draw(req Request) (Image, error) {
	long := p.Long
	switch req.ImageSize {
	case "2K":
		long *= 2
	case "4K":
		long *= 4
	}
	w, h := dimensions(req.AspectRatio, long)
	key := "variant " + strconv.Itoa(req.Variant)
	if req.Seed != nil {
		key = "seed " + strconv.Itoa(int(*req.Seed))
	}
	sum := sha256.Sum256([]byte(req.Prompt + "\x00" + key))
	pix := pixels.get(w * h)
	defer pixels.put(pix)
	img := gradient(w, h, color.RGBA{sum[0], sum[1], sum[2], 255}, color.RGBA{sum[3], sum[4], sum[5], 255}, *pix)
	caption(img, req.Prompt, key, sum)

	var buf bytes.Buffer
	mime := MIMEType(req.Format)
	var err error
	switch mime {
	case "image/png":
		err = pngEncoder.Encode(&buf, img)
	case "image/jpeg":
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: JPEGQuality})
	default:
		return Image{}, &Error{Class: Permanent, Reason: "BAD_REQUEST", Err: fmt.Errorf("the placeholder draws png or jpeg, not %q", req.Format)}
	}
	if err != nil {
		return Image{}, &Error{Class: Permanent, Reason: "ENCODE", Err: err}
	}
	return Image{MIMEType: mime, Data: buf.Bytes()}, nil
}

// Palette layout: gradientSteps shades, then the caption band and its ink.
const (
	gradientSteps = 64
	bandIndex     = gradientSteps
	inkIndex      = gradientSteps + 1
)

// pngEncoder encodes placeholders as fast as deflate goes, reusing its
// compressor state from image to image (each one is over a megabyte).
var pngEncoder = png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &pngBuffers{}}

// pngBuffers is a png.EncoderBufferPool over a sync.Pool.
type pngBuffers struct{ p sync.Pool }

func (b *pngBuffers) Get() *png.EncoderBuffer {
	e, _ := b.p.Get().(*png.EncoderBuffer)
	return e
}

func (b *pngBuffers) Put(e *png.EncoderBuffer) { b.p.Put(e) }

// pixels recycles the pixel buffers of images already encoded.
var pixels pixelPool

type pixelPool struct{ p sync.Pool }

// get returns a buffer of n bytes with unspecified content.
func (pp *pixelPool) get(n int) *[]byte {
	if b, ok := pp.p.Get().(*[]byte); ok && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n)
	return &b
}

func (pp *pixelPool) put(b *[]byte) { pp.p.Put(b) }

// gradient paints a diagonal gradient into a paletted image over pix (w×h
// bytes, every one overwritten): one byte per pixel keeps drawing and PNG
// encoding cheap. A pixel's shade depends on x+y alone, so each row is a
// window onto one run of shades.
func gradient(w, h int, from, to color.RGBA, pix []byte) *image.Paletted {
	pal := make(color.Palette, gradientSteps+2)
	for i := range gradientSteps {
		t := i * 255 / (gradientSteps - 1)
		pal[i] = color.RGBA{mix(from.R, to.R, t), mix(from.G, to.G, t), mix(from.B, to.B, t), 255}
	}
	pal[bandIndex] = color.RGBA{24, 24, 28, 255}
	pal[inkIndex] = color.White
	img := &image.Paletted{Pix: pix[:w*h], Stride: w, Rect: image.Rect(0, 0, w, h), Palette: pal}
	shades := make([]byte, w+h-1)
	for i := range shades {
		shades[i] = uint8(i * (gradientSteps - 1) / (w + h - 2 + 1))
	}
	for y := range h {
		copy(img.Pix[y*img.Stride:y*img.Stride+w], shades[y:y+w])
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

// caption writes the prompt (wrapped) and the variant or seed on a dark band.
func caption(img *image.Paletted, prompt, key string, sum [32]byte) {
	b := img.Bounds()
	perLine := max(8, (b.Dx()-24)/7)
	lines := wrap(prompt, perLine, 6)
	lines = append(lines, fmt.Sprintf("%s - %x - placeholder", key, sum[:4]))
	bandH := min(len(lines)*15+16, b.Dy())
	band := image.Rect(0, b.Dy()-bandH, b.Dx(), b.Dy())
	draw.Draw(img, band, &image.Uniform{img.Palette[bandIndex]}, image.Point{}, draw.Src)
	for i, l := range lines {
		text(img, basicfont.Face7x13, fixed.P(12, band.Min.Y+20+i*15), l, inkIndex)
	}
}

// text writes s at dot in the palette's ink as font.Drawer does, but sets the
// ink's index where a glyph's mask is opaque instead of blending every pixel
// of the glyph's box through the palette: the same picture for a
// one-bit font, at a fraction of the cost. A mask with partial coverage is
// blended as font.Drawer blends it.
func text(img *image.Paletted, face font.Face, dot fixed.Point26_6, s string, ink uint8) {
	prev := rune(-1)
	for _, c := range s {
		if prev >= 0 {
			dot.X += face.Kern(prev, c)
		}
		dr, mask, mp, advance, _ := face.Glyph(dot, c)
		clipped := dr.Intersect(img.Rect)
		alpha, ok := mask.(*image.Alpha)
		switch {
		case clipped.Empty():
		case !ok:
			draw.DrawMask(img, dr, &image.Uniform{img.Palette[ink]}, image.Point{}, mask, mp, draw.Over)
		default:
			for y := clipped.Min.Y; y < clipped.Max.Y; y++ {
				for x := clipped.Min.X; x < clipped.Max.X; x++ {
					mx, my := mp.X+x-dr.Min.X, mp.Y+y-dr.Min.Y
					switch a := alpha.AlphaAt(mx, my).A; a {
					case 0:
					case 0xff:
						img.SetColorIndex(x, y, ink)
					default:
						px := image.Rect(x, y, x+1, y+1)
						draw.DrawMask(img, px, &image.Uniform{img.Palette[ink]}, image.Point{}, mask, image.Point{mx, my}, draw.Over)
					}
				}
			}
		}
		dot.X += advance
		prev = c
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
