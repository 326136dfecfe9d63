package bucket_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/googleapis/gax-go/v2"
	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/devstack/stacktest"
	"github.com/assetgen/assetgen/shared/metrics"
	"github.com/assetgen/assetgen/shared/problem"
)

// fast is the production policy with short pauses, so failing calls give up
// quickly.
var fast = bucket.Policy{
	MaxAttempts: 3,
	Backoff:     gax.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, Multiplier: 2},
	CASAttempts: 20,
	CASBackoff:  gax.Backoff{Initial: time.Millisecond, Max: 20 * time.Millisecond, Multiplier: 1.6},
}

// open starts an emulator behind faults and returns the adapter over its bucket.
func open(t *testing.T, faults *devstack.Faults, p bucket.Policy) *bucket.Bucket {
	t.Helper()
	c := stacktest.Open(t, faults)
	return bucket.NewClient(c.Storage, p).Bucket(stacktest.TestBucket)
}

type counter struct {
	N      int      `json:"n"`
	Agents []string `json:"agents,omitempty"`
}

func TestReadJSONReturnsGenerationOrNotFound(t *testing.T) {
	is := is.New(t)
	b := open(t, nil, fast)
	ctx := context.Background()
	var c counter
	_, err := b.ReadJSON(ctx, "x/missing.json", &c)
	is.True(errors.Is(err, bucket.ErrNotFound)) // a missing object is ErrNotFound
	var be *bucket.Error
	is.True(!errors.As(err, &be)) // and not a failure

	res, err := b.CreateJSON(ctx, "x/c.json", counter{N: 7})
	is.NoErr(err)
	is.Equal(res.Outcome, bucket.Won) // created
	gen, err := b.ReadJSON(ctx, "x/c.json", &c)
	is.NoErr(err)
	is.Equal(c.N, 7)              // content
	is.Equal(gen, res.Generation) // the generation written is the one read

	is.NoErr(b.ReadJSONAt(ctx, "x/c.json", gen, &c))
	is.Equal(c.N, 7) // the listed generation reads as it was
	_, err = b.Put(ctx, "x/c.json", []byte(`{"n":8}`), bucket.Meta{ContentType: "application/json"})
	is.NoErr(err)
	err = b.ReadJSONAt(ctx, "x/c.json", gen, &c)
	is.True(errors.Is(err, bucket.ErrNotFound)) // without versioning an overwritten generation is gone
}

func TestCreateOnceHasOneWinner(t *testing.T) {
	is := is.New(t)
	b := open(t, nil, fast)
	ctx := context.Background()
	results := make(chan bucket.Outcome, 10)
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			res, err := b.CreateJSON(ctx, "x/marker.json", counter{N: i})
			if err != nil {
				t.Error(err)
			}
			results <- res.Outcome
		})
	}
	wg.Wait()
	close(results)
	count := map[bucket.Outcome]int{}
	for o := range results {
		count[o]++
	}
	is.Equal(count[bucket.Won], 1)  // exactly one creator performs the effect
	is.Equal(count[bucket.Lost], 9) // the others see it done
}

// A create-once write that lands but whose answer is lost: the client retries,
// meets its own object and gets 412. That is this call's win, not a lost race.
func TestCreateWhoseAnswerIsLostIsWon(t *testing.T) {
	is := is.New(t)
	faults := devstack.NewFaults(1)
	b := open(t, faults, fast)
	ctx := context.Background()
	faults.LoseAnswers("x/marker.json", 1)
	res, err := b.CreateJSON(ctx, "x/marker.json", counter{N: 1})
	is.NoErr(err)
	is.Equal(res.Outcome, bucket.Won)               // the write that landed is this call's
	is.Equal(faults.Counts().LostAnswers, int64(1)) // its first answer was lost
	is.True(faults.Counts().Status412 >= 1)         // and the retry met the object
	a, err := b.Stat(ctx, "x/marker.json")
	is.NoErr(err)
	is.Equal(res.Generation, a.Generation)       // the generation is the stored one
	is.True(a.Metadata[bucket.WriteIDKey] != "") // tagged with its write id

	// Another writer, same name, whose first attempt fails before landing:
	// its retry meets the object above and reads someone else's id there.
	faults.RejectWrites("x/marker.json", 1, http.StatusServiceUnavailable)
	res, err = b.CreateJSON(ctx, "x/marker.json", counter{N: 2})
	is.NoErr(err)
	is.Equal(res.Outcome, bucket.Lost) // a retried write that met another's object lost
	var c counter
	_, err = b.ReadJSON(ctx, "x/marker.json", &c)
	is.NoErr(err)
	is.Equal(c.N, 1) // the first write stands
}

