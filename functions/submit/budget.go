package submit

import (
	"fmt"
	"net/http"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/problem"
)

// handleBudget answers the caller's budget for today (UTC).
func (s *server) handleBudget() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.From(r.Context())
		acct, err := s.Budgets.Get(r.Context(), p.UserID, budget.Day(s.now()))
		if err != nil {
			problem.Write(w, r, fmt.Errorf("submit: reading the budget: %w", err))
			return
		}
		t := acct.Sum()
		api.WriteJSON(w, http.StatusOK, api.Budget{Day: acct.Day, LimitUSD: t.Limit.USD(), ReservedUSD: t.Reserved.USD(), SpentUSD: t.Spent.USD(), RemainingUSD: t.Remaining.USD()})
	})
}
