// Package models is the one table of image models: which exist, what an image
// costs, how many reference images each accepts and which aspect ratios it draws.
// Prices are configuration: MODELS_JSON overrides or extends the built-in table.
package models

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
)

// Model is one row of the table.
type Model struct {
	Name string `json:"name"`
	// PriceUSD is what one generated image costs.
	PriceUSD float64 `json:"priceUsd"`
	// MaxRefs is the most reference images the model accepts in one request.
	MaxRefs int `json:"maxRefs"`
	// AspectRatios the model can draw; the first is the default.
	AspectRatios []string `json:"aspectRatios"`
}

// Table is the set of models the platform offers, with a default.
type Table struct {
	Default string           `json:"default"`
	Models  map[string]Model `json:"models"`
}

var geminiRatios = []string{"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"}

// Builtin is the table as shipped. Prices are list prices per image at the
// default (1K–2K) resolution.
func Builtin() Table {
	return Table{
		Default: "gemini-2.5-flash-image",
		Models: map[string]Model{
			"gemini-2.5-flash-image": {
				Name: "gemini-2.5-flash-image", PriceUSD: 0.039, MaxRefs: 3,
				AspectRatios: geminiRatios,
			},
			"gemini-3-pro-image-preview": {
				Name: "gemini-3-pro-image-preview", PriceUSD: 0.134, MaxRefs: 14,
				AspectRatios: geminiRatios,
			},
		},
	}
}

// Parse overlays a JSON document of the Table's shape on the built-in table: a
// model named there replaces the built-in entry of that name, a new name adds one.
func Parse(doc string) (Table, error) {
	t := Builtin()
	if doc == "" {
		return t, nil
	}
	var over Table
	if err := json.Unmarshal([]byte(doc), &over); err != nil {
		return Table{}, fmt.Errorf("models: parse MODELS_JSON: %w", err)
	}
	for name, m := range over.Models {
		m.Name = name
		if m.PriceUSD < 0 || m.MaxRefs < 0 || len(m.AspectRatios) == 0 {
			return Table{}, fmt.Errorf("models: model %q needs priceUsd ≥ 0, maxRefs ≥ 0 and aspectRatios", name)
		}
		t.Models[name] = m
	}
	if over.Default != "" {
		t.Default = over.Default
	}
	if _, ok := t.Models[t.Default]; !ok {
		return Table{}, fmt.Errorf("models: default model %q is not in the table", t.Default)
	}
	return t, nil
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
