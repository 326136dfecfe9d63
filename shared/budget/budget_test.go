package budget_test

import (
	"errors"
	"maps"
	"reflect"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/budget"
)

const usd = budget.Micros(1_000_000)

func TestFromUSD(t *testing.T) {
	tests := []struct {
		usd  float64
		want budget.Micros
	}{
		{0, 0},
		{1, 1_000_000},
		{10, 10_000_000},
		{0.039, 39_000},
		{0.134, 134_000},
		{0.117, 117_000},
		{0.039 * 3, 117_000}, // 0.11699999999999999 in float64
		{0.1 + 0.2, 300_000}, // 0.30000000000000004 in float64
		{0.0000004, 0},       // below half a micro rounds down
		{0.0000006, 1},       // above half a micro rounds up
		{123.456789, 123_456_789},
		{-0.039, -39_000},
	}
	for _, tt := range tests {
		is := is.New(t)
		is.Equal(budget.FromUSD(tt.usd), tt.want) // FromUSD rounds to the nearest micro
	}
}

// Money counted in micros sums exactly where float dollars drift.
func TestMicrosSumExactly(t *testing.T) {
	is := is.New(t)
	price := budget.FromUSD(0.039)
	is.Equal(price*3, budget.FromUSD(0.117))            // three images at $0.039 are exactly $0.117
	is.Equal(price+price+price, budget.Micros(117_000)) // summed one by one, too
	is.Equal(budget.FromUSD(0.1)+budget.FromUSD(0.2), budget.FromUSD(0.3))

	var sum budget.Micros
	var drift float64
	for range 1000 {
		sum += price
		drift += 0.039
	}
	is.Equal(sum, budget.Micros(39_000_000)) // 1,000 images are exactly $39
	is.True(drift != 39)                     // (the float sum does drift: the test is meaningful)
	is.Equal(sum.USD(), 39.0)                // and converts back exactly
	is.Equal(budget.FromUSD(budget.Micros(117_000).USD()), budget.Micros(117_000))
}

func TestDayIsUTC(t *testing.T) {
	est := time.FixedZone("UTC-5", -5*3600)
	tokyo := time.FixedZone("UTC+9", 9*3600)
	tests := []struct {
		name string
		at   time.Time
		want string
	}{
		{"evening in UTC-5 is the next UTC day", time.Date(2025, 3, 14, 23, 30, 0, 0, est), "2025-03-15"},
		{"early morning in UTC+9 is the previous UTC day", time.Date(2025, 3, 15, 0, 30, 0, 0, tokyo), "2025-03-14"},
		{"last instant of a UTC day", time.Date(2025, 12, 31, 23, 59, 59, 999_999_999, time.UTC), "2025-12-31"},
		{"UTC midnight starts the next day", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "2026-01-01"},
		{"leap day", time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC), "2024-02-29"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			is.Equal(budget.Day(tt.at), tt.want)
		})
	}
}

func TestSum(t *testing.T) {
	tests := []struct {
		name string
		a    budget.Account
		want budget.Totals
	}{
		{"empty account", budget.Account{Limit: 10 * usd},
			budget.Totals{Limit: 10 * usd, Remaining: 10 * usd}},
		{"reserved and spent", budget.Account{Limit: 10 * usd,
			Reserved: map[string]budget.Micros{"a": 2 * usd, "b": 1 * usd},
			Spent:    map[string]budget.Micros{"c": 3 * usd}},
			budget.Totals{Limit: 10 * usd, Reserved: 3 * usd, Spent: 3 * usd, Remaining: 4 * usd}},
		{"exactly used up", budget.Account{Limit: 10 * usd,
			Reserved: map[string]budget.Micros{"a": 4 * usd},
			Spent:    map[string]budget.Micros{"b": 6 * usd}},
			budget.Totals{Limit: 10 * usd, Reserved: 4 * usd, Spent: 6 * usd, Remaining: 0}},
		{"limit lowered below spend: remaining is zero, not negative", budget.Account{Limit: 1 * usd,
			Reserved: map[string]budget.Micros{"a": 2 * usd},
			Spent:    map[string]budget.Micros{"b": 3 * usd}},
			budget.Totals{Limit: 1 * usd, Reserved: 2 * usd, Spent: 3 * usd, Remaining: 0}},
		{"zero limit", budget.Account{}, budget.Totals{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			got := tt.a.Sum()
			is.Equal(got, tt.want)
			is.True(got.Remaining >= 0) // never negative
		})
	}
}

// account is a $10 account with $3 spent and $2 reserved: $5 remain.
func account() budget.Account {
	return budget.Account{
		User: "u", Day: "2025-03-14", Limit: 10 * usd,
		Reserved: map[string]budget.Micros{"held": 2 * usd},
		Spent:    map[string]budget.Micros{"paid": 3 * usd},
	}
}

