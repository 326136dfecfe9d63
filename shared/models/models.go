// Package models is the one table of image models: which exist, how each is
// called, what an image costs at each size, how many reference images each
// accepts, which aspect ratios, sizes and formats it draws, whether it honours
// a seed and which live backends serve it. Prices are configuration:
// MODELS_JSON overrides, extends or withdraws entries of the built-in table.
package models

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// APIs: how a model is called, named for the genai SDK method.
const (
	// GenerateContent is a Gemini image model: one image per call
	// (Models.GenerateContent with an IMAGE response modality).
	GenerateContent = "generateContent"
	// GenerateImages is an Imagen model: one call makes all of a row's
	// variants (Models.GenerateImages with NumberOfImages).
	GenerateImages = "generateImages"
)

// Output formats a batch may ask for. PNG is every model's default.
const (
	PNG  = "png"
	JPEG = "jpeg"
	WebP = "webp"
)

// Formats are the output formats the platform knows, with their MIME types.
var Formats = map[string]string{PNG: "image/png", JPEG: "image/jpeg", WebP: "image/webp"}

// Sizes are the output sizes the platform knows: the class of the image's
// long side (about 1,024, 2,048 and 4,096 pixels).
var Sizes = []string{"1K", "2K", "4K"}

// Live backends (LIVE_BACKEND).
const (
	Vertex    = "vertex"
	GeminiAPI = "gemini"
)

// MaxSeed is the largest seed a row may ask for: the model APIs take a
// 32-bit signed seed.
const MaxSeed = 1<<31 - 1

// Model is one row of the table. Parse fills the optional fields' defaults.
type Model struct {
	Name string `json:"name"`
	// API is GenerateContent (the default) or GenerateImages.
	API string `json:"api,omitempty"`
	// PriceUSD is what one generated image costs at the default size.
	PriceUSD float64 `json:"priceUsd"`
	// PricesUSD is the price of one image per size; a size it leaves out
	// costs PriceUSD.
	PricesUSD map[string]float64 `json:"pricesUsd,omitempty"`
	// MaxRefs is the most reference images the model accepts in one request;
	// 0 means it takes none, and a batch naming references is refused.
	MaxRefs int `json:"maxRefs"`
	// AspectRatios the model can draw; the first is the default.
	AspectRatios []string `json:"aspectRatios"`
	// ImageSizes the model can draw; the first is the default ("1K" if empty).
	ImageSizes []string `json:"imageSizes,omitempty"`
	// OutputFormats the model can be asked for; png if empty, and png is
	// always among them (the default of every request).
	OutputFormats []string `json:"outputFormats,omitempty"`
	// Seed says whether the model takes a seed.
	Seed bool `json:"seed,omitempty"`
	// Backends are the live backends that serve the model; empty means all.
	Backends []string `json:"backends,omitempty"`
}

// Table is the set of models the platform offers, with a default.
type Table struct {
	Default string           `json:"default"`
	Models  map[string]Model `json:"models"`
}

var (
	geminiRatios = []string{"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"}
	// imagenRatios are GenerateImagesConfig.AspectRatio's values.
	imagenRatios = []string{"1:1", "3:4", "4:3", "9:16", "16:9"}
)

