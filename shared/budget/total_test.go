package budget_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/cloud"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/devstack/stacktest"
	"github.com/assetgen/assetgen/shared/layout"
)

// totalStore is a store whose users may spend userUSD a day each, under a
// deployment cap of capUSD split over shards.
func totalStore(c *cloud.Clients, userUSD, capUSD float64, shards int) *budget.Store {
	return budget.NewStore(c.Bucket, budget.NewLimits(c.Bucket, userUSD, time.Hour), budget.Total{LimitUSD: capUSD, Shards: shards}, 10*time.Second)
}

// shardsOf reads the day's shards of the cap as stored.
func shardsOf(t *testing.T, c *cloud.Clients, n int) []budget.Account {
	t.Helper()
	out := make([]budget.Account, n)
	for i := range out {
		_, err := c.Bucket.ReadJSON(context.Background(), layout.BudgetTotalShard(day, i), &out[i])
		if err != nil && !strings.Contains(err.Error(), "not found") {
			t.Fatal(err)
		}
	}
	return out
}

// heldBy sums what batchID holds over the shards, reserved or spent.
func heldBy(shards []budget.Account, batchID string) budget.Micros {
	var sum budget.Micros
	for _, a := range shards {
		v, _ := budget.Held(a, batchID)
		sum += v
	}
	return sum
}

func totalWrites(f *devstack.Faults) int {
	n := 0
	for _, w := range f.WritesOf(layout.Budgets + day + "/total/") {
		n += w
	}
	return n
}

func TestTotalSpillsOverShardsAndSettles(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	faults := devstack.NewFaults(1)
	c := stacktest.Open(t, faults)
	ctx := context.Background()
	s := totalStore(c, 100, 4, 4) // $1 a shard

	_, _, err := s.Reserve(ctx, "u1", day, "b1", budget.FromUSD(2.5))
	is.NoErr(err) // $2.50 fits $4 though no shard holds it alone
	sh := shardsOf(t, c, 4)
	is.Equal(heldBy(sh, "b1"), budget.FromUSD(2.5)) // held in pieces, exactly
	pieces := 0
	for _, a := range sh {
		if _, ok := a.Reserved["b1"]; ok {
			pieces++
		}
	}
	is.Equal(pieces, 3) // from three shards
	tot, err := s.TotalOf(ctx, day)
	is.NoErr(err)
	is.Equal(tot, budget.Totals{Limit: budget.FromUSD(4), Reserved: budget.FromUSD(2.5), Remaining: budget.FromUSD(1.5)})

	_, _, err = s.Reserve(ctx, "u2", day, "b2", budget.FromUSD(1.5))
	is.NoErr(err) // exactly what remains, from the leftovers
	before := totalWrites(faults)
	a, created, err := s.Reserve(ctx, "u3", day, "b3", 1)
	is.True(errors.Is(err, budget.ErrTotalExceeded)) // one micro past the cap
	is.True(created)
	is.Equal(totalWrites(faults), before) // refused without writing a shard
	_, held := a.Reserved["b3"]
	is.True(held) // u3's own reservation waits for the caller's Release
	_, err = s.Release(ctx, "u3", day, "b3")
	is.NoErr(err)
	u3, err := s.Get(ctx, "u3", day)
	is.NoErr(err)
	is.Equal(len(u3.Reserved), 0) // as stored

	_, err = s.Settle(ctx, "u1", day, "b1", budget.FromUSD(1))
	is.NoErr(err)
	sh = shardsOf(t, c, 4)
	is.Equal(heldBy(sh, "b1"), budget.FromUSD(1)) // charged what it cost, the rest released
	for _, a := range sh {
		_, held := a.Reserved["b1"]
		is.True(!held) // no piece left reserved
	}
	writes := totalWrites(faults)
	_, err = s.Settle(ctx, "u1", day, "b1", budget.FromUSD(2))
	is.NoErr(err)                         // settling again succeeds
	is.Equal(totalWrites(faults), writes) // without a write
	is.Equal(heldBy(shardsOf(t, c, 4), "b1"), budget.FromUSD(1))

	_, err = s.Release(ctx, "u2", day, "b2")
	is.NoErr(err)
	tot, err = s.TotalOf(ctx, day)
	is.NoErr(err)
	is.Equal(tot, budget.Totals{Limit: budget.FromUSD(4), Spent: budget.FromUSD(1), Remaining: budget.FromUSD(3)})
	for name := range faults.WritesOf(layout.Budgets) {
		is.True(strings.HasPrefix(name, layout.Budgets+day+"/")) // under the day: pruned with it
	}
}

