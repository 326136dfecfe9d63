package ledgerstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/cloud"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/devstack/stacktest"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/ledgerstore"
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
	_, gen, err := store.ReadRow(ctx, m, 0)
	is.NoErr(err)
	is.Equal(gen, int64(0)) // no row object exists yet
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

func TestOpenObjectStreamsAnImage(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Ledger
	ctx := context.Background()
	name := ledger.ImageObject(batch.NewID(), 0, 0, ".jpg")
	_, err := store.PutImage(ctx, name, "image/jpeg", []byte("jpeg bytes"))
	is.NoErr(err)
	r, a, err := store.OpenObject(ctx, name)
	is.NoErr(err) // opened
	got, err := io.ReadAll(r)
	is.NoErr(err)
	is.NoErr(r.Close())
	is.Equal(string(got), "jpeg bytes")   // the stored bytes
	is.Equal(a.ContentType, "image/jpeg") // with the stored content type
	_, _, err = store.OpenObject(ctx, ledger.ImageObject(batch.NewID(), 0, 0, ".png"))
	is.True(errors.Is(err, ledger.ErrNotFound)) // a missing image is the ledger's not found
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

// accepted writes a batch's accepted state as a submit did at m.CreatedAt.
func accepted(t *testing.T, c *cloud.Clients, m *ledger.Manifest) ledger.State {
	t.Helper()
	st, err := ledger.AcceptBatch(nil, m, ledger.Op{Actor: "test", Now: m.CreatedAt})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := bucket.Update(context.Background(), c.Bucket, ledger.StateObject(m.BatchID), func(ledger.State, bool) (ledger.State, error) { return st, nil }); err != nil {
		t.Fatal(err)
	}
	if err := c.Ledger.KeepSnapshot(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestBatchFinishesOnce(t *testing.T) {
	is := is.New(t)
	c := stacktest.Open(t, nil)
	store := c.Ledger
	ctx := context.Background()
	m := manifest(2, 1)
	m.CreatedAt = m.CreatedAt.Add(-time.Minute)
	accepted(t, c, m)
	var wins sync.WaitGroup
	results := make(chan bool, 10)
	for range 10 {
		wins.Go(func() {
			rows := []ledger.Row{{Index: 0, Status: ledger.Done}, {Index: 1, Status: ledger.Failed}}
			_, finished, err := store.Advance(ctx, m.BatchID, ledger.Op{}, func(cur *ledger.State, op ledger.Op) (ledger.State, error) {
				return ledger.FinishBatch(cur, m.BatchID, rows, op)
			})
			if err != nil {
				t.Error(err)
			}
			results <- finished
		})
	}
	wins.Wait()
	close(results)
	n := 0
	for finished := range results {
		if finished {
			n++
		}
	}
	is.Equal(n, 1) // exactly one caller announces the batch finished
	names, err := store.Snapshots(ctx, m.BatchID)
	is.NoErr(err)
	is.Equal(len(names), 1) // accepted; the final snapshot is completion's, nothing for the losers
	final, err := store.State(ctx, m.BatchID)
	is.NoErr(err)
	is.Equal(len(final.Rows), 2)
	_, err = store.State(ctx, batch.NewID())
	is.True(errors.Is(err, ledger.ErrNotFound)) // no state.json at all
}

// state.json names the newest snapshot, and every snapshot is the state it
// names; a snapshot lost with its writer is written by the next change; two
// changes are written at least StateGap apart.
func TestSnapshotsFollowStateJSON(t *testing.T) {
	is := is.New(t)
	faults := devstack.NewFaults(1)
	c := stacktest.Open(t, faults)
	store := c.Ledger
	ctx := context.Background()
	m := manifest(2, 1)
	m.CreatedAt = m.CreatedAt.Add(-time.Minute)
	acc := accepted(t, c, m)
	// The writer of "started" dies after state.json, before its snapshot.
	started, err := ledger.StartBatch(&acc, m.BatchID, 1, ledger.Op{Actor: "generate/x", Now: time.Now().UTC()})
	is.NoErr(err)
	_, _, err = bucket.Update(ctx, c.Bucket, ledger.StateObject(m.BatchID), func(ledger.State, bool) (ledger.State, error) { return started, nil })
	is.NoErr(err)
	finished, changed, err := store.Advance(ctx, m.BatchID, ledger.Op{}, func(cur *ledger.State, op ledger.Op) (ledger.State, error) {
		return ledger.FinishBatch(cur, m.BatchID, []ledger.Row{{Index: 0, Status: ledger.Done}, {Index: 1, Status: ledger.Done}}, op)
	})
	is.NoErr(err)
	is.True(changed)
	is.Equal(finished.Previous, started.Snapshot)
	is.True(!finished.At.Before(started.At.Add(ledgerstore.StateGap))) // it waited for its turn

	names, err := store.Snapshots(ctx, m.BatchID)
	is.NoErr(err)
	is.Equal(names, []string{acc.Snapshot, started.Snapshot}) // oldest first, the lost one repaired; the final one is not Advance's
	// Completion keeps the final snapshot, with what the effects did, once.
	settled := ledger.Settlement{At: time.Now().UTC(), ChargedUSD: 0.039}
	created, err := store.KeepFinal(ctx, finished, settled)
	is.NoErr(err)
	is.True(created)
	created, err = store.KeepFinal(ctx, finished, ledger.Settlement{})
	is.NoErr(err)
	is.True(!created) // the first settlement stands
	names, err = store.Snapshots(ctx, m.BatchID)
	is.NoErr(err)
	is.Equal(names, []string{acc.Snapshot, started.Snapshot, finished.Snapshot})
	final, err := store.Snapshot(ctx, m.BatchID, finished.Snapshot)
	is.NoErr(err)
	is.Equal(final.Settled.ChargedUSD, 0.039)
	_, err = store.KeepFinal(ctx, started, settled)
	is.True(err != nil) // only a final state has a settlement
	for i, want := range []ledger.Event{ledger.Accepted, ledger.Started, ledger.Finished} {
		st, err := store.Snapshot(ctx, m.BatchID, names[i])
		is.NoErr(err)
		is.Equal(st.Event, want)
		is.Equal(st.Snapshot, names[i]) // each copy names itself
	}
	cur, err := store.Current(ctx, m.BatchID)
	is.NoErr(err)
	is.Equal(cur.Snapshot, finished.Snapshot) // state.json points at the newest

	// Lost answers make no second state and no second snapshot.
	for _, lose := range []func(id string) string{ledger.StateObject, ledger.SnapshotPrefix} {
		m := manifest(1, 1)
		faults.LoseAnswers(lose(m.BatchID), 1)
		_, changed, err := store.Advance(ctx, m.BatchID, ledger.Op{}, func(cur *ledger.State, op ledger.Op) (ledger.State, error) {
			return ledger.AcceptBatch(cur, m, op)
		})
		is.NoErr(err)
		is.True(changed) // the landed write is this call's
		names, err = store.Snapshots(ctx, m.BatchID)
		is.NoErr(err)
		is.Equal(len(names), 1)
	}
	is.Equal(faults.Counts().LostAnswers, int64(2)) // both answers were lost
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
	_, finished, err := store.Advance(ctx, m.BatchID, ledger.Op{}, func(cur *ledger.State, op ledger.Op) (ledger.State, error) {
		return ledger.FinishBatch(cur, m.BatchID, nil, op)
	})
	is.NoErr(err)
	is.True(finished)                                                  // this call finished the batch
	is.Equal(faults.Counts().LostAnswers, int64(2))                    // both answers were lost
	is.True(errors.Is(store.CreateManifest(ctx, m), ledger.ErrExists)) // a second submit still finds it
}

// A retried submit's first state loses to the one there, and leaves no
// snapshot of its own behind.
func TestBeginTwiceKeepsTheFirstState(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Ledger
	ctx := context.Background()
	m := manifest(1, 1)
	first, err := ledger.AcceptBatch(nil, m, ledger.Op{Actor: "first", Now: m.CreatedAt})
	is.NoErr(err)
	created, err := store.Begin(ctx, first)
	is.NoErr(err)
	is.True(created)
	retry, err := ledger.AcceptBatch(nil, m, ledger.Op{Actor: "retry", Now: m.CreatedAt.Add(time.Second)})
	is.NoErr(err)
	created, err = store.Begin(ctx, retry)
	is.NoErr(err)
	is.True(!created) // the first state stands
	cur, err := store.Current(ctx, m.BatchID)
	is.NoErr(err)
	is.Equal(cur.Actor, "first")
	names, err := store.Snapshots(ctx, m.BatchID)
	is.NoErr(err)
	is.Equal(names, []string{first.Snapshot}) // the retry's snapshot was removed
}
