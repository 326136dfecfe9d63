package models_test

import (
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/models"
)

// The built-in table is what MODELS_JSON's checks would make of it: every
// entry is complete, and the default size's price is priceUsd.
func TestBuiltinIsComplete(t *testing.T) {
	is := is.New(t)
	tab := models.Builtin()
	_, ok := tab.Lookup("")
	is.True(ok) // the default model is in the table
	for _, name := range tab.Names() {
		m := tab.Models[name]
		is.Equal(m.Name, name)                                  // entries carry their own name
		is.Equal(m.Price(m.DefaultSize()), m.PriceUSD)          // priceUsd is the default size's price
		is.Equal(len(m.Prices()), len(m.Sizes()))               // a price for every size
		is.True(m.SupportsFormat(models.PNG))                   // png is always offered
		is.True(m.API == models.GenerateContent || m.Batches()) // a known API
	}
}

func TestBuiltinPrices(t *testing.T) {
	tab := models.Builtin()
	cases := []struct {
		model, size string
		want        float64
	}{
		{"gemini-2.5-flash-image", "1K", 0.039},
		{"gemini-3-pro-image-preview", "1K", 0.134},
		{"gemini-3-pro-image-preview", "2K", 0.134},
		{"gemini-3-pro-image-preview", "4K", 0.24},
		{"imagen-4.0-fast-generate-001", "1K", 0.02},
		{"imagen-4.0-generate-001", "1K", 0.04},
		{"imagen-4.0-generate-001", "2K", 0.04},
		{"imagen-4.0-ultra-generate-001", "2K", 0.06},
	}
	for _, c := range cases {
		t.Run(c.model+"/"+c.size, func(t *testing.T) {
			is := is.New(t)
			m, ok := tab.Lookup(c.model)
			is.True(ok)                     // in the table
			is.True(m.SupportsSize(c.size)) // offers the size
			is.Equal(m.Price(c.size), c.want)
		})
	}
}

func TestBuiltinCapabilities(t *testing.T) {
	is := is.New(t)
	tab := models.Builtin()
	flash, _ := tab.Lookup("gemini-2.5-flash-image")
	pro, _ := tab.Lookup("gemini-3-pro-image-preview")
	fast, _ := tab.Lookup("imagen-4.0-fast-generate-001")
	ultra, _ := tab.Lookup("imagen-4.0-ultra-generate-001")

	is.True(!flash.Batches() && !pro.Batches()) // Gemini models make one image per call
	is.True(fast.Batches() && ultra.Batches())  // Imagen makes a row's variants in one call
	is.True(!flash.SupportsSize("2K"))          // 2.5 Flash Image has one size
	is.True(pro.SupportsSize("4K"))             // 3 Pro Image draws 4K
	is.True(!fast.SupportsSize("2K"))           // Imagen 4 Fast draws 1K only
	is.True(ultra.SupportsSize("2K") && !ultra.SupportsSize("4K"))
	is.True(ultra.SupportsFormat(models.JPEG))  // Imagen is asked for JPEG
	is.True(!flash.SupportsFormat(models.JPEG)) // Gemini models answer PNG
	is.True(!ultra.SupportsFormat(models.WebP)) // no built-in model makes WebP
	is.Equal(fast.MaxRefs, 0)                   // Imagen takes no reference images
	is.True(flash.Seed && ultra.Seed)           // both families take a seed
	is.True(ultra.ServedBy(models.Vertex))      // Imagen runs on Vertex AI
	is.True(!ultra.ServedBy(models.GeminiAPI))  // and not on the Gemini API (the SDK refuses it there)
	is.True(flash.ServedBy(models.GeminiAPI) && flash.ServedBy(models.Vertex))
	is.True(!ultra.SupportsRatio("21:9")) // Imagen's own ratios
}

func TestParseOverlays(t *testing.T) {
	is := is.New(t)
	tab, err := models.Parse(`{"models":{
		"gemini-2.5-flash-image": {"priceUsd": 0.05, "maxRefs": 2, "aspectRatios": ["1:1"]},
		"imagen-4.0-ultra-generate-001": null,
		"house-model": {"api": "generateImages", "priceUsd": 0.01, "pricesUsd": {"2K": 0.03}, "maxRefs": 0,
			"aspectRatios": ["1:1"], "imageSizes": ["1K", "2K"], "outputFormats": ["png", "webp"], "backends": ["vertex"]}}}`)
	is.NoErr(err) // a valid overlay
	flash, _ := tab.Lookup("gemini-2.5-flash-image")
	is.Equal(flash.PriceUSD, 0.05)          // replaced
	is.Equal(flash.Sizes(), []string{"1K"}) // with defaults filled in
	is.Equal(flash.Formats(), []string{"png"})
	is.Equal(flash.API, models.GenerateContent)
	_, ok := tab.Lookup("imagen-4.0-ultra-generate-001")
	is.True(!ok) // null withdraws a model
	house, ok := tab.Lookup("house-model")
	is.True(ok) // a new model is added
	is.Equal(house.Price("1K"), 0.01)
	is.Equal(house.Price("2K"), 0.03) // per-size prices
	is.True(house.Batches())
	is.True(house.SupportsFormat(models.WebP))
}

func TestParseRefuses(t *testing.T) {
	cases := map[string]string{
		"malformed":           `{`,
		"no ratios":           `{"models":{"m":{"priceUsd":1,"maxRefs":0}}}`,
		"negative price":      `{"models":{"m":{"priceUsd":-1,"aspectRatios":["1:1"]}}}`,
		"unknown api":         `{"models":{"m":{"api":"predict","aspectRatios":["1:1"]}}}`,
		"unknown size":        `{"models":{"m":{"aspectRatios":["1:1"],"imageSizes":["8K"]}}}`,
		"unknown format":      `{"models":{"m":{"aspectRatios":["1:1"],"outputFormats":["png","gif"]}}}`,
		"no png":              `{"models":{"m":{"aspectRatios":["1:1"],"outputFormats":["jpeg"]}}}`,
		"price of other size": `{"models":{"m":{"aspectRatios":["1:1"],"pricesUsd":{"4K":1}}}}`,
		"negative size price": `{"models":{"m":{"aspectRatios":["1:1"],"pricesUsd":{"1K":-1}}}}`,
		"unknown backend":     `{"models":{"m":{"aspectRatios":["1:1"],"backends":["openai"]}}}`,
		"default withdrawn":   `{"models":{"gemini-2.5-flash-image":null}}`,
		"unknown default":     `{"default":"nope"}`,
	}
	for name, doc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := models.Parse(doc)
			is.New(t).True(err != nil) // refused
		})
	}
}