func TestReserveAtTheBoundary(t *testing.T) {
	tests := []struct {
		name    string
		amount  budget.Micros
		wantErr error
	}{
		{"well inside", 1 * usd, nil},
		{"exactly what remains", 5 * usd, nil},
		{"one micro more than remains", 5*usd + 1, budget.ErrExceeded},
		{"far over", 50 * usd, budget.ErrExceeded},
		{"nothing", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			before := account()
			got, err := budget.Reserve(before, "new", tt.amount)
			if tt.wantErr != nil {
				is.True(errors.Is(err, tt.wantErr))     // refused
				is.True(reflect.DeepEqual(got, before)) // and nothing changed
				return
			}
			is.NoErr(err)
			is.Equal(got.Reserved["new"], tt.amount)                      // held
			is.Equal(got.Sum().Remaining, 5*usd-tt.amount)                // out of what remained
			is.Equal(got.Sum().Reserved, before.Sum().Reserved+tt.amount) // and nothing else changed
			is.Equal(got.Spent, before.Spent)
		})
	}
}

func TestReserveOnZeroAccount(t *testing.T) {
	is := is.New(t)
	got, err := budget.Reserve(budget.Account{Limit: 1 * usd}, "b", 1*usd) // nil maps
	is.NoErr(err)
	is.Equal(got.Reserved["b"], 1*usd)
	_, err = budget.Reserve(budget.Account{}, "b", 1)
	is.True(errors.Is(err, budget.ErrExceeded)) // a zero limit holds nothing
}

// A retried submit reserves the same batch again: it must neither be charged
// twice nor be refused because its own reservation filled the account.
func TestReserveIsIdempotentPerBatch(t *testing.T) {
	tests := []struct {
		name string
		a    budget.Account
		id   string
	}{
		{"already reserved", account(), "held"},
		{"already settled", account(), "paid"},
		{"already reserved in a full account", budget.Account{Limit: 2 * usd,
			Reserved: map[string]budget.Micros{"held": 2 * usd}}, "held"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			got, err := budget.Reserve(tt.a, tt.id, 1*usd)
			is.True(err != nil)                          // reported as no change
			is.True(!errors.Is(err, budget.ErrExceeded)) // not as a refusal
			is.True(reflect.DeepEqual(got, tt.a))        // the account is unchanged
		})
	}
}

func TestSettle(t *testing.T) {
	tests := []struct {
		name      string
		actual    budget.Micros
		wantSpent budget.Micros
	}{
		{"cheaper than reserved", 1_234_567, 1_234_567},
		{"exactly reserved", 2 * usd, 2 * usd},
		{"dearer than reserved is capped", 5 * usd, 2 * usd},
		{"nothing made", 0, 0},
		{"negative is nothing", -1 * usd, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			before := account()
			got, err := budget.Settle(before, "held", tt.actual)
			is.NoErr(err)
			_, stillHeld := got.Reserved["held"]
			is.True(!stillHeld)                       // the reservation is gone
			is.Equal(got.Spent["held"], tt.wantSpent) // turned into what it cost
			is.Equal(got.Spent["paid"], 3*usd)        // other batches untouched
			is.Equal(got.Sum().Remaining, 10*usd-3*usd-tt.wantSpent)

			again, err := budget.Settle(got, "held", tt.actual+1)
			is.True(err != nil)                    // settling twice is no change
			is.True(reflect.DeepEqual(again, got)) // and keeps the first settlement
		})
	}
}

func TestSettleUnknownBatchIsNoOp(t *testing.T) {
	is := is.New(t)
	before := account()
	got, err := budget.Settle(before, "never-reserved", 1*usd)
	is.True(err != nil && !errors.Is(err, budget.ErrExceeded)) // no change
	is.True(reflect.DeepEqual(got, before))                    // nothing charged
	_, charged := got.Spent["never-reserved"]
	is.True(!charged)
}

func TestRelease(t *testing.T) {
	is := is.New(t)
	before := account()
	got, err := budget.Release(before, "held")
	is.NoErr(err)
	_, held := got.Reserved["held"]
	is.True(!held)                       // reservation dropped
	is.Equal(got.Spent, before.Spent)    // nothing charged
	is.Equal(got.Sum().Remaining, 7*usd) // the $2 are free again

	again, err := budget.Release(got, "held")
	is.True(err != nil)                    // releasing twice is no change
	is.True(reflect.DeepEqual(again, got)) // nothing changed

	settled, err := budget.Release(before, "paid")
	is.True(err != nil)                         // a settled batch has nothing to release
	is.True(reflect.DeepEqual(settled, before)) // its charge stays
}

