package generate_test

import (
	"bytes"
	"context"
	"image/jpeg"
	"net/http"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/functions/generate"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/imagegen"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/models"
	"github.com/assetgen/assetgen/shared/platform/platformtest"
	"github.com/assetgen/assetgen/shared/problem"
)

// newVertexHarness is the generate handler with live runs served by the fake
// model as Vertex AI — the backend Imagen runs on — through the real SDK.
func newVertexHarness(t *testing.T) *harness {
	t.Helper()
	model, err := devstack.StartFakeModel("127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = model.Close(context.Background()) })
	s := platformtest.Open(t, nil)
	finisher, err := s.Finisher()
	if err != nil {
		t.Fatal(err)
	}
	live, err := imagegen.NewGemini(context.Background(), imagegen.GeminiConfig{
		Backend: "vertex", Project: "assetgen-test", Location: "us-central1", BaseURL: model.URL, HTTPClient: &http.Client{}, Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	gens := generate.Generators{ledger.DryRun: imagegen.NewPlaceholder(0), ledger.Live: live}
	h := generate.New(generate.Config{
		Lease: time.Minute, MaxAttempts: maxAttempts, AttemptTimeout: 30 * time.Second, MinWriteGap: 10 * time.Millisecond,
		Tasks: auth.TaskAuth{Queues: []string{"generate"}},
	}, generate.Deps{Store: s.Ledger, Generators: gens, Finisher: finisher, Ready: s.Readiness(s.BucketWritable()), Log: s.Log})
	return &harness{Stack: s, model: model, h: h}
}

// record writes a one-row manifest of model with row's settings, priced as
// submit prices it.
func (hs *harness) record(t *testing.T, mode ledger.RunMode, model string, row ledger.ManifestRow) *ledger.Manifest {
	t.Helper()
	mm, ok := models.Builtin().Lookup(model)
	if !ok {
		t.Fatalf("no model %s", model)
	}
	row.Index = 0
	if row.AspectRatio == "" {
		row.AspectRatio = "1:1"
	}
	price := mm.Price(row.ImageSize)
	row.PriceUSD = &price
	m := &ledger.Manifest{Schema: 1, BatchID: batch.NewID(), Owner: "alice", RunMode: mode, Model: model, ModelAPI: mm.API,
		CreatedAt: time.Now().UTC(), PriceUSD: mm.PriceUSD, Rows: []ledger.ManifestRow{row}}
	if err := hs.Ledger.CreateManifest(ctx(t), m); err != nil {
		t.Fatal(err)
	}
	return m
}

// An Imagen row is one model call for all its variants, each recorded and
// charged on its own at the row's price.
func TestImagenRowIsOneModelCall(t *testing.T) {
	is := is.New(t)
	hs := newVertexHarness(t)
	m := hs.record(t, ledger.Live, "imagen-4.0-generate-001", ledger.ManifestRow{Prompt: "three lighthouses", Variants: 3})
	w := hs.deliver(m, 0, "generate")
	is.Equal(w.Code, http.StatusOK)
	is.Equal(outcome(t, w), "finished: done")
	r := hs.row(t, m)
	for i, v := range r.Variants {
		is.Equal(v.Status, ledger.Done)
		is.Equal(v.Object, ledger.ImageObject(m.BatchID, 0, i, ".png"))
		is.Equal(v.CostUSD, 0.04) // charged per image
		is.True(v.Seed == nil)    // no seed asked: Imagen chose
	}
	is.Equal(r.CostUSD(), 0.12)
	is.Equal(hs.model.Calls(), int64(1))  // one model call
	is.Equal(hs.model.Images(), int64(3)) // three images
	is.Equal(hs.images(t, m), 3)
}

// A filtered image fails its variant only; the row is done with the others,
// charged for what was made.
func TestImagenFilteredVariant(t *testing.T) {
	is := is.New(t)
	hs := newVertexHarness(t)
	m := hs.record(t, ledger.Live, "imagen-4.0-ultra-generate-001", ledger.ManifestRow{Prompt: "a harbour [filtered:1]", Variants: 3})
	w := hs.deliver(m, 0, "generate")
	is.Equal(w.Code, http.StatusOK)
	r := hs.row(t, m)
	is.Equal(r.Status, ledger.Done) // two of three made
	is.Equal(r.Variants[0].Status, ledger.Done)
	is.Equal(r.Variants[1].Status, ledger.Failed)
	is.Equal(r.Variants[1].Error.Code, string(problem.ModelSafetyBlocked)) // filtered
	is.Equal(r.Variants[1].CostUSD, 0.0)                                   // not charged
	is.Equal(r.Variants[2].Status, ledger.Done)
	is.Equal(r.CostUSD(), 0.12) // 2 × $0.06
	is.Equal(hs.model.Calls(), int64(1))
	is.Equal(hs.images(t, m), 2)
}

// Size, format and seed reach the model; the stored object is a JPEG named
// .jpg; each variant of a seeded row is its own call with its own seed, which
// the ledger records so a row naming it makes the image again.
func TestImagenSizeFormatAndSeed(t *testing.T) {
	is := is.New(t)
	hs := newVertexHarness(t)
	seed := int64(100)
	m := hs.record(t, ledger.Live, "imagen-4.0-generate-001",
		ledger.ManifestRow{Prompt: "a kite", Variants: 2, ImageSize: "2K", OutputFormat: "jpeg", Seed: &seed})
	w := hs.deliver(m, 0, "generate")
	is.Equal(w.Code, http.StatusOK)
	r := hs.row(t, m)
	is.Equal(hs.model.Calls(), int64(2)) // one call per seeded variant
	for i, v := range r.Variants {
		is.Equal(v.Status, ledger.Done)
		is.Equal(v.Object, ledger.ImageObject(m.BatchID, 0, i, ".jpg")) // the format's extension
		is.Equal(*v.Seed, seed+int64(i))                                // the variant's seed
		b, a, err := hs.Bucket.OpenObject(ctx(t), v.Object)
		is.NoErr(err)
		is.Equal(a.ContentType, "image/jpeg") // stored as what it is
		cfg, err := jpeg.DecodeConfig(b)
		_ = b.Close()
		is.NoErr(err)
		is.Equal(cfg.Width, 1024) // 2K from the fake
	}

	// Re-run variant 1 alone with its recorded seed: the same image.
	again := hs.record(t, ledger.Live, "imagen-4.0-generate-001",
		ledger.ManifestRow{Prompt: "a kite", Variants: 1, ImageSize: "2K", OutputFormat: "jpeg", Seed: r.Variants[1].Seed})
	is.Equal(hs.deliver(again, 0, "generate").Code, http.StatusOK)
	first, err := hs.Ledger.ReadObject(ctx(t), r.Variants[1].Object)
	is.NoErr(err)
	rerun, err := hs.Ledger.ReadObject(ctx(t), hs.row(t, again).Variants[0].Object)
	is.NoErr(err)
	is.True(bytes.Equal(first, rerun)) // reproduced
}

// A rate-limited call hands the whole row back; the retry makes every image.
func TestImagenRateLimitedCallIsRetried(t *testing.T) {
	is := is.New(t)
	hs := newVertexHarness(t)
	m := hs.record(t, ledger.Live, "imagen-4.0-fast-generate-001", ledger.ManifestRow{Prompt: "a meadow [rate-limit-once]", Variants: 2})
	w := hs.deliver(m, 0, "generate")
	is.Equal(w.Code, http.StatusTooManyRequests)
	is.Equal(problemCode(t, w), problem.ModelRateLimit)
	is.Equal(hs.row(t, m).Status, ledger.Running) // handed back
	w = hs.deliver(m, 1, "generate")
	is.Equal(w.Code, http.StatusOK)
	r := hs.row(t, m)
	is.Equal(r.Status, ledger.Done)
	is.Equal(r.CostUSD(), 0.04) // 2 × $0.02, the failed call charged nothing
	is.Equal(hs.model.Calls(), int64(2))
}

// Gemini models still make one image per call; a 4K row is charged the 4K
// price, and each variant records the seed it was asked for: the row's plus
// its index, or the one derived from the prompt.
func TestGeminiSizesAndSeeds(t *testing.T) {
	is := is.New(t)
	hs := newVertexHarness(t)
	seed := int64(5)
	m := hs.record(t, ledger.Live, "gemini-3-pro-image-preview", ledger.ManifestRow{Prompt: "a tower", Variants: 2, ImageSize: "4K", Seed: &seed})
	is.Equal(hs.deliver(m, 0, "generate").Code, http.StatusOK)
	r := hs.row(t, m)
	is.Equal(hs.model.Calls(), int64(2)) // one call per image
	is.Equal(*r.Variants[0].Seed, int64(5))
	is.Equal(*r.Variants[1].Seed, int64(6))
	is.Equal(r.CostUSD(), 0.48) // 2 × $0.24 at 4K

	plain := hs.record(t, ledger.Live, "gemini-2.5-flash-image", ledger.ManifestRow{Prompt: "a tower", Variants: 1})
	is.Equal(hs.deliver(plain, 0, "generate").Code, http.StatusOK)
	v := hs.row(t, plain).Variants[0]
	is.Equal(*v.Seed, int64(imagegen.VariantSeed("a tower", 0))) // the seed it was always sent
	is.Equal(v.CostUSD, 0.039)
}

// A dry run of an Imagen batch rehearses it with the placeholder: batched,
// free, in the format asked for.
func TestImagenDryRun(t *testing.T) {
	is := is.New(t)
	hs := newVertexHarness(t)
	m := hs.record(t, ledger.DryRun, "imagen-4.0-generate-001", ledger.ManifestRow{Prompt: "a fox", Variants: 3, OutputFormat: "jpeg"})
	is.Equal(hs.deliver(m, 0, "generate").Code, http.StatusOK)
	r := hs.row(t, m)
	for i, v := range r.Variants {
		is.Equal(v.Status, ledger.Done)
		is.Equal(v.Object, ledger.ImageObject(m.BatchID, 0, i, ".jpg"))
		is.Equal(v.CostUSD, 0.0) // dry runs are free
	}
	is.Equal(hs.model.Calls(), int64(0)) // and never reach the model
}

// An image an earlier attempt stored (and died before recording) is reused:
// the batch call asks only for the others.
func TestImagenReusesStoredImages(t *testing.T) {
	is := is.New(t)
	hs := newVertexHarness(t)
	m := hs.record(t, ledger.Live, "imagen-4.0-generate-001", ledger.ManifestRow{Prompt: "a bridge [rate-limit-once]", Variants: 3})
	is.Equal(hs.deliver(m, 0, "generate").Code, http.StatusTooManyRequests) // the first attempt made nothing
	ph, err := imagegen.NewPlaceholder(0).Generate(ctx(t), imagegen.Request{Prompt: "stored before"})
	is.NoErr(err)
	_, err = hs.Ledger.PutImage(ctx(t), ledger.ImageObject(m.BatchID, 0, 1, ".png"), ph.MIMEType, ph.Data)
	is.NoErr(err) // as if an attempt stored variant 1 and died

	is.Equal(hs.deliver(m, 1, "generate").Code, http.StatusOK)
	r := hs.row(t, m)
	is.Equal(r.Status, ledger.Done)
	is.Equal(hs.model.Calls(), int64(2))  // the refused call and one more
	is.Equal(hs.model.Images(), int64(2)) // which made variants 0 and 2 only
	is.Equal(r.CostUSD(), 0.12)           // all three are the batch's images
	stored, err := hs.Ledger.ReadObject(ctx(t), r.Variants[1].Object)
	is.NoErr(err)
	is.True(bytes.Equal(stored, ph.Data)) // variant 1 is the stored image
}