// A retried submit reserving the same batch again holds it once.
func TestTotalReserveIsIdempotent(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	faults := devstack.NewFaults(1)
	c := stacktest.Open(t, faults)
	ctx := context.Background()
	s := totalStore(c, 100, 4, 4)
	_, created, err := s.Reserve(ctx, "u", day, "b", budget.FromUSD(1.5))
	is.NoErr(err)
	is.True(created)
	writes := totalWrites(faults)
	_, created, err = s.Reserve(ctx, "u", day, "b", budget.FromUSD(1.5))
	is.NoErr(err)
	is.True(!created)
	is.Equal(totalWrites(faults), writes)                         // nothing taken twice
	is.Equal(heldBy(shardsOf(t, c, 4), "b"), budget.FromUSD(1.5)) // held once
}

// A reservation the cap refuses keeps what it took, and says it made the
// user's reservation: another attempt of the same batch may be counting on
// them, so giving back is the caller's call. Release then gives back both.
func TestTotalRefusalLeavesTheReleaseToTheCaller(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	c := stacktest.Open(t, nil)
	ctx := context.Background()
	s := totalStore(c, 10, 1, 2)
	_, _, err := s.Reserve(ctx, "u", day, "small", budget.FromUSD(0.5))
	is.NoErr(err)
	_, created, err := s.Reserve(ctx, "u", day, "big", budget.FromUSD(0.6))
	is.True(errors.Is(err, budget.ErrTotalExceeded)) // $0.60 does not fit the $0.50 left of the cap
	is.True(!errors.Is(err, budget.ErrExceeded))     // though it fits the user's $10
	is.True(created)                                 // this call made the user's reservation
	a, err := s.Get(ctx, "u", day)
	is.NoErr(err)
	_, held := a.Reserved["big"]
	is.True(held) // still held, for the caller to give back

	_, err = s.Release(ctx, "u", day, "big")
	is.NoErr(err)
	a, err = s.Get(ctx, "u", day)
	is.NoErr(err)
	_, held = a.Reserved["big"]
	is.True(!held)                                  // given back
	is.Equal(a.Sum().Reserved, budget.FromUSD(0.5)) // the earlier batch stays
	total, err := s.TotalOf(ctx, day)
	is.NoErr(err)
	is.Equal(total.Reserved, budget.FromUSD(0.5)) // and the cap holds only it
}

type totalRace struct {
	id     string
	amount budget.Micros
	err    error
}

// raceTotal has n distinct users reserve amount each, at once, under a cap.
func raceTotal(t *testing.T, s *budget.Store, n int, amount budget.Micros) []totalRace {
	t.Helper()
	out := make([]totalRace, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			id := fmt.Sprintf("batch-%02d", i)
			_, _, err := s.Reserve(context.Background(), fmt.Sprintf("user-%02d", i), day, id, amount)
			out[i] = totalRace{id: id, amount: amount, err: err}
		})
	}
	close(start)
	wg.Wait()
	return out
}

// checkCap asserts the cap's invariants after a race: the batches granted sum
// to at most the cap, each holds its whole amount, no shard holds more than
// its share, and a batch refused by the cap holds nothing there.
func checkCap(t *testing.T, c *cloud.Clients, results []totalRace, capUSD float64, shards int) (granted int) {
	t.Helper()
	is := is.New(t)
	sh := shardsOf(t, c, shards)
	shares := budget.Shares(budget.FromUSD(capUSD), shards)
	var held budget.Micros
	for i, a := range sh {
		s := a.Sum()
		is.True(s.Reserved+s.Spent <= shares[i]) // no shard past its share
		held += s.Reserved + s.Spent
	}
	is.True(held <= budget.FromUSD(capUSD)) // the cap holds
	var sum budget.Micros
	for _, r := range results {
		switch {
		case r.err == nil:
			granted++
			sum += r.amount
			is.True(heldBy(sh, r.id) >= r.amount) // a granted batch holds its whole amount
		case errors.Is(r.err, budget.ErrTotalExceeded):
			// A refused batch gives back what its writes took; a piece whose
			// write was cut off by the patience and landed all the same is
			// left held (see TestTotalGivesBackPiecesWhenTheRestIsGone).
			if h := heldBy(sh, r.id); h > 0 {
				t.Logf("%s: refused, a piece of %d micros left held", r.id, h)
			}
		case tornRead(r.err) || errors.Is(r.err, budget.ErrContended):
			t.Logf("%s: %v", r.id, r.err)
		default:
			t.Errorf("%s: unexpected error %v", r.id, r.err)
		}
	}
	is.True(sum <= budget.FromUSD(capUSD)) // the batches granted fit the cap
	is.True(granted >= 1)
	return granted
}