// The transitions are pure: the caller's maps are never written to, and the
// result never aliases them.
func TestTransitionsDoNotMutateInput(t *testing.T) {
	ops := map[string]func(budget.Account) (budget.Account, error){
		"reserve": func(a budget.Account) (budget.Account, error) { return budget.Reserve(a, "new", 1*usd) },
		"settle":  func(a budget.Account) (budget.Account, error) { return budget.Settle(a, "held", 1*usd) },
		"release": func(a budget.Account) (budget.Account, error) { return budget.Release(a, "held") },
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			is := is.New(t)
			in := account()
			reserved, spent := maps.Clone(in.Reserved), maps.Clone(in.Spent)
			out, err := op(in)
			is.NoErr(err)
			is.Equal(in.Reserved, reserved) // input reservations untouched
			is.Equal(in.Spent, spent)       // input spend untouched
			out.Reserved["poke"] = 1
			out.Spent["poke"] = 1
			_, r := in.Reserved["poke"]
			_, s := in.Spent["poke"]
			is.True(!r && !s) // the output does not alias the input
		})
	}
}

func TestReserveRejectsNegativeAmount(t *testing.T) {
	is := is.New(t)
	a, err := budget.Reserve(account(), "negative", -100*usd)
	is.True(err != nil) // a negative estimate is refused
	_, err = budget.Reserve(a, "big", 50*usd)
	is.True(errors.Is(err, budget.ErrExceeded)) // and cannot make room for overspending
}

func TestShares(t *testing.T) {
	tests := []struct {
		name  string
		limit budget.Micros
		n     int
		want  []budget.Micros
	}{
		{"even split", 16 * usd, 4, []budget.Micros{4 * usd, 4 * usd, 4 * usd, 4 * usd}},
		{"remainder to the first shards", 10, 4, []budget.Micros{3, 3, 2, 2}},
		{"one shard holds it all", 250 * usd, 1, []budget.Micros{250 * usd}},
		{"no shards is one", 5 * usd, 0, []budget.Micros{5 * usd}},
		{"a zero cap", 0, 3, []budget.Micros{0, 0, 0}},
		{"fewer micros than shards", 2, 4, []budget.Micros{1, 1, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			got := budget.Shares(tt.limit, tt.n)
			is.Equal(got, tt.want)
			var sum budget.Micros
			for _, s := range got {
				sum += s
			}
			is.Equal(sum, tt.limit) // the shares sum to the cap exactly
		})
	}
}

// shard is a shard account of limit with batches reserved and spent.
func shard(limit budget.Micros, reserved, spent map[string]budget.Micros) budget.Account {
	return budget.Account{Limit: limit, Reserved: reserved, Spent: spent}
}

func TestTake(t *testing.T) {
	tests := []struct {
		name      string
		a         budget.Account
		want      budget.Micros
		wantPiece budget.Micros
		wantErr   error // errNoChange is reported as a non-nil error that is not ErrExceeded
		noChange  bool
	}{
		{"all of it from a roomy shard", shard(5*usd, nil, nil), 2 * usd, 2 * usd, nil, false},
		{"exactly the room", shard(5*usd, map[string]budget.Micros{"x": 3 * usd}, nil), 2 * usd, 2 * usd, nil, false},
		{"what is left when the shard lacks room", shard(5*usd, map[string]budget.Micros{"x": 3 * usd}, map[string]budget.Micros{"y": 1 * usd}), 2 * usd, 1 * usd, nil, false},
		{"a full shard refuses", shard(5*usd, map[string]budget.Micros{"x": 5 * usd}, nil), 1, 0, budget.ErrExceeded, false},
		{"a shard over its share (cap lowered) refuses", shard(1*usd, map[string]budget.Micros{"x": 3 * usd}, nil), 1, 0, budget.ErrExceeded, false},
		{"a piece held already is kept, not taken twice", shard(5*usd, map[string]budget.Micros{"b": 1 * usd}, nil), 4 * usd, 1 * usd, nil, true},
		{"a piece settled already is kept", shard(5*usd, nil, map[string]budget.Micros{"b": 2}), 4 * usd, 2, nil, true},
		{"negative is refused", shard(5*usd, nil, nil), -1, 0, budget.ErrNegative, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			got, piece, err := budget.Take(tt.a, "b", tt.want)
			is.Equal(piece, tt.wantPiece) // the piece the batch holds here
			switch {
			case tt.noChange:
				is.True(err != nil && !errors.Is(err, budget.ErrExceeded)) // no change, not a refusal
				is.True(reflect.DeepEqual(got, tt.a))
			case tt.wantErr != nil:
				is.True(errors.Is(err, tt.wantErr))
				is.True(reflect.DeepEqual(got, tt.a)) // refused without change
			default:
				is.NoErr(err)
				is.Equal(got.Reserved["b"], tt.wantPiece)                      // held as a reservation
				is.Equal(got.Sum().Reserved, tt.a.Sum().Reserved+tt.wantPiece) // and nothing else changed
				is.True(got.Sum().Reserved+got.Sum().Spent <= got.Limit)       // never past the shard's share
			}
		})
	}
}

