package main

import (
	"bytes"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/client"
	"github.com/assetgen/assetgen/shared/ledger"
)

func seedp(n int64) *int64 { return &n }

func intp(n int) *int { return &n }

// A live Imagen batch runs end to end on the local stack — submit, Cloud
// Tasks, generate through the real SDK against the fake model as Vertex AI,
// progress, settlement — and is charged exactly the images made at their
// size's price; the filtered image is neither stored nor charged.
func TestLiveImagenBatchIsChargedExactly(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, _ := liveStack(t, nil)
	c := client.New(a.base)
	ctx := deadline(t, time.Minute)

	ms, err := c.Models(ctx)
	is.NoErr(err) // GET /models through the Go client
	i := slices.IndexFunc(ms.Models, func(m api.Model) bool { return m.Name == "imagen-4.0-generate-001" })
	is.True(i >= 0)
	imagen := ms.Models[i]
	is.True(imagen.LiveAvailable) // the local fake plays Vertex AI, which runs Imagen
	price := imagen.PricesUSD["2K"]
	is.Equal(price, 0.04)

	sub, err := c.Submit(ctx, batch.Request{
		RunMode: "live", Confirm: batch.ConfirmWord, Model: "imagen-4.0-generate-001", ImageSize: "2K",
		Rows: []batch.RowRequest{
			{Prompt: "three lighthouses [filtered:1]", Variants: intp(3)},
			{Prompt: "two kites", Variants: intp(2), Seed: seedp(7), OutputFormat: "jpeg", ImageSize: "1K"},
			{Prompt: "a harbour", Variants: intp(2)},
		},
	}, "")
	is.NoErr(err) // accepted
	is.Equal(sub.Estimate.Images, 7)
	is.Equal(sub.Estimate.CostUSD, 0.28)   // seven images at $0.04
	is.Equal(sub.Budget.ReservedUSD, 0.28) // reserved at submit
	_, _, done := readToDone(t, openStream(t, sub.ProgressURL, ""))
	is.Equal(done.VariantCounts.Done, 6) // one was filtered
	is.Equal(a.model.Images(), int64(6)) // the fake made six
	// Rows 0 and 2 are one call each; row 1 names a seed: a call per variant.
	is.Equal(a.model.Calls(), int64(4))

	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second))) // settlement runs in the last task
	bud := get(t, a.base+"/budget", nil)
	is.Equal(bud.status, http.StatusOK)
	is.Equal(bud.doc["spentUsd"], 0.24)   // 6 images × $0.04, exactly
	is.Equal(bud.doc["reservedUsd"], 0.0) // the filtered image's share released

	b, err := c.Batch(ctx, sub.BatchID)
	is.NoErr(err)
	is.Equal(b.CostUSD, 0.24)
	is.Equal(b.Variants.Failed, 1)
	lighthouses := b.Rows[0].Variants
	is.Equal(lighthouses[1].Status, ledger.Failed)
	is.Equal(lighthouses[1].Error.Code, "MODEL_SAFETY_BLOCKED") // filtered: that variant only
	is.Equal(lighthouses[1].CostUSD, 0.0)
	is.Equal(lighthouses[0].Status, ledger.Done) // the others of the same call are made
	is.Equal(lighthouses[2].CostUSD, 0.04)
	is.True(lighthouses[0].Seed == nil) // no seed asked: none recorded
	kites := b.Rows[1].Variants
	is.Equal(*kites[0].Seed, int64(7))
	is.Equal(*kites[1].Seed, int64(8)) // the seed to make it again

	// The images are what the rows asked for, served with their type.
	fetch := func(url string) ([]byte, string) {
		resp, err := http.Get(url)
		is.NoErr(err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		is.NoErr(err)
		return body, resp.Header.Get("Content-Type")
	}
	body, ct := fetch(kites[0].URL)
	is.Equal(ct, "image/jpeg") // the row's own format
	jc, err := jpeg.DecodeConfig(bytes.NewReader(body))
	is.NoErr(err)
	is.Equal(jc.Width, 512) // the row's own size: 1K (the fake's 1K is 512 pixels)
	body, ct = fetch(lighthouses[0].URL)
	is.Equal(ct, "image/png") // the default format
	pc, err := png.DecodeConfig(bytes.NewReader(body))
	is.NoErr(err)
	is.Equal(pc.Width, 1024) // the batch's size: 2K

	// The archive names each image by its format.
	var zb bytes.Buffer
	is.NoErr(c.Archive(ctx, sub.BatchID, &zb))
	got := names(unzip(t, zb.Bytes()))
	is.True(slices.Contains(got, "r0-v0-three-lighthouses-filtered-1.png"))
	is.True(slices.Contains(got, "r1-v1-two-kites.jpg"))
	is.True(slices.Contains(got, "r2-v0-a-harbour.png"))
	is.True(!slices.Contains(got, "r0-v1-three-lighthouses-filtered-1.png")) // no file for the filtered image
}

// Submit refuses what the model cannot do before anything is recorded.
func TestImagenRefusalsAtSubmit(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, faults := liveStack(t, nil)
	ans := post(t, a.base+"/batch/images", `{"runMode":"live","confirm":"CONFIRM","model":"imagen-4.0-fast-generate-001","imageSize":"2K",
		"outputFormat":"webp","refs":["https://img.example.com/a.png"],"rows":[{"prompt":"a","seed":-1}]}`, nil)
	is.Equal(ans.status, http.StatusBadRequest)
	is.Equal(ans.str("code"), "VALIDATION_FAILED")
	var fields []string
	for _, e := range ans.doc["errors"].([]any) {
		fields = append(fields, e.(map[string]any)["field"].(string))
	}
	slices.Sort(fields)
	is.Equal(fields, []string{"/imageSize", "/outputFormat", "/refs", "/rows/0/seed"}) // every field at once
	is.Equal(len(faults.WritesOf("batches/")), 0)                                      // nothing written
}