func increment(agent string) func(counter, bool) (counter, error) {
	return func(c counter, _ bool) (counter, error) {
		c.N++
		c.Agents = append(append([]string(nil), c.Agents...), agent)
		return c, nil
	}
}

// A compare-and-swap write whose answer is lost is applied once: the adapter
// reports it won instead of re-reading, finding "someone's" change, and
// applying the function again on top of its own write.
func TestUpdateWhoseAnswerIsLostAppliesOnce(t *testing.T) {
	is := is.New(t)
	faults := devstack.NewFaults(1)
	b := open(t, faults, fast)
	ctx := context.Background()
	for i, name := range []string{"x/new.json", "x/old.json"} {
		if i == 1 {
			_, _, err := bucket.Update(ctx, b, name, increment("setup"))
			is.NoErr(err) // an existing object: the write is a GenerationMatch
		}
		faults.LoseAnswers(name, 1)
		next, res, err := bucket.Update(ctx, b, name, increment("me"))
		is.NoErr(err)
		is.Equal(res.Outcome, bucket.Won) // the landed write is this call's
		var c counter
		gen, err := b.ReadJSON(ctx, name, &c)
		is.NoErr(err)
		is.Equal(c.N, i+1)            // applied once, not twice
		is.Equal(next.N, c.N)         // the value returned is the one stored
		is.Equal(res.Generation, gen) // at the generation reported
	}
	is.Equal(faults.Counts().LostAnswers, int64(2)) // both answers were lost
}

// Concurrent compare-and-swap updates lose nothing: every one lands exactly once.
func TestUpdateLosesNoUpdate(t *testing.T) {
	is := is.New(t)
	faults := devstack.NewFaults(1)
	b := open(t, faults, bucket.DefaultPolicy())
	ctx := context.Background()
	const writers = 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			_, res, err := bucket.Update(ctx, b, "x/counter.json", increment(fmt.Sprint("writer-", w)))
			if err != nil || res.Outcome != bucket.Won {
				t.Error(res.Outcome, err)
			}
		})
	}
	wg.Wait()
	var c counter
	_, err := b.ReadJSON(ctx, "x/counter.json", &c)
	is.NoErr(err)
	is.Equal(c.N, writers)                 // no lost update
	is.Equal(len(c.Agents), writers)       // every writer's entry is there
	is.True(faults.Counts().Status412 > 0) // the writers did race
}

func TestUpdateNoChangeWritesNothing(t *testing.T) {
	is := is.New(t)
	faults := devstack.NewFaults(1)
	b := open(t, faults, fast)
	ctx := context.Background()
	got, res, err := bucket.Update(ctx, b, "x/none.json", func(c counter, exists bool) (counter, error) {
		is.True(!exists) // nothing there yet
		return counter{N: 42}, bucket.ErrNoChange
	})
	is.NoErr(err)
	is.Equal(res.Outcome, bucket.Unchanged) // nothing to do
	is.Equal(got.N, 42)                     // the state fn judged
	is.Equal(faults.Counts().Writes, int64(0))
}

// An update that keeps losing races gives up with ErrContended, a write failure.
func TestUpdateGivesUpWhenContended(t *testing.T) {
	is := is.New(t)
	p := fast
	p.CASAttempts = 3
	b := open(t, nil, p)
	ctx := context.Background()
	calls := 0
	_, _, err := bucket.Update(ctx, b, "x/hot.json", func(c counter, _ bool) (counter, error) {
		calls++
		// Another writer gets in between every read and write.
		_, err := b.Put(ctx, "x/hot.json", fmt.Appendf(nil, `{"n":%d}`, 100+calls), bucket.Meta{ContentType: "application/json"})
		is.NoErr(err)
		c.N++
		return c, nil
	})
	is.True(errors.Is(err, bucket.ErrContended))          // gave up
	is.Equal(calls, 3)                                    // after its bound
	is.Equal(problem.CodeOf(err), problem.GCSWriteFailed) // a write failure for clients
}

