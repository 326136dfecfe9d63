package budget_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/cloud"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/devstack/stacktest"
	"github.com/assetgen/assetgen/shared/layout"
)

const day = "2025-03-14"

// writeLimits writes the per-user limits object (create-once: a fresh stack).
func writeLimits(t *testing.T, c *cloud.Clients, users map[string]float64) {
	t.Helper()
	res, err := c.Bucket.CreateJSON(context.Background(), layout.BudgetsObject, map[string]any{"users": users})
	if err != nil || res.Outcome != bucket.Won {
		t.Fatalf("write limits: %v err=%v", res.Outcome, err)
	}
}

func newStore(c *cloud.Clients, defaultUSD float64, patience time.Duration) *budget.Store {
	return budget.NewStore(c.Bucket, budget.NewLimits(c.Bucket, defaultUSD, time.Hour), budget.Total{LimitUSD: 1e6, Shards: 4}, patience)
}

func TestObjectHidesTheUser(t *testing.T) {
	is := is.New(t)
	name := budget.Object(day, "alice@example.com")
	is.True(strings.HasPrefix(name, "budgets/"+day+"/")) // one prefix per day
	is.True(strings.HasSuffix(name, ".json"))
	is.True(!strings.Contains(name, "alice"))                         // no e-mail in object names
	is.Equal(name, budget.Object(day, "alice@example.com"))           // stable
	is.True(name != budget.Object(day, "bob@example.com"))            // per user
	is.True(name != budget.Object("2025-03-15", "alice@example.com")) // per day
}

func TestGetEmptyAccount(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	c := stacktest.Open(t, nil)
	ctx := context.Background()
	s := newStore(c, 7.5, 10*time.Second)
	a, err := s.Get(ctx, "u", day)
	is.NoErr(err)
	is.Equal(a.User, "u")
	is.Equal(a.Day, day)
	is.Equal(a.Sum(), budget.Totals{Limit: budget.FromUSD(7.5), Remaining: budget.FromUSD(7.5)}) // default limit, nothing used
	exists, err := c.Bucket.Exists(ctx, budget.Object(day, "u"))
	is.NoErr(err)
	is.True(!exists) // reading writes nothing
}

func TestLimitsDefaultAndOverride(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		object  map[string]float64 // nil: no object
		user    string
		wantUSD float64
	}{
		{"no object: default", nil, "alice", 10},
		{"overridden user", map[string]float64{"alice": 100, "bob": 0.5}, "alice", 100},
		{"lowered user", map[string]float64{"alice": 100, "bob": 0.5}, "bob", 0.5},
		{"user without override: default", map[string]float64{"alice": 100}, "carol", 10},
		{"blocked user", map[string]float64{"mallory": 0}, "mallory", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			c := stacktest.Open(t, nil)
			if tt.object != nil {
				writeLimits(t, c, tt.object)
			}
			l := budget.NewLimits(c.Bucket, 10, time.Hour)
			got, err := l.For(context.Background(), tt.user)
			is.NoErr(err)
			is.Equal(got, budget.FromUSD(tt.wantUSD))
		})
	}
}

// An override table that cannot be read, with none read before, fails closed:
// it may lower or block this very user.
func TestLimitsCorruptObjectFailsClosed(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	c := stacktest.Open(t, nil)
	ctx := context.Background()
	_, err := c.Bucket.Create(ctx, layout.BudgetsObject, []byte(`{"users": {"alice": "lots"}}`), bucket.Meta{ContentType: "application/json"})
	is.NoErr(err)
	l := budget.NewLimits(c.Bucket, 10, time.Hour)
	_, err = l.For(ctx, "alice")
	is.True(errors.Is(err, budget.ErrLimitsUnknown)) // unreadable overrides: no spending
}

