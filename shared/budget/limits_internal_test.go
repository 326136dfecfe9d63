package budget

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/cached"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/devstack/stacktest"
	"github.com/assetgen/assetgen/shared/layout"
)

// fakeClock is a settable clock for the unexported now fields.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type limitsDoc struct {
	Users map[string]float64 `json:"users"`
}

// setLimits replaces the limits object by compare-and-swap.
func setLimits(t *testing.T, b *bucket.Bucket, users map[string]float64) {
	t.Helper()
	_, _, err := bucket.Update(context.Background(), b, layout.BudgetsObject, func(limitsDoc, bool) (limitsDoc, error) {
		return limitsDoc{Users: users}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The pure transitions report "nothing to do" with errNoChange, which the store
// turns into a skipped write.
func TestNoOpsReportErrNoChange(t *testing.T) {
	is := is.New(t)
	a := Account{Limit: 10_000_000,
		Reserved: map[string]Micros{"held": 1_000_000},
		Spent:    map[string]Micros{"paid": 1_000_000}}
	_, err := Reserve(a, "held", 1)
	is.True(errors.Is(err, errNoChange)) // reserve of a reserved batch
	_, err = Reserve(a, "paid", 1)
	is.True(errors.Is(err, errNoChange)) // reserve of a settled batch
	_, err = Settle(a, "paid", 1)
	is.True(errors.Is(err, errNoChange)) // settle twice
	_, err = Settle(a, "unknown", 1)
	is.True(errors.Is(err, errNoChange)) // settle of an unknown batch
	_, err = Release(a, "unknown")
	is.True(errors.Is(err, errNoChange)) // release of an unknown batch
}

// limitsAt reads the limits object of store on a clock the test moves.
func limitsAt(store *bucket.Bucket, defaultUSD float64, ttl time.Duration, clock *fakeClock) *Limits {
	return newLimits(readLimits(store), defaultUSD, cached.Options{TTL: ttl, Backoff: time.Second, Now: clock.Now,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// An override changed in the bucket is picked up only once the TTL has passed;
// until then the instance answers from memory without reading the object.
func TestLimitsReloadAfterTTL(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	faults := devstack.NewFaults(1)
	c := stacktest.Open(t, faults)
	ctx := context.Background()
	setLimits(t, c.Bucket, map[string]float64{"u": 100})

	clock := &fakeClock{t: time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)}
	l := limitsAt(c.Bucket, 10, time.Minute, clock)
	limit := func(ctx context.Context, user string) Micros {
		m, err := l.For(ctx, user)
		is.NoErr(err)
		return m
	}

	is.Equal(limit(ctx, "u"), FromUSD(100))    // override read from the object
	is.Equal(limit(ctx, "other"), FromUSD(10)) // default for everyone else

	setLimits(t, c.Bucket, map[string]float64{"u": 5})
	readsBefore := faults.Counts().Reads
	clock.Advance(time.Minute - time.Nanosecond)
	is.Equal(limit(ctx, "u"), FromUSD(100))      // within the TTL: the old override
	is.Equal(faults.Counts().Reads, readsBefore) // and no read of the object

	clock.Advance(time.Nanosecond)
	is.Equal(limit(ctx, "u"), FromUSD(5)) // TTL passed: the new override
	is.True(faults.Counts().Reads > readsBefore)

	// A read that fails keeps the last good overrides.
	faults.SetFailures(1, http.StatusForbidden)
	clock.Advance(time.Minute)
	rejected := faults.Counts().Rejected
	is.Equal(limit(ctx, "u"), FromUSD(5))        // last good override kept
	is.True(faults.Counts().Rejected > rejected) // (the read was tried, and failed)
	faults.SetFailures(0)

	// A corrupt object is not used at all (an operator may have lowered or
	// blocked the user in that edit): limits are unknown, readiness fails.
	w := c.Storage.Bucket(stacktest.TestBucket).Object(layout.BudgetsObject).NewWriter(ctx)
	_, err := w.Write([]byte("{not json"))
	is.NoErr(err)
	is.NoErr(w.Close())
	clock.Advance(time.Minute)
	_, err = l.For(ctx, "u")
	is.True(errors.Is(err, ErrLimitsUnknown))                    // corrupt object: no limit, so no spend
	is.True(errors.Is(l.Config().Valid(ctx), cached.ErrInvalid)) // and the instance is not ready
	w = c.Storage.Bucket(stacktest.TestBucket).Object(layout.BudgetsObject).NewWriter(ctx)
	_, err = w.Write([]byte(`{"users": {"u": 5}}`))
	is.NoErr(err)
	is.NoErr(w.Close())
	clock.Advance(time.Minute)            // past the back-off, which never exceeds the TTL
	is.Equal(limit(ctx, "u"), FromUSD(5)) // fixed: read again
	is.NoErr(l.Config().Valid(ctx))

	// A deleted object means no overrides at all.
	is.NoErr(c.Storage.Bucket(stacktest.TestBucket).Object(layout.BudgetsObject).Delete(ctx))
	clock.Advance(time.Minute)
	is.Equal(limit(ctx, "u"), FromUSD(10)) // no object: the default
}

// Until a first good read, a failed read fails closed (an operator may have
// blocked the user) and is retried after a back-off, not a whole TTL.
func TestLimitsFailClosedUntilFirstGoodRead(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	faults := devstack.NewFaults(1)
	c := stacktest.Open(t, faults)
	ctx := context.Background()
	setLimits(t, c.Bucket, map[string]float64{"u": 100})

	clock := &fakeClock{t: time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)}
	l := limitsAt(c.Bucket, 10, time.Hour, clock)

	faults.SetFailures(1, http.StatusForbidden)
	_, err := l.For(ctx, "u")
	is.True(errors.Is(err, ErrLimitsUnknown)) // unreadable, nothing known: no spending
	faults.SetFailures(0)
	_, err = l.For(ctx, "u")
	is.True(errors.Is(err, ErrLimitsUnknown)) // within the back-off: not read again
	clock.Advance(time.Second)
	m, err := l.For(ctx, "u")
	is.NoErr(err)
	is.Equal(m, FromUSD(100)) // after the back-off, read
}
