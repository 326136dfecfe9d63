package batch_test

import (
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/models"
	"github.com/assetgen/assetgen/shared/problem"
)

func int64p(n int64) *int64 { return &n }

// Size, format and seed: the batch's apply to every row that names none, a
// row's own override them, and each row is priced at its size.
func TestValidateSettings(t *testing.T) {
	is := is.New(t)
	req := batch.Request{RunMode: "live", Model: "imagen-4.0-generate-001", ImageSize: "2K", OutputFormat: "jpeg",
		Rows: []batch.RowRequest{
			{Prompt: "a", Seed: int64p(7)},
			{Prompt: "b", ImageSize: "1K", OutputFormat: "png", Seed: int64p(models.MaxSeed)},
		}}
	r := rules()
	r.LiveBackend = models.Vertex
	spec, err := batch.Validate(req, r)
	is.NoErr(err) // valid
	is.Equal(spec.ModelAPI, models.GenerateImages)
	is.Equal(spec.PriceUSD, 0.04) // the batch's size's price
	a, b := spec.Rows[0], spec.Rows[1]
	is.Equal(a.ImageSize, "2K")      // the batch's size
	is.Equal(a.OutputFormat, "jpeg") // the batch's format
	is.Equal(*a.Seed, int64(7))
	is.Equal(b.ImageSize, "1K")     // the row's own
	is.Equal(b.OutputFormat, "png") // the row's own
	is.Equal(*b.Seed, int64(models.MaxSeed))

	pro := batch.Request{RunMode: "dry_run", Model: "gemini-3-pro-image-preview",
		Rows: []batch.RowRequest{{Prompt: "a"}, {Prompt: "b", ImageSize: "4K"}}}
	spec, err = batch.Validate(pro, rules())
	is.NoErr(err)
	is.Equal(spec.Rows[0].ImageSize, "1K") // the model's default size
	is.Equal(spec.Rows[0].PriceUSD, 0.134)
	is.Equal(spec.Rows[1].PriceUSD, 0.24) // 4K costs more
	is.True(spec.Rows[0].Seed == nil)     // no seed asked

	// A dry run may name any model: it rehearses, whatever backend serves live runs.
	dry := batch.Request{RunMode: "dry_run", Model: "imagen-4.0-ultra-generate-001", Rows: []batch.RowRequest{{Prompt: "a"}}}
	r.LiveBackend = models.GeminiAPI
	_, err = batch.Validate(dry, r)
	is.NoErr(err)
}

func TestValidateSettingsRejects(t *testing.T) {
	imagen := func(mutate func(*batch.Request)) batch.Request {
		r := batch.Request{RunMode: "dry_run", Model: "imagen-4.0-fast-generate-001", Rows: []batch.RowRequest{{Prompt: "a"}}}
		mutate(&r)
		return r
	}
	tests := []struct {
		name    string
		backend string
		req     batch.Request
		want    []fc
	}{
		{"a size the model does not draw", "", imagen(func(r *batch.Request) { r.ImageSize = "2K" }),
			[]fc{{"/imageSize", problem.FieldUnknownValue}}},
		{"a row size the model does not draw", "", imagen(func(r *batch.Request) { r.Rows[0].ImageSize = "4K" }),
			[]fc{{"/rows/0/imageSize", problem.FieldUnknownValue}}},
		{"an unknown size", "", imagen(func(r *batch.Request) { r.Rows[0].ImageSize = "1k" }),
			[]fc{{"/rows/0/imageSize", problem.FieldUnknownValue}}},
		{"a format the model cannot make", "", imagen(func(r *batch.Request) { r.OutputFormat = "webp" }),
			[]fc{{"/outputFormat", problem.FieldUnknownValue}}},
		{"jpeg from a Gemini model", "", batch.Request{RunMode: "dry_run", Rows: []batch.RowRequest{{Prompt: "a", OutputFormat: "jpeg"}}},
			[]fc{{"/rows/0/outputFormat", problem.FieldUnknownValue}}},
		{"a negative seed", "", imagen(func(r *batch.Request) { r.Rows[0].Seed = int64p(-1) }),
			[]fc{{"/rows/0/seed", problem.FieldOutOfRange}}},
		{"a seed past 32 bits", "", imagen(func(r *batch.Request) { r.Rows[0].Seed = int64p(models.MaxSeed + 1) }),
			[]fc{{"/rows/0/seed", problem.FieldOutOfRange}}},
		{"references to a model that takes none", "", imagen(func(r *batch.Request) {
			r.Refs = []string{"https://img.example.com/a.png"}
			r.Rows[0].Refs = []string{"https://img.example.com/b.png"}
		}), []fc{{"/refs", problem.FieldTooMany}, {"/rows/0/refs", problem.FieldTooMany}}},
		{"Imagen live on the Gemini API", models.GeminiAPI, imagen(func(r *batch.Request) { r.RunMode = "live" }),
			[]fc{{"/model", problem.FieldUnknownValue}}},
		{"every setting at once", "", imagen(func(r *batch.Request) {
			r.ImageSize, r.OutputFormat = "4K", "gif"
			r.Rows = append(r.Rows, batch.RowRequest{Prompt: "b", ImageSize: "2K", Seed: int64p(-5)})
		}), []fc{{"/imageSize", problem.FieldUnknownValue}, {"/outputFormat", problem.FieldUnknownValue},
			{"/rows/1/imageSize", problem.FieldUnknownValue}, {"/rows/1/seed", problem.FieldOutOfRange}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			r := rules()
			r.LiveBackend = tt.backend
			_, err := batch.Validate(tt.req, r)
			is.Equal(problem.CodeOf(err), problem.ValidationFailed) // a field error, not a failed row
			_, got := problemOf(t, err)
			want := append([]fc(nil), tt.want...)
			sortFC(want)
			is.Equal(got, want) // at the field's pointer
		})
	}
}

// A model that takes no seed refuses one.
func TestValidateSeedOfAModelWithout(t *testing.T) {
	is := is.New(t)
	tab, err := models.Parse(`{"models":{"plain":{"priceUsd":0.01,"maxRefs":1,"aspectRatios":["1:1"]}}}`)
	is.NoErr(err)
	req := batch.Request{RunMode: string(ledger.DryRun), Model: "plain", Rows: []batch.RowRequest{{Prompt: "a", Seed: int64p(1)}}}
	_, err = batch.Validate(req, batch.Rules{Models: tab})
	_, got := problemOf(t, err)
	is.Equal(got, []fc{{"/rows/0/seed", problem.FieldInvalidValue}})
}

func TestDecodeSettings(t *testing.T) {
	is := is.New(t)
	req, fields, err := batch.Decode([]byte(`{"runMode":"live","imageSize":"2K","outputFormat":"jpeg",
		"rows":[{"prompt":"p","seed":12,"imageSize":"1K","outputFormat":"png"},{"prompt":"q","seed":"12"},{"prompt":"r","seed":1.5,"imageSize":2}]}`))
	is.NoErr(err) // decodes
	is.Equal(req.ImageSize, "2K")
	is.Equal(req.OutputFormat, "jpeg")
	is.Equal(*req.Rows[0].Seed, int64(12))
	is.Equal(req.Rows[0].ImageSize, "1K")
	is.Equal(req.Rows[0].OutputFormat, "png")
	is.True(req.Rows[1].Seed == nil) // a mistyped seed stays unset
	is.Equal(sortedFC(fields), []fc{
		{"/rows/1/seed", problem.FieldInvalidType}, {"/rows/2/imageSize", problem.FieldInvalidType}, {"/rows/2/seed", problem.FieldInvalidType},
	})
}
