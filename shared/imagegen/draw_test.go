package imagegen

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"sync"
	"testing"

	"github.com/matryer/is"
	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// rgba decodes a PNG into plain pixels, to compare pictures rather than bytes.
func rgba(t *testing.T, data []byte) *image.RGBA {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	out := image.NewRGBA(img.Bounds())
	draw.Draw(out, out.Bounds(), img, image.Point{}, draw.Src)
	return out
}

// The placeholder's picture is pinned: drawing it faster must not change what
// it shows.
func TestPlaceholderPictureIsPinned(t *testing.T) {
	is := is.New(t)
	img, err := NewPlaceholder(0).Generate(context.Background(), Request{Prompt: "a fox", Variant: 0, AspectRatio: "1:1"})
	is.NoErr(err)
	sum := sha256.Sum256(rgba(t, img.Data).Pix)
	is.Equal(hex.EncodeToString(sum[:]), "18f5a778462f115b7e3a95f40f45095dbcb4cdd0c6f66b57ce4aacca255ed712")
}

// text writes what font.Drawer writes, on a gradient where palette entries
// repeat, with glyphs outside the font and glyphs clipped at the edge.
func TestTextDrawsWhatFontDrawerDraws(t *testing.T) {
	is := is.New(t)
	from, to := color.RGBA{10, 200, 30, 255}, color.RGBA{12, 203, 31, 255} // few distinct shades
	const w, h = 120, 40
	want := gradient(w, h, from, to, make([]byte, w*h))
	got := gradient(w, h, from, to, make([]byte, w*h))
	for i, s := range []string{"Hello, fox!", "ünïcødé ✓ ☃ and a line that runs off the edge"} {
		dot := fixed.P(3, 14+i*15)
		d := font.Drawer{Dst: want, Src: &image.Uniform{want.Palette[inkIndex]}, Face: basicfont.Face7x13, Dot: dot}
		d.DrawString(s)
		text(got, basicfont.Face7x13, dot, s, inkIndex)
	}
	for y := range h {
		for x := range w {
			is.Equal(color.RGBAModel.Convert(got.At(x, y)), color.RGBAModel.Convert(want.At(x, y))) // the same colour at every pixel
		}
	}
}

// Images of different sizes drawn at once over recycled pixel buffers and
// encoder state are each what they are when drawn alone.
func TestPlaceholderRecyclesNothingVisible(t *testing.T) {
	is := is.New(t)
	p := NewPlaceholder(0)
	ctx := context.Background()
	reqs := []Request{
		{Prompt: "wide", AspectRatio: "16:9"},
		{Prompt: "tall", AspectRatio: "9:16", Variant: 1},
		{Prompt: "big", ImageSize: "2K"},
		{Prompt: "square jpeg", Format: "jpeg"},
	}
	alone := make([][]byte, len(reqs))
	for i, r := range reqs {
		img, err := p.Generate(ctx, r)
		is.NoErr(err)
		alone[i] = img.Data
	}
	var wg sync.WaitGroup
	for round := range 8 {
		for i, r := range reqs {
			wg.Go(func() {
				img, err := p.Generate(ctx, r)
				if err != nil || !bytes.Equal(img.Data, alone[i]) {
					t.Errorf("round %d, %+v: another image than alone (%v)", round, r, err)
				}
			})
		}
	}
	wg.Wait()
}
