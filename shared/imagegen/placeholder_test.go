package imagegen

import (
	"bytes"
	"context"
	"image/jpeg"
	"image/png"
	"testing"
	"time"

	"github.com/matryer/is"
)

func TestPlaceholderIsDeterministic(t *testing.T) {
	is := is.New(t)
	p := NewPlaceholder(0)
	ctx := context.Background()
	a, err := p.Generate(ctx, Request{Prompt: "a fox", Variant: 0})
	is.NoErr(err)
	b, err := p.Generate(ctx, Request{Prompt: "a fox", Variant: 0})
	is.NoErr(err)
	c, err := p.Generate(ctx, Request{Prompt: "a fox", Variant: 1})
	is.NoErr(err)
	is.Equal(a.MIMEType, "image/png")
	is.True(bytes.Equal(a.Data, b.Data))  // same prompt and variant, same bytes
	is.True(!bytes.Equal(a.Data, c.Data)) // another variant, another image
}

func TestPlaceholderAspectRatios(t *testing.T) {
	cases := []struct {
		ratio string
		w, h  int
	}{
		{"1:1", 512, 512},
		{"16:9", 512, 288},
		{"9:16", 288, 512},
		{"21:9", 512, 219},
		{"", 512, 512},
		{"nonsense", 512, 512},
	}
	for _, c := range cases {
		t.Run(c.ratio, func(t *testing.T) {
			is := is.New(t)
			img, err := NewPlaceholder(0).Generate(context.Background(), Request{Prompt: "x", AspectRatio: c.ratio})
			is.NoErr(err)
			cfg, err := png.DecodeConfig(bytes.NewReader(img.Data))
			is.NoErr(err)             // a valid PNG
			is.Equal(cfg.Width, c.w)  // width
			is.Equal(cfg.Height, c.h) // height
		})
	}
}

func TestPlaceholderDelayHonoursCancel(t *testing.T) {
	is := is.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := NewPlaceholder(time.Hour).Generate(ctx, Request{Prompt: "x"})
	is.True(err != nil)               // a cancelled context stops the wait
	is.Equal(ClassOf(err), Transient) // and the task is retried, not failed
}

func BenchmarkPlaceholder(b *testing.B) {
	p := NewPlaceholder(0)
	for b.Loop() {
		if _, err := p.Generate(context.Background(), Request{Prompt: "a lighthouse at dawn", Variant: 1, AspectRatio: "1:1"}); err != nil {
			b.Fatal(err)
		}
	}
}

// The placeholder draws what a row asks for: its format, its size, and by
// seed when it names one, so a seeded re-run makes the same image.
func TestPlaceholderSettings(t *testing.T) {
	is := is.New(t)
	p := NewPlaceholder(0)
	ctx := context.Background()
	img, err := p.Generate(ctx, Request{Prompt: "x", Format: "jpeg", ImageSize: "2K", AspectRatio: "16:9"})
	is.NoErr(err)
	is.Equal(img.MIMEType, "image/jpeg")
	is.Equal(Sniff(img.Data), "image/jpeg") // really a JPEG
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(img.Data))
	is.NoErr(err)
	is.Equal(cfg.Width, 1024) // 2K is twice 1K
	is.Equal(cfg.Height, 576)
	_, err = p.Generate(ctx, Request{Prompt: "x", Format: "webp"})
	is.Equal(ClassOf(err), Permanent) // no WebP encoder

	s := int32(500)
	a, err := p.Generate(ctx, Request{Prompt: "x", Variant: 2, Seed: &s})
	is.NoErr(err)
	b, err := p.Generate(ctx, Request{Prompt: "x", Variant: 0, Seed: &s})
	is.NoErr(err)
	is.True(bytes.Equal(a.Data, b.Data)) // the seed, not the variant, makes the image
}

func TestPlaceholderBatch(t *testing.T) {
	is := is.New(t)
	p := NewPlaceholder(0)
	ctx := context.Background()
	res, err := p.GenerateBatch(ctx, Request{Prompt: "x"}, []int{0, 2})
	is.NoErr(err)
	is.Equal(len(res), 2)
	one, _ := p.Generate(ctx, Request{Prompt: "x", Variant: 2})
	is.True(bytes.Equal(res[1].Image.Data, one.Data)) // image i is variant i's, as one at a time
	s := int32(40)
	seeded, err := p.GenerateBatch(ctx, Request{Prompt: "x", Seed: &s}, []int{0, 1})
	is.NoErr(err)
	s41 := int32(41)
	alone, _ := p.Generate(ctx, Request{Prompt: "x", Seed: &s41})
	is.True(bytes.Equal(seeded[1].Image.Data, alone.Data)) // a seeded call's image i has seed+i
	_, err = p.GenerateBatch(ctx, Request{Prompt: "x"}, nil)
	is.Equal(ClassOf(err), Permanent)
}