func TestPlan(t *testing.T) {
	full := shard(1*usd, map[string]budget.Micros{"x": 1 * usd}, nil)
	free := func(m budget.Micros) budget.Account { return shard(m, nil, nil) }
	tests := []struct {
		name      string
		shards    []budget.Account
		want      budget.Micros
		start     int
		wantHeld  budget.Micros
		wantOrder []int
		wantFits  bool
	}{
		{"from the start shard round", []budget.Account{free(usd), free(usd), free(usd)}, 1 * usd, 1, 0, []int{1, 2, 0}, true},
		{"full shards are skipped", []budget.Account{free(usd), full, free(usd)}, 2 * usd, 1, 0, []int{2, 0}, true},
		{"pieces from several shards cover it", []budget.Account{free(usd), free(usd), free(usd)}, 3 * usd, 0, 0, []int{0, 1, 2}, true},
		{"one micro more than the room", []budget.Account{free(usd), full, free(usd)}, 2*usd + 1, 0, 0, []int{0, 2}, false},
		{"every shard full", []budget.Account{full, full}, 1, 0, 0, nil, false},
		{"held already: nothing to take", []budget.Account{shard(usd, map[string]budget.Micros{"b": 1 * usd}, nil), full}, 1 * usd, 0, 1 * usd, nil, true},
		{"held in part: the rest from the others", []budget.Account{shard(usd, map[string]budget.Micros{"b": usd / 2}, nil), free(usd)}, 1 * usd, 0, usd / 2, []int{1}, true},
		{"a zero cap refuses", []budget.Account{free(0), free(0)}, 1, 0, 0, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			held, order, fits := budget.Plan(tt.shards, "b", tt.want, tt.start)
			is.Equal(held, tt.wantHeld)   // what the batch holds already
			is.Equal(order, tt.wantOrder) // the shards to take the rest from
			is.Equal(fits, tt.wantFits)   // whether it can fit
		})
	}
}

func TestApportion(t *testing.T) {
	tests := []struct {
		name   string
		shards []budget.Account
		actual budget.Micros
		want   map[int]budget.Micros
	}{
		{"one piece charged what it cost", []budget.Account{shard(0, map[string]budget.Micros{"b": 3}, nil)}, 2, map[int]budget.Micros{0: 2}},
		{"pieces filled in shard order", []budget.Account{
			shard(0, map[string]budget.Micros{"b": 3}, nil), shard(0, nil, nil), shard(0, map[string]budget.Micros{"b": 3}, nil)},
			4, map[int]budget.Micros{0: 3, 2: 1}},
		{"nothing made releases every piece", []budget.Account{
			shard(0, map[string]budget.Micros{"b": 3}, nil), shard(0, map[string]budget.Micros{"b": 3}, nil)},
			0, map[int]budget.Micros{0: 0, 1: 0}},
		{"more than reserved is capped by the pieces", []budget.Account{shard(0, map[string]budget.Micros{"b": 3}, nil)}, 9, map[int]budget.Micros{0: 3}},
		{"a settled piece keeps its charge", []budget.Account{
			shard(0, nil, map[string]budget.Micros{"b": 1}), shard(0, map[string]budget.Micros{"b": 3}, nil)},
			4, map[int]budget.Micros{1: 3}},
		{"settled pieces covering the cost leave nothing to charge", []budget.Account{
			shard(0, nil, map[string]budget.Micros{"b": 2}), shard(0, map[string]budget.Micros{"b": 3}, nil)},
			2, map[int]budget.Micros{1: 0}},
		{"other batches are not touched", []budget.Account{shard(0, map[string]budget.Micros{"x": 3}, nil)}, 2, map[int]budget.Micros{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			got := budget.Apportion(tt.shards, "b", tt.actual)
			is.Equal(got, tt.want)
			var charged budget.Micros
			for _, c := range got {
				charged += c
			}
			for _, a := range tt.shards {
				charged += a.Spent["b"]
			}
			is.True(charged <= max(tt.actual, 0)) // never more than the batch cost
		})
	}
}

func TestSumShards(t *testing.T) {
	is := is.New(t)
	got := budget.SumShards([]budget.Account{
		shard(5*usd, map[string]budget.Micros{"a": 1 * usd}, map[string]budget.Micros{"b": 2 * usd}),
		shard(5*usd, map[string]budget.Micros{"c": 7 * usd}, nil), // over its share: its cap was lowered
	})
	is.Equal(got, budget.Totals{Limit: 10 * usd, Reserved: 8 * usd, Spent: 2 * usd, Remaining: 2 * usd}) // an overfull shard lends no room
}
