package submit

import (
	"context"
	"fmt"
	"net/http"

	"golang.org/x/sync/errgroup"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/problem"
)

// The limit a BUDGET_EXCEEDED names: the caller's own daily budget, or the
// deployment's daily cap on every user's live spend together.
const (
	limitUser  = "user"
	limitTotal = "total"
)

// handleBudget answers the caller's budget for today (UTC) and the
// deployment's daily cap.
func (s *server) handleBudget() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.From(r.Context())
		day := budget.Day(s.now())
		var acct budget.Account
		var total budget.Totals
		g, ctx := errgroup.WithContext(r.Context())
		g.Go(func() (err error) {
			acct, err = s.Budgets.Get(ctx, p.UserID, day)
			return err
		})
		g.Go(func() (err error) {
			total, err = s.Budgets.TotalOf(ctx, day)
			return err
		})
		if err := g.Wait(); err != nil {
			problem.Write(w, r, fmt.Errorf("submit: reading the budget: %w", err))
			return
		}
		t := acct.Sum()
		api.WriteJSON(w, http.StatusOK, api.Budget{
			Day: acct.Day, LimitUSD: t.Limit.USD(), ReservedUSD: t.Reserved.USD(), SpentUSD: t.Spent.USD(), RemainingUSD: t.Remaining.USD(),
			Total: &api.TotalBudget{LimitUSD: total.Limit.USD(), RemainingUSD: total.Remaining.USD()},
		})
	})
}

// preflightTotal refuses a live batch the deployment's daily cap cannot
// cover, before any write (the reservation enforces it atomically).
func (s *server) preflightTotal(ctx context.Context, sub *submission) error {
	t, err := s.Budgets.TotalOf(ctx, sub.day)
	if err != nil {
		return fmt.Errorf("submit: reading the deployment's budget: %w", err)
	}
	if sub.estimate > t.Remaining {
		return totalExceeded(sub.estimate, budget.ErrTotalExceeded)
	}
	return nil
}

// totalExceeded is the refusal by the deployment's daily cap. It names only
// the batch's estimate: no other user's spend, not even in aggregate (GET
// /budget shows what is left of the cap for frontends that want to warn).
func totalExceeded(estimate budget.Micros, err error) error {
	return &problem.Error{
		Code:   problem.BudgetExceeded,
		Detail: "the deployment's daily cap on live spend is reached and cannot cover this batch; it resets at UTC midnight, and dry runs still work",
		Extra:  map[string]any{"limit": limitTotal, "estimateUsd": estimate.USD()},
		Err:    err,
	}
}
