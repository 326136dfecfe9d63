package ledgerstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/devstack/stacktest"
	"github.com/assetgen/assetgen/shared/ledger"
)

// A row task's start reads the manifest and its row: an unwritten row reads
// as submitted at generation 0, a written one at its generation; a batch
// without a manifest and a row the batch does not have are told apart.
func TestManifestAndRow(t *testing.T) {
	is := is.New(t)
	store := stacktest.Open(t, nil).Ledger
	ctx := context.Background()
	m := manifest(2, 3)
	is.NoErr(store.CreateManifest(ctx, m))

	got, cur, err := store.ManifestAndRow(ctx, m.BatchID, 1)
	is.NoErr(err)
	is.Equal(got.BatchID, m.BatchID)
	is.Equal(cur.Generation, int64(0))          // no row object yet
	is.Equal(cur.Row, ledger.NewRow(m.Rows[1])) // the row as submitted

	written, err := store.UpdateRow(ctx, m, 1, func(r ledger.Row) (ledger.Row, error) {
		r = r.Clone()
		r.Attempts = 7
		return r, nil
	})
	is.NoErr(err)
	_, cur, err = store.ManifestAndRow(ctx, m.BatchID, 1)
	is.NoErr(err)
	_, gen, err := store.ReadRow(ctx, m, 1)
	is.NoErr(err)
	is.Equal(cur.Generation, gen) // the row object's generation
	is.Equal(cur.Row.Attempts, written.Attempts)

	got, _, err = store.ManifestAndRow(ctx, batch.NewID(), 0)
	is.True(errors.Is(err, ledger.ErrNotFound)) // no such batch
	is.True(got == nil)                         // told by the missing manifest
	got, _, err = store.ManifestAndRow(ctx, m.BatchID, 2)
	is.True(errors.Is(err, ledger.ErrNotFound)) // no such row
	is.True(got != nil)                         // of a batch that exists
}

// A writer holding the row it last wrote updates it without reading; when
// another writer changed the row since, the transition is applied to the row
// as it is now, so the other writer's change (here a cancel request) is seen.
func TestUpdateRowFromHeldRow(t *testing.T) {
	is := is.New(t)
	faults := devstack.NewFaults(1)
	store := stacktest.Open(t, faults).Ledger
	ctx := context.Background()
	m := manifest(1, 1)
	is.NoErr(store.CreateManifest(ctx, m))
	_, held, err := store.ManifestAndRow(ctx, m.BatchID, 0)
	is.NoErr(err)

	attempt := func(r ledger.Row) (ledger.Row, error) {
		r = r.Clone()
		r.Attempts++
		return r, nil
	}
	reads := faults.Counts().Reads
	held, err = store.UpdateRowFrom(ctx, m, 0, held, attempt)
	is.NoErr(err)
	held, err = store.UpdateRowFrom(ctx, m, 0, held, attempt)
	is.NoErr(err)
	is.Equal(faults.Counts().Reads, reads) // neither write read the row
	is.Equal(held.Row.Attempts, 2)

	_, err = store.UpdateRow(ctx, m, 0, func(r ledger.Row) (ledger.Row, error) {
		r = r.Clone()
		r.CancelRequested = true
		return r, nil
	})
	is.NoErr(err)
	var seen []bool
	held, err = store.UpdateRowFrom(ctx, m, 0, held, func(r ledger.Row) (ledger.Row, error) {
		seen = append(seen, r.CancelRequested)
		return attempt(r)
	})
	is.NoErr(err)
	is.Equal(seen, []bool{false, true}) // the held row, then the row as it is now
	is.True(held.Row.CancelRequested)   // the cancel request kept
	is.Equal(held.Row.Attempts, 3)
	stored, gen, err := store.ReadRow(ctx, m, 0)
	is.NoErr(err)
	is.Equal(stored.Attempts, 3)
	is.Equal(gen, held.Generation) // the generation returned is the one stored
}