// Builtin is the table as shipped, at list prices per image in USD.
//
// Prices: the Gemini API pricing page (https://ai.google.dev/gemini-api/docs/pricing)
// and Vertex AI's (https://cloud.google.com/vertex-ai/generative-ai/pricing),
// which list the same per-image prices, as read on 2026-03-24:
//   - gemini-2.5-flash-image: $30 per 1M output tokens, 1,290 tokens per
//     image: $0.039 (one size, about 1,024 pixels);
//   - gemini-3-pro-image-preview: $120 per 1M output tokens, 1,120 tokens per
//     1K or 2K image ($0.134) and 2,000 per 4K image ($0.24);
//   - Imagen 4: Fast $0.02, Standard $0.04, Ultra $0.06 per image, the same
//     at 1K and 2K.
//
// The Imagen models are reached through Models.GenerateImages, which the SDK
// (v1.77.0) offers on Vertex AI only: on the Gemini API backend it refuses
// the call before sending it. Google has announced the Imagen models'
// deprecation (shutdown announced for 2026-08-17); a model that is shut down
// answers 404, which fails its variants with MODEL_FAILED, and MODELS_JSON
// withdraws it ({"models": {"imagen-4.0-generate-001": null}}).
//
// Imagen honours a seed only without its SynthID watermark (the API answers
// "Seed is not supported when watermark is enabled"), so a seeded Imagen row
// is made without it; an unseeded one keeps it.
func Builtin() Table {
	imagen := func(name string, price float64, sizes ...string) Model {
		prices := map[string]float64{}
		for _, s := range sizes {
			prices[s] = price
		}
		return Model{
			Name: name, API: GenerateImages, PriceUSD: price, PricesUSD: prices, MaxRefs: 0,
			AspectRatios: imagenRatios, ImageSizes: sizes, OutputFormats: []string{PNG, JPEG},
			Seed: true, Backends: []string{Vertex},
		}
	}
	return Table{
		Default: "gemini-2.5-flash-image",
		Models: map[string]Model{
			"gemini-2.5-flash-image": {
				Name: "gemini-2.5-flash-image", API: GenerateContent, PriceUSD: 0.039,
				PricesUSD: map[string]float64{"1K": 0.039}, MaxRefs: 3,
				AspectRatios: geminiRatios, ImageSizes: []string{"1K"}, OutputFormats: []string{PNG}, Seed: true,
			},
			"gemini-3-pro-image-preview": {
				Name: "gemini-3-pro-image-preview", API: GenerateContent, PriceUSD: 0.134,
				PricesUSD: map[string]float64{"1K": 0.134, "2K": 0.134, "4K": 0.24}, MaxRefs: 14,
				AspectRatios: geminiRatios, ImageSizes: []string{"1K", "2K", "4K"}, OutputFormats: []string{PNG}, Seed: true,
			},
			"imagen-4.0-fast-generate-001":  imagen("imagen-4.0-fast-generate-001", 0.02, "1K"),
			"imagen-4.0-generate-001":       imagen("imagen-4.0-generate-001", 0.04, "1K", "2K"),
			"imagen-4.0-ultra-generate-001": imagen("imagen-4.0-ultra-generate-001", 0.06, "1K", "2K"),
		},
	}
}

// Parse overlays a JSON document of the Table's shape on the built-in table: a
// model named there replaces the built-in entry of that name, a new name adds
// one, and a name set to null withdraws the model.
func Parse(doc string) (Table, error) {
	t := Builtin()
	if doc == "" {
		return t, nil
	}
	var over struct {
		Default string            `json:"default"`
		Models  map[string]*Model `json:"models"`
	}
	if err := json.Unmarshal([]byte(doc), &over); err != nil {
		return Table{}, fmt.Errorf("models: parse MODELS_JSON: %w", err)
	}
	for name, m := range over.Models {
		if m == nil {
			delete(t.Models, name)
			continue
		}
		m.Name = name
		n, err := normalize(*m)
		if err != nil {
			return Table{}, err
		}
		t.Models[name] = n
	}
	if over.Default != "" {
		t.Default = over.Default
	}
	if _, ok := t.Models[t.Default]; !ok {
		return Table{}, fmt.Errorf("models: default model %q is not in the table", t.Default)
	}
	return t, nil
}