// THE race on the cap: 40 submits of $0.70 at once against $10 over four
// shards ($2.50 each, so most reservations take pieces from two shards).
func TestTotalRaceNeverOverspends(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	faults := devstack.NewFaults(1)
	c := stacktest.Open(t, faults)
	s := totalStore(c, 100, 10, 4)
	results := raceTotal(t, s, 40, budget.FromUSD(0.7))
	granted := checkCap(t, c, results, 10, 4)
	t.Logf("granted %d of 40 ($%.2f of $10); 412s=%d", granted, float64(granted)*0.7, faults.Counts().Status412)
	is.True(faults.Counts().Status412 > 0) // the writers did race
}

// Writes that land but whose answers are lost are retried by the client,
// which meets its own write: it is counted once, and the cap still holds.
func TestTotalLostAnswersKeepTheCap(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	faults := devstack.NewFaults(7)
	c := stacktest.Open(t, faults)
	s := totalStore(c, 100, 5, 4)
	faults.SetLostAnswers(0.3)
	results := raceTotal(t, s, 20, budget.FromUSD(0.6))
	faults.SetLostAnswers(0)
	granted := checkCap(t, c, results, 5, 4)
	t.Logf("granted %d of 20; lost answers=%d", granted, faults.Counts().LostAnswers)
	is.True(faults.Counts().LostAnswers > 0) // answers were lost
	sh := shardsOf(t, c, 4)
	for _, r := range results {
		if r.err == nil {
			is.Equal(heldBy(sh, r.id), r.amount) // a write whose answer was lost is not taken twice
		}
	}
}

// A submit that dies between two writes of its reservation (here: its context
// ends after the first piece landed) leaves that piece held: the cap is
// stricter until the day ends, never looser, and a release frees it.
func TestTotalPieceLeftByAnInterruptedReserveOnlyTightensTheCap(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var uploads atomic.Int32
	// The second upload is the first piece of the cap (the first is the
	// user's account): the caller dies as it lands.
	c := stacktest.OpenWith(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r)
			if strings.HasPrefix(r.URL.Path, "/upload/") && uploads.Add(1) == 2 {
				cancel()
			}
		})
	})
	s := totalStore(c, 100, 2, 2) // $1 a shard
	_, _, err := s.Reserve(ctx, "u", day, "b", budget.FromUSD(1.5))
	is.True(err != nil) // the reservation did not complete
	held := heldBy(shardsOf(t, c, 2), "b")
	is.True(held > 0)                   // a piece was left behind
	is.True(held < budget.FromUSD(1.5)) // short of the amount
	tot, err := s.TotalOf(context.Background(), day)
	is.NoErr(err)
	is.Equal(tot.Remaining, budget.FromUSD(2)-held) // it only tightens the cap
	next, err := s.TotalOf(context.Background(), "2025-03-15")
	is.NoErr(err)
	is.Equal(next.Remaining, budget.FromUSD(2)) // for that day only

	_, err = s.Release(context.Background(), "u", day, "b")
	is.NoErr(err)
	is.Equal(heldBy(shardsOf(t, c, 2), "b"), budget.Micros(0)) // a release frees it
}

// A reservation that finds part of its amount and then no room for the rest
// (another submit took it meanwhile) keeps the pieces it took until the
// caller's Release gives back every one, and the user's reservation with them.
func TestTotalGivesBackPiecesWhenTheRestIsGone(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	var s *budget.Store
	var uploads atomic.Int32
	rival := make(chan error, 1)
	// The second upload is the first piece of the cap (the first is the
	// user's account): as it lands, a rival takes what is left.
	c := stacktest.OpenWith(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r)
			if strings.HasPrefix(r.URL.Path, "/upload/") && uploads.Add(1) == 2 {
				_, _, err := s.Reserve(context.Background(), "rival", day, "rival", budget.FromUSD(1))
				rival <- err
			}
		})
	})
	s = totalStore(c, 100, 2, 2) // $1 a shard
	_, created, err := s.Reserve(context.Background(), "u", day, "b", budget.FromUSD(1.5))
	is.NoErr(<-rival)                                // the rival took the other shard
	is.True(errors.Is(err, budget.ErrTotalExceeded)) // so $1.50 cannot be found
	is.True(created)
	is.True(heldBy(shardsOf(t, c, 2), "b") > 0) // the piece taken waits for the caller
	_, err = s.Release(context.Background(), "u", day, "b")
	is.NoErr(err)
	sh := shardsOf(t, c, 2)
	is.Equal(heldBy(sh, "b"), budget.Micros(0))                // Release gave it back
	is.Equal(heldBy(sh, "rival"), budget.FromUSD(1))           // the rival's stays
	is.Equal(budget.SumShards(sh).Reserved, budget.FromUSD(1)) // nothing else is held
	a, err := s.Get(context.Background(), "u", day)
	is.NoErr(err)
	is.Equal(len(a.Reserved), 0) // nor by the user
}
