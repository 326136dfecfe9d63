package devstack_test

import (
	"bytes"
	"context"
	"image/jpeg"
	"image/png"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/imagegen"
	"github.com/assetgen/assetgen/shared/metrics"
	"github.com/assetgen/assetgen/shared/models"
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

// vertexClient is the live generator pointed at the fake as Vertex AI, with
// a plain HTTP client so no credentials are looked up.
func vertexClient(t *testing.T, f *devstack.FakeModel) *imagegen.Gemini {
	t.Helper()
	g, err := imagegen.NewGemini(context.Background(), imagegen.GeminiConfig{
		Backend: "vertex", Project: "assetgen-local", Location: "us-central1", BaseURL: f.URL, HTTPClient: &http.Client{}, Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// The fake serves Imagen's generateImages as Vertex AI does: several images
// per call, in the size and format asked for, one of them filtered on cue.
// (Not parallel: the counter is the process's.)
func TestFakeModelImagen(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	f, err := devstack.StartFakeModel("127.0.0.1:0", 0)
	is.NoErr(err)
	t.Cleanup(func() { _ = f.Close(ctx) })
	g := vertexClient(t, f)
	before := modelImages(t)

	seed := int32(9)
	res, err := g.GenerateBatch(ctx, imagegen.Request{
		Model: "imagen-4.0-generate-001", API: models.GenerateImages, Prompt: "three foxes [filtered:1]",
		ImageSize: "2K", Format: "jpeg", AspectRatio: "1:1", Seed: &seed,
	}, []int{0, 1, 2})
	is.NoErr(err)         // one call
	is.Equal(len(res), 3) // three results
	is.NoErr(res[0].Err)
	is.NoErr(res[2].Err)
	is.Equal(imagegen.ClassOf(res[1].Err), imagegen.Blocked)  // image 1 was filtered
	is.Equal(imagegen.Sniff(res[0].Image.Data), "image/jpeg") // in the format asked for
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(res[0].Image.Data))
	is.NoErr(err)
	is.Equal(cfg.Width, 1024) // 2K (the placeholder's 1K is 512)
	is.Equal(f.Calls(), int64(1))
	is.Equal(f.Images(), int64(2))
	after := modelImages(t)
	is.Equal(after["image"]-before["image"], 2.0)     // two images made
	is.Equal(after["refused"]-before["refused"], 1.0) // one filtered

	// Gemini models answer on the Vertex AI path too.
	img, err := g.Generate(ctx, imagegen.Request{Model: "gemini-3-pro-image-preview", Prompt: "a fox", ImageSize: "4K"})
	is.NoErr(err)
	pc, err := png.DecodeConfig(bytes.NewReader(img.Data))
	is.NoErr(err)
	is.Equal(pc.Width, 2048) // 4K
}

// Like Imagen, the fake refuses a seed while the watermark is on, and more
// than four images per call.
func TestFakeModelPredictRefuses(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	f, err := devstack.StartFakeModel("127.0.0.1:0", 0)
	is.NoErr(err)
	t.Cleanup(func() { _ = f.Close(ctx) })
	url := f.URL + "/v1beta1/projects/p/locations/l/publishers/google/models/imagen-4.0-generate-001:predict"
	for _, body := range []string{
		`{"instances":[{"prompt":"a fox"}],"parameters":{"sampleCount":1,"seed":3}}`,
		`{"instances":[{"prompt":"a fox"}],"parameters":{"sampleCount":5}}`,
		`{"instances":[{"prompt":"a fox"}],"parameters":{"sampleCount":1,"sampleImageSize":"4K"}}`,
	} {
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		is.NoErr(err)
		_ = resp.Body.Close()
		is.Equal(resp.StatusCode, http.StatusBadRequest) // refused as Imagen refuses it
	}
}
