package bucket_test

import (
	"context"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/devstack"
)

// An update from the state its caller holds writes without reading: one
// request, conditioned on the held generation, for an existing object and for
// one that does not exist yet.
func TestUpdateFromWritesWithoutReading(t *testing.T) {
	is := is.New(t)
	faults := devstack.NewFaults(1)
	b := open(t, faults, fast)
	ctx := context.Background()

	first, res, err := bucket.UpdateFrom(ctx, b, "x/held.json", bucket.Stored[counter]{}, increment("a"))
	is.NoErr(err)
	is.Equal(res.Outcome, bucket.Won) // created from "no object"
	is.True(res.Generation > 0)
	second, res2, err := bucket.UpdateFrom(ctx, b, "x/held.json", bucket.Stored[counter]{Value: first, Generation: res.Generation}, increment("b"))
	is.NoErr(err)
	is.Equal(res2.Outcome, bucket.Won)
	is.Equal(second.N, 2)

	n := faults.Counts()
	is.Equal(n.Reads, int64(0))  // neither write read the object
	is.Equal(n.Writes, int64(2)) // one request each
	var c counter
	gen, err := b.ReadJSON(ctx, "x/held.json", &c)
	is.NoErr(err)
	is.Equal(c, second)            // what is stored is what was returned
	is.Equal(gen, res2.Generation) // at the generation reported
}

// A held state that another writer has since replaced is not written over:
// the write meets the newer generation, and the update reads it and applies
// fn again, keeping the other writer's change. A held "no object" that
// another writer created meets its object the same way.
func TestUpdateFromAnOutdatedStateRereads(t *testing.T) {
	is := is.New(t)
	faults := devstack.NewFaults(1)
	b := open(t, faults, fast)
	ctx := context.Background()

	held, res, err := bucket.Update(ctx, b, "x/stale.json", increment("holder"))
	is.NoErr(err)
	_, _, err = bucket.Update(ctx, b, "x/stale.json", increment("other"))
	is.NoErr(err)
	calls := 0
	got, res2, err := bucket.UpdateFrom(ctx, b, "x/stale.json", bucket.Stored[counter]{Value: held, Generation: res.Generation}, func(c counter, exists bool) (counter, error) {
		calls++
		return increment("holder again")(c, exists)
	})
	is.NoErr(err)
	is.Equal(res2.Outcome, bucket.Won)
	is.Equal(calls, 2)                                                // the held state, then the one read
	is.Equal(got.Agents, []string{"holder", "other", "holder again"}) // the other writer's change kept

	_, _, err = bucket.Update(ctx, b, "x/created.json", increment("creator"))
	is.NoErr(err)
	got, _, err = bucket.UpdateFrom(ctx, b, "x/created.json", bucket.Stored[counter]{}, increment("late"))
	is.NoErr(err)
	is.Equal(got.Agents, []string{"creator", "late"}) // the creator's object kept
	is.Equal(faults.Counts().Status412, int64(2))     // each held state met a newer object once
}

// An update from a held state whose write lands but whose answer is lost is
// applied once: the client's retry meets the write itself (412), which the
// adapter recognises as its own instead of re-reading and applying fn again.
func TestUpdateFromWhoseAnswerIsLostAppliesOnce(t *testing.T) {
	is := is.New(t)
	faults := devstack.NewFaults(1)
	b := open(t, faults, fast)
	ctx := context.Background()
	held, res, err := bucket.Update(ctx, b, "x/lost.json", increment("setup"))
	is.NoErr(err)

	faults.LoseAnswers("x/lost.json", 1)
	calls := 0
	got, res2, err := bucket.UpdateFrom(ctx, b, "x/lost.json", bucket.Stored[counter]{Value: held, Generation: res.Generation}, func(c counter, exists bool) (counter, error) {
		calls++
		return increment("me")(c, exists)
	})
	is.NoErr(err)
	is.Equal(res2.Outcome, bucket.Won)              // the landed write is this call's
	is.Equal(calls, 1)                              // fn applied once
	is.Equal(faults.Counts().LostAnswers, int64(1)) // the answer was lost
	var c counter
	gen, err := b.ReadJSON(ctx, "x/lost.json", &c)
	is.NoErr(err)
	is.Equal(c.N, 2) // applied once, not twice
	is.Equal(got, c)
	is.Equal(gen, res2.Generation)
}