// The per-user limit read from the bucket is the one a reservation is held to.
func TestReserveHonoursOverride(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	c := stacktest.Open(t, nil)
	ctx := context.Background()
	writeLimits(t, c, map[string]float64{"small": 2, "big": 100})
	s := newStore(c, 10, 10*time.Second)

	_, _, err := s.Reserve(ctx, "small", day, "b1", budget.FromUSD(3))
	is.True(errors.Is(err, budget.ErrExceeded)) // $3 does not fit a $2 override (though the default is $10)
	_, _, err = s.Reserve(ctx, "big", day, "b1", budget.FromUSD(50))
	is.NoErr(err) // $50 fits a $100 override
	a, _, err := s.Reserve(ctx, "default", day, "b1", budget.FromUSD(10))
	is.NoErr(err) // exactly the default fits
	is.Equal(a.Limit, budget.FromUSD(10))
	is.Equal(a.Sum().Remaining, budget.Micros(0))
}

func TestStoreReserveSettleRelease(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	faults := devstack.NewFaults(1)
	c := stacktest.Open(t, faults)
	ctx := context.Background()
	s := newStore(c, 10, 10*time.Second)
	obj := budget.Object(day, "u")
	writes := func() int { return faults.WritesOf(obj)[obj] }

	a, _, err := s.Reserve(ctx, "u", day, "b1", budget.FromUSD(1))
	is.NoErr(err)
	is.Equal(a.Reserved["b1"], budget.FromUSD(1)) // the returned account holds it
	_, _, err = s.Reserve(ctx, "u", day, "b2", budget.FromUSD(2))
	is.NoErr(err)
	is.Equal(writes(), 2)

	a, _, err = s.Reserve(ctx, "u", day, "b1", budget.FromUSD(1))
	is.NoErr(err)                                 // a retried reserve succeeds
	is.Equal(writes(), 2)                         // without a write
	is.Equal(a.Sum().Reserved, budget.FromUSD(3)) // and without holding twice

	_, _, err = s.Reserve(ctx, "u", day, "b3", budget.FromUSD(7)+1)
	is.True(errors.Is(err, budget.ErrExceeded)) // one micro over what remains
	is.Equal(writes(), 2)                       // refused without a write

	a, err = s.Settle(ctx, "u", day, "b1", budget.FromUSD(0.6))
	is.NoErr(err)
	is.Equal(a.Spent["b1"], budget.FromUSD(0.6))
	_, held := a.Reserved["b1"]
	is.True(!held)
	is.Equal(writes(), 3)

	a, err = s.Settle(ctx, "u", day, "b1", budget.FromUSD(0.9))
	is.NoErr(err)                                // settling twice succeeds
	is.Equal(a.Spent["b1"], budget.FromUSD(0.6)) // keeping the first settlement
	is.Equal(writes(), 3)                        // without a write

	_, err = s.Settle(ctx, "u", day, "unknown", budget.FromUSD(1))
	is.NoErr(err) // settling an unknown batch is a no-op
	is.Equal(writes(), 3)

	a, err = s.Release(ctx, "u", day, "b2")
	is.NoErr(err)
	is.Equal(len(a.Reserved), 0)
	is.Equal(writes(), 4)
	_, err = s.Release(ctx, "u", day, "b2")
	is.NoErr(err) // releasing twice is a no-op
	is.Equal(writes(), 4)

	got, err := s.Get(ctx, "u", day)
	is.NoErr(err)
	is.Equal(got.Sum(), budget.Totals{Limit: budget.FromUSD(10), Spent: budget.FromUSD(0.6), Remaining: budget.FromUSD(9.4)})
	is.Equal(got.Spent, map[string]budget.Micros{"b1": budget.FromUSD(0.6)})
}

// Only the call that made a reservation may release it. A reservation whose
// write landed but whose answer was lost is still this call's: taken for a
// retried submit's, a failed submit would leave it held all day.
func TestReserveWhoseAnswerIsLostIsCreated(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	faults := devstack.NewFaults(1)
	c := stacktest.Open(t, faults)
	ctx := context.Background()
	s := newStore(c, 10, 10*time.Second)
	faults.LoseAnswers(budget.Object(day, "u"), 1)
	a, created, err := s.Reserve(ctx, "u", day, "b1", budget.FromUSD(1))
	is.NoErr(err)
	is.True(created)                                // this call holds the reservation
	is.Equal(a.Reserved["b1"], budget.FromUSD(1))   // once
	is.Equal(faults.Counts().LostAnswers, int64(1)) // though its answer was lost
	_, created, err = s.Reserve(ctx, "u", day, "b1", budget.FromUSD(1))
	is.NoErr(err)
	is.True(!created) // a retried submit finds it held
}

