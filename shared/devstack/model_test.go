package devstack_test

import (
	"context"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/imagegen"
	"github.com/assetgen/assetgen/shared/metrics"
)

// modelImages reads assetgen_local_model_images_total by outcome from the
// registry /metrics serves.
func modelImages(t *testing.T) map[string]float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "assetgen_local_model_images_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// The fake model counts every image it is asked for in /metrics, by outcome;
// the images it answered are what a real model would bill. (Not parallel: the
// counter is the process's.)
func TestFakeModelCountsImages(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	f, err := devstack.StartFakeModel("127.0.0.1:0", 0)
	is.NoErr(err) // the fake starts
	t.Cleanup(func() { _ = f.Close(ctx) })
	g, err := imagegen.NewGemini(ctx, imagegen.GeminiConfig{Backend: "gemini", APIKey: "local-fake-model", BaseURL: f.URL, Timeout: 10 * time.Second})
	is.NoErr(err) // the real SDK points at it
	before := modelImages(t)
	is.Equal(len(before), 4) // every outcome is exported from the start

	for v := range 3 {
		_, err := g.Generate(ctx, imagegen.Request{Model: "gemini-2.5-flash-image", Prompt: "a red fox", Variant: v})
		is.NoErr(err) // an image
	}
	_, err = g.Generate(ctx, imagegen.Request{Model: "gemini-2.5-flash-image", Prompt: "[blocked] a fox"})
	is.True(err != nil) // refused
	_, err = g.Generate(ctx, imagegen.Request{Model: "gemini-2.5-flash-image", Prompt: "[unavailable] a fox"})
	is.True(err != nil) // failed

	after := modelImages(t)
	is.Equal(after["image"]-before["image"], 3.0)     // three images made
	is.Equal(after["refused"]-before["refused"], 1.0) // one refused
	is.Equal(after["failed"]-before["failed"], 1.0)   // one failed
	is.Equal(f.Images(), int64(3))                    // and this fake's own count agrees
	is.Equal(f.Calls(), int64(5))
}
