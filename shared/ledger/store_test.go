package ledger_test

import (
	"bytes"
	"cloud.google.com/go/storage"
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
	m := &ledger.Manifest{Schema: 1, BatchID: batch.NewID(), RunMode: batch.DryRun, CreatedAt: time.Now().UTC()}
	for i := range rows {
		m.Rows = append(m.Rows, ledger.ManifestRow{Index: i, Prompt: fmt.Sprint("p", i), Variants: variants, AspectRatio: "1:1"})
	}
	return m
}

func TestManifestIsCreatedOnce(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Store
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
	store := stacktest.Open(t, faults).Store
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
	store := stacktest.Open(t, faults).Store
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

func TestPutObjectIsCreateOnce(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Store
	ctx := context.Background()
	name := ledger.ImageObject(batch.NewID(), 0, 1, ".png")
	created, err := store.PutObject(ctx, name, "image/png", []byte("first"))
	is.NoErr(err)
	is.True(created) // the first write creates
	created, err = store.PutObject(ctx, name, "image/png", []byte("second"))
	is.NoErr(err)
	is.True(!created) // the second finds it there
	b, err := store.ReadObject(ctx, name)
	is.NoErr(err)
	is.True(bytes.Equal(b, []byte("first"))) // the first write wins
}

func TestStoredImagesAndDelete(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Store
	ctx := context.Background()
	m := manifest(2, 3)
	is.NoErr(store.CreateManifest(ctx, m))
	for _, v := range []int{0, 2} {
		_, err := store.PutObject(ctx, ledger.ImageObject(m.BatchID, 1, v, ".png"), "image/png", []byte{1})
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

func TestCreateMarkerOnce(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Store
	ctx := context.Background()
	name := ledger.StateObject(batch.NewID())
	var wins sync.WaitGroup
	results := make(chan bool, 10)
	for range 10 {
		wins.Go(func() {
			created, err := store.CreateMarker(ctx, name, map[string]int{"x": 1})
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
	is.Equal(n, 1) // exactly one creator performs the effect
}

func TestSharedObjectsAreTouchedWhenReused(t *testing.T) {
	is := is.New(t)
	c := stacktest.Open(t, nil)
	ctx := context.Background()
	name := ledger.RefObject("abc123")
	ok, err := c.Store.Touch(ctx, name, time.Hour)
	is.NoErr(err)
	is.True(!ok) // nothing there yet
	created, err := c.Store.PutShared(ctx, name, "image/png", []byte{1, 2, 3})
	is.NoErr(err)
	is.True(created)
	obj := c.Storage.Bucket(stacktest.TestBucket).Object(name)
	attrs, err := obj.Attrs(ctx)
	is.NoErr(err)
	is.True(!attrs.CustomTime.IsZero()) // created with a custom time

	// Last used two hours ago (written directly, as an old object would be).
	old := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	_, err = obj.Update(ctx, storage.ObjectAttrsToUpdate{CustomTime: old})
	is.NoErr(err)
	ok, err = c.Store.Touch(ctx, name, time.Hour)
	is.NoErr(err)
	is.True(ok)
	attrs, err = obj.Attrs(ctx)
	is.NoErr(err)
	is.True(attrs.CustomTime.After(old.Add(time.Hour))) // reused after the interval: kept again
	touched := attrs.CustomTime

	ok, err = c.Store.Touch(ctx, name, time.Hour)
	is.NoErr(err)
	is.True(ok)
	attrs, err = obj.Attrs(ctx)
	is.NoErr(err)
	is.Equal(attrs.CustomTime, touched) // reused within the interval: no write
}
