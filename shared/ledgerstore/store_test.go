package ledgerstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/devstack/stacktest"
	"github.com/assetgen/assetgen/shared/ledger"
)

func manifest(rows, variants int) *ledger.Manifest {
	m := &ledger.Manifest{Schema: 1, BatchID: batch.NewID(), RunMode: ledger.DryRun, CreatedAt: time.Now().UTC()}
	for i := range rows {
		m.Rows = append(m.Rows, ledger.ManifestRow{Index: i, Prompt: fmt.Sprint("p", i), Variants: variants, AspectRatio: "1:1"})
	}
	return m
}

func TestManifestIsCreatedOnce(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Ledger
	ctx := context.Background()
	m := manifest(2, 1)
	is.NoErr(store.CreateManifest(ctx, m))                             // first create
	is.True(errors.Is(store.CreateManifest(ctx, m), ledger.ErrExists)) // second create refused
	got, err := store.Manifest(ctx, m.BatchID)
	is.NoErr(err)
	is.Equal(got.BatchID, m.BatchID)
	_, err = store.Manifest(ctx, batch.NewID())
	is.True(errors.Is(err, ledger.ErrNotFound)) // unknown batch
}

// Concurrent compare-and-swap updates lose nothing: every one lands exactly once.
func TestUpdateRowLosesNoUpdate(t *testing.T) {
	is := is.New(t)
	faults := devstack.NewFaults(1)
	store := stacktest.Open(t, faults).Ledger
	ctx := context.Background()
	m := manifest(1, 1)
	is.NoErr(store.CreateManifest(ctx, m))

	const writers = 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			_, err := store.UpdateRow(ctx, m, 0, func(r ledger.Row) (ledger.Row, error) {
				r = r.Clone()
				r.Attempts++
				r.History = append(r.History, ledger.Change{Actor: fmt.Sprint("writer-", w)})
				return r, nil
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		is.NoErr(err) // every writer got through
	}
	r, gen, err := store.ReadRow(ctx, m, 0)
	is.NoErr(err)
	is.True(gen > 0)
	is.Equal(r.Attempts, writers)          // no lost update
	is.Equal(len(r.History), writers)      // every writer's entry is there
	is.True(faults.Counts().Status412 > 0) // the writers did race
}

func TestUpdateRowSkipsNoChange(t *testing.T) {
	is := is.New(t)
	faults := devstack.NewFaults(1)
	store := stacktest.Open(t, faults).Ledger
	ctx := context.Background()
	m := manifest(1, 1)
	is.NoErr(store.CreateManifest(ctx, m))
	before := faults.Counts().Writes
	r, err := store.UpdateRow(ctx, m, 0, func(r ledger.Row) (ledger.Row, error) { return r, ledger.ErrNoChange })
	is.NoErr(err)
	is.Equal(r.Status, ledger.Queued)        // the unwritten row reads as submitted
	is.Equal(faults.Counts().Writes, before) // nothing written
	gens, err := store.RowGenerations(ctx, m.BatchID)
	is.NoErr(err)
	is.Equal(len(gens), 0) // no row object exists yet
}

func TestPutImageIsCreateOnce(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Ledger
	ctx := context.Background()
	name := ledger.ImageObject(batch.NewID(), 0, 1, ".png")
	created, err := store.PutImage(ctx, name, "image/png", []byte("first"))
	is.NoErr(err)
	is.True(created) // the first write creates
	created, err = store.PutImage(ctx, name, "image/png", []byte("second"))
	is.NoErr(err)
	is.True(!created) // the second finds it there
	b, err := store.ReadObject(ctx, name)
	is.NoErr(err)
	is.True(bytes.Equal(b, []byte("first"))) // the first write wins
}

func TestStoredImagesAndDelete(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Ledger
	ctx := context.Background()
	m := manifest(2, 3)
	is.NoErr(store.CreateManifest(ctx, m))
	for _, v := range []int{0, 2} {
		_, err := store.PutImage(ctx, ledger.ImageObject(m.BatchID, 1, v, ".png"), "image/png", []byte{1})
		is.NoErr(err)
	}
	got, err := store.StoredImages(ctx, m.BatchID, 1)
	is.NoErr(err)
	is.Equal(len(got), 2)                                         // two stored variants
	is.Equal(got[2], ledger.ImageObject(m.BatchID, 1, 2, ".png")) // by variant
	none, err := store.StoredImages(ctx, m.BatchID, 0)
	is.NoErr(err)
	is.Equal(len(none), 0) // other rows are not mixed in

	is.NoErr(store.DeleteBatch(ctx, m.BatchID))
	_, err = store.Manifest(ctx, m.BatchID)
	is.True(errors.Is(err, ledger.ErrNotFound)) // rollback removes the manifest
	got, err = store.StoredImages(ctx, m.BatchID, 1)
	is.NoErr(err)
	is.Equal(len(got), 0) // and the images
}

func TestStateIsCreatedOnce(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Ledger
	ctx := context.Background()
	id := batch.NewID()
	var wins sync.WaitGroup
	results := make(chan bool, 10)
	for i := range 10 {
		wins.Go(func() {
			created, err := store.CreateState(ctx, ledger.Final{BatchID: id, Summary: ledger.Summary{CostUSD: float64(i)}})
			if err != nil {
				t.Error(err)
			}
			results <- created
		})
	}
	wins.Wait()
	close(results)
	n := 0
	for created := range results {
		if created {
			n++
		}
	}
	is.Equal(n, 1) // exactly one creator announces the batch finished
	_, err := store.State(ctx, batch.NewID())
	is.True(errors.Is(err, ledger.ErrNotFound)) // a running batch has no state.json
}

// A manifest or state.json whose write landed but whose answer was lost is
// this call's: the manifest is not taken for an earlier submit's (which the
// rollback would then spare), the state not for another finisher's.
func TestCreatesWhoseAnswerIsLostAreWon(t *testing.T) {
	is := is.New(t)
	faults := devstack.NewFaults(1)
	store := stacktest.Open(t, faults).Ledger
	ctx := context.Background()
	m := manifest(1, 1)
	faults.LoseAnswers(ledger.ManifestObject(m.BatchID), 1)
	is.NoErr(store.CreateManifest(ctx, m)) // not ErrExists
	faults.LoseAnswers(ledger.StateObject(m.BatchID), 1)
	created, err := store.CreateState(ctx, ledger.Final{BatchID: m.BatchID})
	is.NoErr(err)
	is.True(created)                                                   // this call finished the batch
	is.Equal(faults.Counts().LostAnswers, int64(2))                    // both answers were lost
	is.True(errors.Is(store.CreateManifest(ctx, m), ledger.ErrExists)) // a second submit still finds it
}
