package devstack_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/devstack/stacktest"
)

// Lost answers are applied by the emulator first: every create-once write
// lands exactly once, though a third of the answers were replaced by a 503 or
// a connection reset, and the client learns it won each of them.
func TestLostAnswersAreAppliedThenLost(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f := devstack.NewFaults(42)
	c := stacktest.Open(t, f)
	ctx := context.Background()
	spec, err := devstack.ParseStorageFaults("lost=0.3")
	is.NoErr(err)
	f.Apply(spec)

	const n = 24
	for i := range n {
		res, err := c.Bucket.CreateJSON(ctx, fmt.Sprintf("lost/%02d.json", i), map[string]int{"i": i})
		is.NoErr(err)                     // the write succeeded in the end
		is.Equal(res.Outcome, bucket.Won) // and the writer knows it was its own
	}
	got := f.Counts()
	f.Apply(devstack.StorageFaults{})
	is.True(got.LostAnswers > 0)          // answers were lost
	is.True(got.Resets > 0)               // some as resets
	is.True(got.Resets < got.LostAnswers) // some as 503s
	is.Equal(got.Rejected, int64(0))      // nothing failed before the emulator
	writes := f.WritesOf("lost/")
	is.Equal(len(writes), n) // every object was written
	for name, w := range writes {
		is.Equal(w, 1) // once
		_ = name
	}
}

// error fails requests before they reach the emulator, with 503 or 429.
func TestErrorShareFailsBeforeTheEmulator(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f := devstack.NewFaults(7)
	c := stacktest.Open(t, f)
	f.Apply(devstack.StorageFaults{Error: 0.25})
	for i := range 6 {
		_, err := c.Bucket.CreateJSON(context.Background(), fmt.Sprintf("err/%02d.json", i), map[string]int{"i": i})
		is.NoErr(err) // retried through
	}
	got := f.Counts()
	is.True(got.Rejected > 0)             // requests were failed
	is.True(got.Status429 > 0)            // some with 429
	is.True(got.Status429 < got.Rejected) // some with 503
	is.Equal(got.LostAnswers, int64(0))   // none was applied and lost
	is.Equal(len(f.WritesOf("err/")), 6)  // every object landed
}

// A held write reaches the emulator only once released: a later write of
// the same prefix overtakes it.
func TestHeldWritesWaitForTheirRelease(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f := devstack.NewFaults(1)
	c := stacktest.Open(t, f)
	ctx := context.Background()
	held, release := f.HoldWrites("held/", 1)
	defer release()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Bucket.CreateJSON(ctx, "held/first.json", map[string]int{"i": 1})
		errc <- err
	}()
	is.Equal(<-held, "held/first.json") // the first write is held
	_, err := c.Bucket.CreateJSON(ctx, "held/second.json", map[string]int{"i": 2})
	is.NoErr(err) // the next one is not
	first, err := c.Bucket.Exists(ctx, "held/first.json")
	is.NoErr(err)
	is.True(!first) // the held write has not landed
	release()
	is.NoErr(<-errc) // released, it lands
	first, err = c.Bucket.Exists(ctx, "held/first.json")
	is.NoErr(err)
	is.True(first)
	is.Equal(f.WritesOf("held/"), map[string]int{"held/first.json": 1, "held/second.json": 1})
}