// Failures are classified once: a read that fails is STORAGE_UNAVAILABLE, a
// write GCS_WRITE_FAILED; the retries before giving up are counted.
func TestFailuresCarryTheirCode(t *testing.T) {
	is := is.New(t)
	faults := devstack.NewFaults(1)
	b := open(t, faults, fast)
	ctx := context.Background()
	_, err := b.CreateJSON(ctx, "x/c.json", counter{N: 1})
	is.NoErr(err)
	before := retries("503")
	faults.SetFailures(1, http.StatusServiceUnavailable)

	var c counter
	_, err = b.ReadJSON(ctx, "x/c.json", &c)
	var be *bucket.Error
	is.True(errors.As(err, &be))                                 // a storage failure
	is.Equal(be.Op, bucket.Read)                                 // of a read
	is.Equal(problem.CodeOf(err), problem.StorageUnavailable)    // answered STORAGE_UNAVAILABLE
	is.Equal(retries("503")-before, float64(fast.MaxAttempts-1)) // every retry counted

	for _, list := range b.List(ctx, bucket.Query{Prefix: "x/"}) {
		err = list
	}
	is.Equal(problem.CodeOf(err), problem.StorageUnavailable) // a failed listing is a failed read

	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = b.CreateJSON(wctx, "x/d.json", counter{N: 1})
	is.True(errors.As(err, &be))                          // a storage failure
	is.Equal(be.Op, bucket.Write)                         // of a write
	is.Equal(problem.CodeOf(err), problem.GCSWriteFailed) // answered GCS_WRITE_FAILED
}

