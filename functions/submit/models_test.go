package submit_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/functions/submit"
	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/problem"
)

// GET /models says, per model, what a form needs to follow it — and which
// models this deployment's backend runs live.
func TestModelsListsWhatEachModelSupports(t *testing.T) {
	is := is.New(t)
	hs := newHarnessWith(t, map[string]string{"LIVE_BACKEND": "gemini", "GEMINI_API_KEY": "k"},
		func(c *submit.Config) { c.LiveAvailable = true })
	w := hs.do(http.MethodGet, "/models", "", "")
	is.Equal(w.Code, http.StatusOK)
	var out api.Models
	is.NoErr(json.Unmarshal(w.Body.Bytes(), &out)) // the answer is JSON
	is.Equal(out.Default, "gemini-2.5-flash-image")
	byName := map[string]api.Model{}
	for _, m := range out.Models {
		byName[m.Name] = m
	}
	is.Equal(len(byName), 5) // two Gemini, three Imagen models

	pro := byName["gemini-3-pro-image-preview"]
	is.Equal(pro.ImageSizes, []string{"1K", "2K", "4K"})
	is.Equal(pro.PricesUSD, map[string]float64{"1K": 0.134, "2K": 0.134, "4K": 0.24})
	is.Equal(pro.PriceUSD, 0.134) // the default size's price
	is.Equal(pro.MaxRefs, 6)      // capped by the platform's merge limit
	is.True(pro.Seed)             // takes a seed
	is.True(pro.LiveAvailable)    // the Gemini API serves it
	is.Equal(pro.OutputFormats, []string{"png"})

	ultra := byName["imagen-4.0-ultra-generate-001"]
	is.Equal(ultra.ImageSizes, []string{"1K", "2K"})
	is.Equal(ultra.PricesUSD, map[string]float64{"1K": 0.06, "2K": 0.06})
	is.Equal(ultra.OutputFormats, []string{"png", "jpeg"})
	is.Equal(ultra.MaxRefs, 0) // no reference images
	is.True(ultra.Seed)
	is.True(!ultra.LiveAvailable) // Imagen runs live on Vertex AI only
	is.Equal(ultra.AspectRatios, []string{"1:1", "3:4", "4:3", "9:16", "16:9"})
	is.Equal(byName["imagen-4.0-fast-generate-001"].PricesUSD, map[string]float64{"1K": 0.02})
}

// A batch of several sizes is estimated row by row, and the manifest keeps
// each row's size, format, seed and price for generate to charge.
func TestSubmitPricesEachRowAtItsSize(t *testing.T) {
	is := is.New(t)
	hs := newHarness(t)
	resp := hs.submit(t, "alice", `{"runMode":"dry_run","model":"gemini-3-pro-image-preview","rows":[
		{"prompt":"a","variants":2},
		{"prompt":"b","imageSize":"4K","seed":99}]}`)
	is.Equal(resp.Estimate.Images, 3)
	is.Equal(resp.Estimate.CostUSD, 0.508)          // 2 × $0.134 + 1 × $0.24
	is.Equal(resp.Estimate.PricePerImageUSD, 0.134) // the batch's size
	m, err := hs.Ledger.Manifest(ctx(t), resp.BatchID)
	is.NoErr(err)
	is.Equal(m.ModelAPI, "generateContent")
	is.Equal(m.EstimateUSD, 0.508)
	is.Equal(m.Rows[0].ImageSize, "1K")
	is.Equal(m.Rows[0].OutputFormat, "png")
	is.True(m.Rows[0].Seed == nil)
	is.Equal(m.RowPriceUSD(0), 0.134)
	is.Equal(m.Rows[1].ImageSize, "4K")
	is.Equal(*m.Rows[1].Seed, int64(99))
	is.Equal(m.RowPriceUSD(1), 0.24)
}

// References to a model that takes none are refused at submit, at their
// pointer, before anything is fetched or recorded.
func TestSubmitRefusesReferencesToImagen(t *testing.T) {
	is := is.New(t)
	hs := newHarness(t)
	w := hs.do(http.MethodPost, "/batch/images", "alice", `{"runMode":"dry_run","model":"imagen-4.0-generate-001",
		"rows":[{"prompt":"a","refs":["https://img.example.com/a.png"]}]}`)
	is.Equal(w.Code, http.StatusBadRequest)
	doc := problemOf(t, w)
	is.Equal(doc.Code, problem.ValidationFailed)
	is.Equal(len(doc.Errors), 1)
	is.Equal(doc.Errors[0].Field, "/rows/0/refs") // the row's refs
}
