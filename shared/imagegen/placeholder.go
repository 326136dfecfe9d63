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
	img := gradient(w, h, color.RGBA{sum[0], sum[1], sum[2], 255}, color.RGBA{sum[3], sum[4], sum[5], 255})
	caption(img, req.Prompt, key, sum)

	var buf bytes.Buffer
	mime := MIMEType(req.Format)
	var err error
	switch mime {
	case "image/png":
		enc := png.Encoder{CompressionLevel: png.BestSpeed}
		err = enc.Encode(&buf, img)
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

// caption writes the prompt (wrapped) and the variant or seed on a dark band.
func caption(img *image.Paletted, prompt, key string, sum [32]byte) {
	b := img.Bounds()
	perLine := max(8, (b.Dx()-24)/7)
	lines := wrap(prompt, perLine, 6)
	lines = append(lines, fmt.Sprintf("%s - %x - placeholder", key, sum[:4]))
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
