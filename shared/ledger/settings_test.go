package ledger_test

import (
	"encoding/json"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/ledger"
)

// A variant keeps the seed it was asked with, done or failed, so a user can
// run the same look again.
func TestRecordVariantsKeepsTheSeed(t *testing.T) {
	is := is.New(t)
	s0, s1 := int64(41), int64(42)
	r := running(holderA, t0.Add(lease), ledger.Running, ledger.Running)
	out, err := ledger.RecordVariants(r, opAt(t0), holderA, []ledger.VariantResult{
		{Index: 0, Object: "o0.png", CostUSD: 0.04, Seed: &s0},
		{Index: 1, Failure: &ledger.Failure{Code: "MODEL_SAFETY_BLOCKED", Message: "filtered"}, Seed: &s1},
	})
	is.NoErr(err)                               // recorded
	is.Equal(*out.Variants[0].Seed, s0)         // the image's seed
	is.Equal(*out.Variants[1].Seed, s1)         // a filtered image's seed too
	b, _ := json.Marshal(r.Variants[0])         // a variant without a seed
	is.Equal(string(b), `{"status":"running"}`) // writes none
}

// Manifests older than per-row prices read as before: every row at the
// batch's price. A row with its own price is charged that.
func TestRowPrice(t *testing.T) {
	is := is.New(t)
	var old ledger.Manifest
	is.NoErr(json.Unmarshal([]byte(`{"schema":1,"model":"gemini-2.5-flash-image","priceUsd":0.039,"rows":[{"index":0,"prompt":"p","variants":2,"aspectRatio":"1:1"}]}`), &old))
	is.Equal(old.RowPriceUSD(0), 0.039)    // an old row: the batch's price
	is.Equal(old.Rows[0].ImageSize, "")    // no size: the model's default
	is.Equal(old.Rows[0].OutputFormat, "") // no format: png
	is.True(old.Rows[0].Seed == nil)

	four := 0.24
	m := ledger.Manifest{PriceUSD: 0.134, Rows: []ledger.ManifestRow{{Index: 0}, {Index: 1, ImageSize: "4K", PriceUSD: &four}}}
	is.Equal(m.RowPriceUSD(0), 0.134) // the batch's size
	is.Equal(m.RowPriceUSD(1), 0.24)  // the row's own
	b, err := json.Marshal(m.Rows[0])
	is.NoErr(err)
	is.Equal(string(b), `{"index":0,"prompt":"","variants":0,"aspectRatio":""}`) // nothing new is written for a row without settings
}