func TestAccountsArePerUserAndDay(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	c := stacktest.Open(t, nil)
	ctx := context.Background()
	s := newStore(c, 1, 10*time.Second)
	_, _, err := s.Reserve(ctx, "u", day, "b1", budget.FromUSD(1))
	is.NoErr(err)
	_, _, err = s.Reserve(ctx, "u", day, "b2", 1)
	is.True(errors.Is(err, budget.ErrExceeded)) // u's day is full
	_, _, err = s.Reserve(ctx, "u", "2025-03-15", "b2", budget.FromUSD(1))
	is.NoErr(err) // the next day is a fresh budget
	_, _, err = s.Reserve(ctx, "v", day, "b3", budget.FromUSD(1))
	is.NoErr(err) // another user is a fresh budget
}

type raceResult struct {
	id  string
	err error
	dur time.Duration
}

// reserveRace has 50 goroutines reserve $1 each, at once, for distinct batches
// of one user whose override is $10 (the default, $1,000, would hide overspend).
func reserveRace(t *testing.T, c *cloud.Clients, patience time.Duration) []raceResult {
	t.Helper()
	writeLimits(t, c, map[string]float64{"racer": 10})
	s := newStore(c, 1000, patience)
	const n = 50
	results := make([]raceResult, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			id := fmt.Sprintf("batch-%02d", i)
			t0 := time.Now()
			_, _, err := s.Reserve(context.Background(), "racer", day, id, budget.FromUSD(1))
			results[i] = raceResult{id: id, err: err, dur: time.Since(t0)}
		})
	}
	close(start)
	wg.Wait()
	return results
}

