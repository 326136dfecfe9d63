package submit

import (
	"net/http"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/batch"
)

// handleModels lists the models a batch may name with everything a form
// needs to follow the selected one: prices per size, reference limit, aspect
// ratios, sizes, formats, seed support, and whether it runs live here.
func (s *server) handleModels() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := s.cfg.Rules.Models
		out := api.Models{Default: t.Default, LiveAvailable: s.cfg.LiveAvailable}
		for _, name := range t.Names() {
			m, _ := t.Lookup(name)
			out.Models = append(out.Models, api.Model{
				Name: m.Name, PriceUSD: m.PriceUSD, PricesUSD: m.Prices(), MaxRefs: min(m.MaxRefs, batch.MaxMergedRefs),
				AspectRatios: m.AspectRatios, ImageSizes: m.Sizes(), OutputFormats: m.Formats(), Seed: m.Seed,
				LiveAvailable: s.cfg.LiveAvailable && (s.cfg.Rules.LiveBackend == "" || m.ServedBy(s.cfg.Rules.LiveBackend)),
			})
		}
		api.WriteJSON(w, http.StatusOK, out)
	})
}
