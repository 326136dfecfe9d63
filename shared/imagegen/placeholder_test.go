package imagegen

import (
	"bytes"
	"context"
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