func retries(status string) float64 {
	families, _ := metrics.Registry.Gather()
	for _, f := range families {
		if f.GetName() != "assetgen_gcs_retries_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "status" && l.GetValue() == status {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestListFiltersAndRollsUp(t *testing.T) {
	is := is.New(t)
	b := open(t, nil, fast)
	ctx := context.Background()
	for _, name := range []string{"a/1/x", "a/1/y", "a/2/x", "a/3/x", "a/top", "b/1"} {
		_, err := b.Create(ctx, name, []byte(name), bucket.Meta{ContentType: "text/plain"})
		is.NoErr(err)
	}
	names := func(q bucket.Query, limit int) []string {
		var out []string
		for a, err := range b.List(ctx, q) {
			is.NoErr(err)
			out = append(out, a.Name+a.Prefix)
			if len(out) == limit {
				break
			}
		}
		return out
	}
	is.Equal(names(bucket.Query{Prefix: "a/"}, 0), []string{"a/1/x", "a/1/y", "a/2/x", "a/3/x", "a/top"}) // by prefix, in order
	rolled := names(bucket.Query{Prefix: "a/", Delimiter: "/"}, 0)
	slices.Sort(rolled)
	is.Equal(rolled, []string{"a/1/", "a/2/", "a/3/", "a/top"})                                                            // rolled up
	is.Equal(names(bucket.Query{Prefix: "a/", Delimiter: "/", StartOffset: "a/2", EndOffset: "a/3"}, 0), []string{"a/2/"}) // bounded
	is.Equal(names(bucket.Query{Prefix: "a/"}, 2), []string{"a/1/x", "a/1/y"})                                             // stops when the loop does
	for a, err := range b.List(ctx, bucket.Query{Prefix: "b/"}) {
		is.NoErr(err)
		is.True(a.Generation > 0) // listings carry generations
		is.Equal(a.Size, int64(3))
	}
}

// A listing that asks for metadata returns each object's custom metadata
// (never the write id's key overwritten), and a page size makes one small
// listing call when the loop stops within it.
func TestListReturnsMetadataInPagesOfTheAskedSize(t *testing.T) {
	is := is.New(t)
	faults := devstack.NewFaults(1)
	b := open(t, faults, fast)
	ctx := context.Background()
	for i := range 5 {
		name := fmt.Sprintf("m/%d", i)
		_, err := b.Create(ctx, name, nil, bucket.Meta{ContentType: "text/plain",
			Metadata: map[string]string{"k": name, bucket.WriteIDKey: "mine"}})
		is.NoErr(err)
	}
	faults.Reset()
	var got []string
	for a, err := range b.List(ctx, bucket.Query{Prefix: "m/", StartOffset: "m/1", Metadata: true, PageSize: 3}) {
		is.NoErr(err)
		is.Equal(a.Metadata["k"], a.Name)                // the object's own metadata
		is.True(a.Metadata[bucket.WriteIDKey] != "mine") // the write id is the adapter's
		got = append(got, a.Name)
		if len(got) == 3 {
			break
		}
	}
	is.Equal(got, []string{"m/1", "m/2", "m/3"}) // from the offset, in order
	is.Equal(faults.Counts().Lists, int64(1))    // one listing call of three names
}

func TestDeletesAreGuarded(t *testing.T) {
	is := is.New(t)
	b := open(t, nil, fast)
	ctx := context.Background()
	first, err := b.CreateJSON(ctx, "x/rec.json", counter{N: 1})
	is.NoErr(err)
	_, _, err = bucket.Update(ctx, b, "x/rec.json", increment("rewrite"))
	is.NoErr(err)
	is.NoErr(b.DeleteAt(ctx, "x/rec.json", first.Generation))
	ok, err := b.Exists(ctx, "x/rec.json")
	is.NoErr(err)
	is.True(ok) // a rewritten object survives a delete of its old generation

	is.NoErr(bucket.DeleteIf(ctx, b, "x/rec.json", func(c counter) bool { return c.N > 5 }))
	ok, _ = b.Exists(ctx, "x/rec.json")
	is.True(ok) // kept when the predicate says so
	is.NoErr(bucket.DeleteIf(ctx, b, "x/rec.json", func(c counter) bool { return c.N == 2 }))
	ok, _ = b.Exists(ctx, "x/rec.json")
	is.True(!ok) // deleted when it says so

	is.NoErr(b.Delete(ctx, "x/rec.json"))                                               // deleting what is gone is fine
	is.NoErr(bucket.DeleteIf(ctx, b, "x/rec.json", func(counter) bool { return true })) // so is a guarded delete
}

func TestReadLimited(t *testing.T) {
	is := is.New(t)
	b := open(t, nil, fast)
	ctx := context.Background()
	_, err := b.Create(ctx, "x/blob", bytes.Repeat([]byte{1}, 100), bucket.Meta{})
	is.NoErr(err)
	data, err := b.ReadLimited(ctx, "x/blob", 100)
	is.NoErr(err)
	is.Equal(len(data), 100) // up to the limit
	_, err = b.ReadLimited(ctx, "x/blob", 99)
	is.True(errors.Is(err, bucket.ErrTooLarge)) // over it
	_, err = b.ReadLimited(ctx, "x/none", 99)
	is.True(errors.Is(err, bucket.ErrNotFound)) // missing
}

func TestSharedObjectsAreTouchedWhenReused(t *testing.T) {
	is := is.New(t)
	b := open(t, nil, fast)
	ctx := context.Background()
	name := "refs/abc123"
	ok, err := b.Touch(ctx, name, time.Hour)
	is.NoErr(err)
	is.True(!ok) // nothing there yet
	res, err := b.Create(ctx, name, []byte{1, 2, 3}, bucket.Meta{ContentType: "image/png", CustomTime: time.Now().UTC()})
	is.NoErr(err)
	is.Equal(res.Outcome, bucket.Won)
	a, err := b.Stat(ctx, name)
	is.NoErr(err)
	is.True(!a.CustomTime.IsZero()) // created with a custom time

	// Last used two hours ago (rewritten, as an old object would be).
	old := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	_, err = b.Put(ctx, name, []byte{1, 2, 3}, bucket.Meta{ContentType: "image/png", CustomTime: old})
	is.NoErr(err)
	ok, err = b.Touch(ctx, name, time.Hour)
	is.NoErr(err)
	is.True(ok)
	a, err = b.Stat(ctx, name)
	is.NoErr(err)
	is.True(a.CustomTime.After(old.Add(time.Hour))) // reused after the interval: kept again
	touched := a.CustomTime

	ok, err = b.Touch(ctx, name, time.Hour)
	is.NoErr(err)
	is.True(ok)
	a, err = b.Stat(ctx, name)
	is.NoErr(err)
	is.Equal(a.CustomTime, touched) // reused within the interval: no write
}
