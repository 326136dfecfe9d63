package submit

import (
	"net/http"

	"github.com/assetgen/assetgen/shared/api"
)

// handleModels lists the models a batch may name, with their prices, reference
// limits and aspect ratios, so a frontend can offer choices and show estimates.
func (s *server) handleModels() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := s.cfg.Rules.Models
		out := api.Models{Default: t.Default, LiveAvailable: s.cfg.LiveAvailable}
		for _, name := range t.Names() {
			m, _ := t.Lookup(name)
			out.Models = append(out.Models, api.Model{Name: m.Name, PriceUSD: m.PriceUSD, MaxRefs: min(m.MaxRefs, 6), AspectRatios: m.AspectRatios})
		}
		api.WriteJSON(w, http.StatusOK, out)
	})
}