// normalize checks an entry of MODELS_JSON and fills its defaults; the
// default size's price is PriceUSD unless PricesUSD names it.
func normalize(m Model) (Model, error) {
	bad := func(format string, args ...any) (Model, error) {
		return Model{}, fmt.Errorf("models: model %q: %s", m.Name, fmt.Sprintf(format, args...))
	}
	if m.PriceUSD < 0 || m.MaxRefs < 0 || len(m.AspectRatios) == 0 {
		return bad("needs priceUsd ≥ 0, maxRefs ≥ 0 and aspectRatios")
	}
	switch m.API {
	case "":
		m.API = GenerateContent
	case GenerateContent, GenerateImages:
	default:
		return bad("api must be %q or %q, got %q", GenerateContent, GenerateImages, m.API)
	}
	if len(m.ImageSizes) == 0 {
		m.ImageSizes = []string{"1K"}
	}
	for _, s := range m.ImageSizes {
		if !slices.Contains(Sizes, s) {
			return bad("imageSizes: %q is not one of %s", s, strings.Join(Sizes, ", "))
		}
	}
	if len(m.OutputFormats) == 0 {
		m.OutputFormats = []string{PNG}
	}
	for _, f := range m.OutputFormats {
		if _, ok := Formats[f]; !ok {
			return bad("outputFormats: %q is not one of png, jpeg, webp", f)
		}
	}
	if !slices.Contains(m.OutputFormats, PNG) {
		return bad("outputFormats must include png, the default of every request")
	}
	for _, b := range m.Backends {
		if b != Vertex && b != GeminiAPI {
			return bad("backends: %q is not %q or %q", b, Vertex, GeminiAPI)
		}
	}
	prices := map[string]float64{}
	for size, p := range m.PricesUSD {
		if !slices.Contains(m.ImageSizes, size) {
			return bad("pricesUsd names size %q, which is not among its imageSizes", size)
		}
		if p < 0 {
			return bad("pricesUsd[%s] must be ≥ 0", size)
		}
		prices[size] = p
	}
	if p, ok := prices[m.ImageSizes[0]]; ok {
		m.PriceUSD = p
	}
	for _, s := range m.ImageSizes {
		if _, ok := prices[s]; !ok {
			prices[s] = m.PriceUSD
		}
	}
	m.PricesUSD = prices
	return m, nil
}

// Lookup returns the named model; "" means the default.
func (t Table) Lookup(name string) (Model, bool) {
	if name == "" {
		name = t.Default
	}
	m, ok := t.Models[name]
	return m, ok
}

// Names lists the models in a stable order.
func (t Table) Names() []string {
	out := make([]string, 0, len(t.Models))
	for n := range t.Models {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// SupportsRatio reports whether the model draws the aspect ratio.
func (m Model) SupportsRatio(r string) bool { return slices.Contains(m.AspectRatios, r) }

// DefaultRatio is the ratio used when a row names none.
func (m Model) DefaultRatio() string { return m.AspectRatios[0] }

// Sizes are the image sizes the model draws, the default first.
func (m Model) Sizes() []string {
	if len(m.ImageSizes) == 0 {
		return []string{"1K"}
	}
	return m.ImageSizes
}

// DefaultSize is the size used when neither the batch nor the row names one.
func (m Model) DefaultSize() string { return m.Sizes()[0] }

// SupportsSize reports whether the model draws the size.
func (m Model) SupportsSize(s string) bool { return slices.Contains(m.Sizes(), s) }

// Price is what one image of the size costs; an unknown size costs the
// default size's price.
func (m Model) Price(size string) float64 {
	if p, ok := m.PricesUSD[size]; ok {
		return p
	}
	return m.PriceUSD
}

// Prices are the price of one image at each of the model's sizes.
func (m Model) Prices() map[string]float64 {
	out := make(map[string]float64, len(m.Sizes()))
	for _, s := range m.Sizes() {
		out[s] = m.Price(s)
	}
	return out
}

// Formats are the output formats the model can be asked for, png first.
func (m Model) Formats() []string {
	if len(m.OutputFormats) == 0 {
		return []string{PNG}
	}
	return m.OutputFormats
}

// SupportsFormat reports whether the model can be asked for the format.
func (m Model) SupportsFormat(f string) bool { return slices.Contains(m.Formats(), f) }

// ServedBy reports whether a live backend serves the model.
func (m Model) ServedBy(backend string) bool {
	return len(m.Backends) == 0 || slices.Contains(m.Backends, backend)
}

// Batches reports whether one model call makes all of a row's variants.
func (m Model) Batches() bool { return m.API == GenerateImages }