func readAccount(t *testing.T, c *cloud.Clients, user string) budget.Account {
	t.Helper()
	a, err := newStore(c, 0, 10*time.Second).Get(context.Background(), user, day)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// tornRead reports an artifact of the emulator's filesystem backend: it reads an
// object's attributes under its lock but opens the content afterwards, so a read
// racing an overwrite gets the new bytes under the old length and checksum; the
// client reports a bad CRC, or re-requests the old generation, which no longer
// exists (404). The ledger surfaces it as a read error and the change gives up,
// changing nothing. Real Cloud Storage serves one generation per read.
func tornRead(err error) bool {
	if errors.Is(err, budget.ErrContended) {
		return false
	}
	return errors.Is(err, storage.ErrObjectNotExist) || strings.Contains(err.Error(), "bad CRC on read")
}

// THE race: concurrent reservations never overspend, every success is held in
// the account object and every reservation held is a success.
func TestReserveRaceNeverOverspends(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	faults := devstack.NewFaults(1)
	c := stacktest.Open(t, faults)
	results := reserveRace(t, c, time.Minute)

	var ok, exceeded, torn int
	for _, r := range results {
		switch {
		case r.err == nil:
			ok++
		case errors.Is(r.err, budget.ErrExceeded):
			exceeded++
		case tornRead(r.err):
			torn++
			t.Logf("%s: emulator torn read: %v", r.id, r.err)
		default:
			// A CAS loses only to another reservation's write, and there are at
			// most 10 of those (fewer than the store's 20 attempts): contention
			// cannot exhaust it here.
			t.Errorf("%s: unexpected error %v", r.id, r.err)
		}
	}
	a := readAccount(t, c, "racer")
	tot := a.Sum()
	is.True(tot.Reserved <= budget.FromUSD(10)) // never more than the limit
	is.Equal(tot.Reserved, budget.FromUSD(10))  // and the whole limit is used
	is.Equal(ok, 10)                            // exactly ten reservations fit
	is.Equal(exceeded, len(results)-ok-torn)    // every other one was refused
	is.True(torn <= 2)                          // (the emulator artifact stays rare)
	is.Equal(len(a.Reserved), ok)               // one reservation per success
	for _, r := range results {
		_, held := a.Reserved[r.id]
		is.Equal(held, r.err == nil) // held exactly when reported held
	}
	obj := budget.Object(day, "racer")
	is.Equal(faults.WritesOf(obj)[obj], ok) // one write per reservation: refusals write nothing
	is.True(faults.Counts().Status412 > 0)  // the writers did race
}

// Under Cloud Storage's one-write-per-second limit and a short patience, most
// reservations cannot land in time: they fail cleanly with ErrContended, in
// bounded time, and the account never overspends.
func TestReserveRaceUnderWriteLimit(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	faults := devstack.NewFaults(1)
	faults.SetWriteLimit(time.Second)
	c := stacktest.Open(t, faults)
	const patience = 3 * time.Second
	results := reserveRace(t, c, patience)

	var ok, contended, torn int
	var slowest time.Duration
	for _, r := range results {
		slowest = max(slowest, r.dur)
		switch {
		case r.err == nil:
			ok++
		case errors.Is(r.err, budget.ErrContended):
			contended++
		case tornRead(r.err):
			torn++
			t.Logf("%s: emulator torn read: %v", r.id, r.err)
		default:
			// With at most ~4 writes in 3 s the $10 cannot fill: no ErrExceeded.
			t.Errorf("%s: unexpected error %v", r.id, r.err)
		}
	}
	a := readAccount(t, c, "racer")
	is.True(a.Sum().Reserved <= budget.FromUSD(10)) // never more than the limit
	is.True(ok >= 1)                                // someone got through
	is.True(contended > 0)                          // and the rest gave up cleanly
	is.Equal(ok+contended+torn, len(results))
	is.True(torn <= 2) // (the emulator artifact stays rare)
	for _, r := range results {
		if r.err == nil {
			_, held := a.Reserved[r.id]
			is.True(held) // every success is held
		}
	}
	// A reservation whose write landed just as the patience ran out may be held
	// although its caller got ErrContended (see TestContendedReserveThatLanded).
	if leaked := len(a.Reserved) - ok; leaked != 0 {
		t.Logf("%d reservation(s) held although their caller got ErrContended", leaked)
	}
	is.True(len(a.Reserved) >= ok)
	is.True(faults.Counts().Status429 > 0) // the write limit did bite
	// An attempt started within the patience may take up to 5 s more to
	// finish, so its outcome is known; nobody waits much past that.
	is.True(slowest < patience+7*time.Second)
	t.Logf("ok=%d contended=%d slowest=%v 429s=%d", ok, contended, slowest, faults.Counts().Status429)
}

// openHeld starts an emulator whose uploads, while hold is set, commit but do not
// answer until the client gives up: a write that lands as the deadline passes.
func openHeld(t *testing.T, hold *atomic.Bool) *cloud.Clients {
	t.Helper()
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !hold.Load() || !strings.HasPrefix(r.URL.Path, "/upload/") {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r) // the object is written here
			select {
			case <-r.Context().Done(): // the client gave up
			case <-time.After(30 * time.Second):
			}
		})
	}
	g, err := devstack.StartGCS(devstack.GCSOptions{Addr: "127.0.0.1:0", Root: t.TempDir(), Buckets: []string{stacktest.TestBucket}, Wrap: wrap})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Close(ctx)
	})
	env := map[string]string{"BUCKET": stacktest.TestBucket, "STORAGE_EMULATOR_HOST": g.Addr, "SIGNING_KEY_FILE": t.TempDir() + "/key.pem"}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	c, err := cloud.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// ErrContended promises that nothing was changed, and submit does not release a
// reservation that failed with it. A write that commits as the patience runs out
// breaks the promise: the reservation is held although Reserve reported failure,
// and nobody ever releases it.
func TestContendedReserveThatLanded(t *testing.T) {
	is := is.New(t)
	var hold atomic.Bool
	c := openHeld(t, &hold)
	ctx := context.Background()
	s := newStore(c, 10, 500*time.Millisecond)
	_, _, err := s.Reserve(ctx, "u", day, "first", budget.FromUSD(1)) // the account exists
	is.NoErr(err)

	hold.Store(true)
	_, _, err = s.Reserve(ctx, "u", day, "late", budget.FromUSD(1))
	hold.Store(false)
	a := readAccount(t, c, "u")
	_, held := a.Reserved["late"]
	t.Logf("err=%v held=%v", err, held)
	is.True(err == nil || errors.Is(err, budget.ErrContended)) // success, or contention
	is.Equal(held, err == nil)                                 // held exactly when reported held
}
