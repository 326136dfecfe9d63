package plantest

import (
	"strconv"
	"testing"

	"github.com/matryer/is"
)

// Submit reserves on the deployment's daily cap and generate settles on it:
// both read the same cap.
func TestDailyCapReachesTheFunctions(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		submit, gen := env(p.function(t, "Submit").Change.After), env(p.function(t, "Generate").Change.After)
		usd, err := strconv.ParseFloat(submit["DAILY_BUDGET_TOTAL_USD"], 64)
		is.NoErr(err)                                                             // submit gets DAILY_BUDGET_TOTAL_USD
		is.True(usd >= 0)                                                         // a cap, not a negative number
		is.Equal(gen["DAILY_BUDGET_TOTAL_USD"], submit["DAILY_BUDGET_TOTAL_USD"]) // generate knows the same cap
	})
}
