// Package ledgerstore keeps the batch ledger in the bucket, through the
// storage adapter: the manifest (created once), one state object per row
// (compare-and-swap; a missing object reads as the row as submitted), the
// create-once images, and the batch's materialised state.json. The types and
// transitions are the ledger package's; this package only stores them.
package ledgerstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	gax "github.com/googleapis/gax-go/v2"

	"golang.org/x/sync/errgroup"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/ledger"
)

// Store reads and writes the ledger of one bucket.
type Store struct {
	b *bucket.Bucket
}

// New returns the ledger store over b.
func New(b *bucket.Bucket) *Store { return &Store{b: b} }

// notFound turns the adapter's ErrNotFound into the ledger's.
func notFound(err error) error {
	if errors.Is(err, bucket.ErrNotFound) {
		return ledger.ErrNotFound
	}
	return err
}

// CreateManifest writes the manifest once. ErrExists means another writer's
// manifest is there (a retried submit got this far before); a write of this
// call whose answer was lost is not mistaken for one.
func (s *Store) CreateManifest(ctx context.Context, m *ledger.Manifest) error {
	res, err := s.b.CreateJSON(ctx, ledger.ManifestObject(m.BatchID), m)
	if err != nil {
		return err
	}
	if res.Outcome == bucket.Lost {
		return ledger.ErrExists
	}
	return nil
}

// Manifest reads a batch's manifest (ledger.ErrNotFound if there is none).
func (s *Store) Manifest(ctx context.Context, batchID string) (*ledger.Manifest, error) {
	var m ledger.Manifest
	if _, err := s.b.ReadJSON(ctx, ledger.ManifestObject(batchID), &m); err != nil {
		return nil, notFound(err)
	}
	return &m, nil
}

// DeleteBatch removes every object of a batch: the rollback of a submit that
// could not finish before any of its tasks could exist, so no partial batch is
// left behind, and the pruning of an old one. The manifest goes first: without
// it the batch no longer exists for any reader or task, even if a later delete
// fails (the housekeeping job removes such leftovers). Every delete names the
// generation it removes: that makes it idempotent, so the storage client
// retries it through a 503 or a lost answer, and an object rewritten since it
// was listed is left alone.
func (s *Store) DeleteBatch(ctx context.Context, batchID string) error {
	manifest := ledger.ManifestObject(batchID)
	a, err := s.b.Stat(ctx, manifest)
	switch {
	case errors.Is(err, bucket.ErrNotFound):
	case err != nil:
		return fmt.Errorf("ledgerstore: find manifest of %s: %w", batchID, err)
	default:
		if err := s.b.DeleteAt(ctx, manifest, a.Generation); err != nil {
			return fmt.Errorf("ledgerstore: delete manifest of %s: %w", batchID, err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for a, err := range s.b.List(ctx, bucket.Query{Prefix: ledger.BatchPrefix(batchID)}) {
		if err != nil {
			_ = g.Wait()
			return fmt.Errorf("ledgerstore: list %s: %w", batchID, err)
		}
		g.Go(func() error { return s.b.DeleteAt(gctx, a.Name, a.Generation) })
	}
	return g.Wait()
}

// ReadRow returns a row's state and its generation (0 when the row object does
// not exist yet, in which case the state is the row as submitted).
func (s *Store) ReadRow(ctx context.Context, m *ledger.Manifest, row int) (ledger.Row, int64, error) {
	if row < 0 || row >= len(m.Rows) {
		return ledger.Row{}, 0, fmt.Errorf("ledgerstore: batch %s has no row %d: %w", m.BatchID, row, ledger.ErrNotFound)
	}
	var r ledger.Row
	gen, err := s.b.ReadJSON(ctx, ledger.RowObject(m.BatchID, row), &r)
	if errors.Is(err, bucket.ErrNotFound) {
		return ledger.NewRow(m.Rows[row]), 0, nil
	}
	return r, gen, err
}

// UpdateRow applies fn to the row's current state and writes the result if the
// object has not changed since it was read; on a lost race it re-reads and
// re-applies. fn must be pure: it may run several times. ledger.ErrNoChange
// from fn skips the write and returns the current state; any other error
// aborts.
func (s *Store) UpdateRow(ctx context.Context, m *ledger.Manifest, row int, fn func(ledger.Row) (ledger.Row, error)) (ledger.Row, error) {
	if row < 0 || row >= len(m.Rows) {
		return ledger.Row{}, fmt.Errorf("ledgerstore: batch %s has no row %d: %w", m.BatchID, row, ledger.ErrNotFound)
	}
	r, _, err := bucket.Update(ctx, s.b, ledger.RowObject(m.BatchID, row), rowUpdate(m, row, fn))
	return r, err
}

// StoredRow is a row as its writer last read or wrote it, with the generation
// of the row object then (0: no object yet, the row as submitted).
type StoredRow struct {
	Row        ledger.Row
	Generation int64
}

// ManifestAndRow reads a batch's manifest and one row's state together, in
// one round trip: what a row task starts from. ledger.ErrNotFound with a nil
// manifest means there is no such batch; with the manifest, no such row.
func (s *Store) ManifestAndRow(ctx context.Context, batchID string, row int) (*ledger.Manifest, StoredRow, error) {
	var m *ledger.Manifest
	var r ledger.Row
	var gen int64
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		m, err = s.Manifest(gctx, batchID)
		return err
	})
	g.Go(func() (err error) {
		gen, err = s.b.ReadJSON(gctx, ledger.RowObject(batchID, row), &r)
		if errors.Is(err, bucket.ErrNotFound) {
			return nil
		}
		return err
	})
	err := g.Wait()
	switch {
	case m == nil && err != nil:
		return nil, StoredRow{}, err
	case row < 0 || row >= len(m.Rows):
		return m, StoredRow{}, fmt.Errorf("ledgerstore: batch %s has no row %d: %w", batchID, row, ledger.ErrNotFound)
	case err != nil:
		return m, StoredRow{}, err
	case gen == 0:
		r = ledger.NewRow(m.Rows[row])
	}
	return m, StoredRow{Row: r, Generation: gen}, nil
}

// UpdateRowFrom is UpdateRow for a writer that holds the row as it last read
// or wrote it: fn is applied to from and written if the row object is still at
// from's generation, without reading it first. Only when another writer
// changed the row since is it read and fn re-applied. It returns the row as
// stored and its generation, for the writer's next update.
func (s *Store) UpdateRowFrom(ctx context.Context, m *ledger.Manifest, row int, from StoredRow, fn func(ledger.Row) (ledger.Row, error)) (StoredRow, error) {
	if row < 0 || row >= len(m.Rows) {
		return StoredRow{}, fmt.Errorf("ledgerstore: batch %s has no row %d: %w", m.BatchID, row, ledger.ErrNotFound)
	}
	held := bucket.Stored[ledger.Row]{Value: from.Row, Generation: from.Generation}
	r, res, err := bucket.UpdateFrom(ctx, s.b, ledger.RowObject(m.BatchID, row), held, rowUpdate(m, row, fn))
	return StoredRow{Row: r, Generation: res.Generation}, err
}

// rowUpdate adapts a row transition to bucket.Update: a missing object is the
// row as submitted, and ledger.ErrNoChange skips the write.
func rowUpdate(m *ledger.Manifest, row int, fn func(ledger.Row) (ledger.Row, error)) func(ledger.Row, bool) (ledger.Row, error) {
	return func(cur ledger.Row, exists bool) (ledger.Row, error) {
		if !exists {
			cur = ledger.NewRow(m.Rows[row])
		}
		next, err := fn(cur)
		if errors.Is(err, ledger.ErrNoChange) {
			return next, bucket.ErrNoChange
		}
		return next, err
	}
}

// Rows reads every row of a batch, concurrently.
func (s *Store) Rows(ctx context.Context, m *ledger.Manifest) ([]ledger.Row, error) {
	rows := make([]ledger.Row, len(m.Rows))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(10)
	for i := range m.Rows {
		g.Go(func() error {
			r, _, err := s.ReadRow(gctx, m, i)
			rows[i] = r
			return err
		})
	}
	return rows, g.Wait()
}

// PutImage writes a variant's image once under its deterministic name. If
// another attempt (a duplicate delivery) stored it first, created is false and
// there is no error: the existing object is the same result.
func (s *Store) PutImage(ctx context.Context, name, contentType string, data []byte) (created bool, err error) {
	res, err := s.b.Create(ctx, name, data, bucket.Meta{ContentType: contentType})
	return res.Outcome == bucket.Won, err
}

// StoredImages lists the images already stored for a row, by variant: what an
// earlier attempt made before it could record it.
func (s *Store) StoredImages(ctx context.Context, batchID string, row int) (map[int]string, error) {
	prefix := ledger.ImagePrefix(batchID, row)
	out := map[int]string{}
	for a, err := range s.b.List(ctx, bucket.Query{Prefix: prefix}) {
		if err != nil {
			return nil, fmt.Errorf("ledgerstore: list images of %s row %d: %w", batchID, row, err)
		}
		digits, _, _ := strings.Cut(strings.TrimPrefix(a.Name, prefix), ".")
		if v, err := strconv.Atoi(digits); err == nil {
			out[v] = a.Name
		}
	}
	return out, nil
}

// ReadObject returns the bytes of an object the ledger names: an image, or a
// reference image a row uses.
func (s *Store) ReadObject(ctx context.Context, name string) ([]byte, error) {
	b, err := s.b.ReadBytes(ctx, name)
	return b, notFound(err)
}

// OpenObject opens an object the ledger names (an image) as a stream, with
// its attributes; ledger.ErrNotFound when it is gone. The caller closes it.
func (s *Store) OpenObject(ctx context.Context, name string) (io.ReadCloser, bucket.Attrs, error) {
	r, a, err := s.b.OpenObject(ctx, name)
	return r, a, notFound(err)
}

// State reads a finished batch's final rows and totals from its state.json
// (ledger.ErrNotFound while it runs).
func (s *Store) State(ctx context.Context, batchID string) (ledger.Final, error) {
	st, err := s.Current(ctx, batchID)
	if err != nil {
		return ledger.Final{}, err
	}
	f, ok := st.Final()
	if !ok {
		return ledger.Final{}, ledger.ErrNotFound
	}
	return f, nil
}

// Current reads a batch's newest batch-level state (ledger.ErrNotFound before
// its first).
func (s *Store) Current(ctx context.Context, batchID string) (ledger.State, error) {
	var st ledger.State
	_, err := s.b.ReadJSON(ctx, ledger.StateObject(batchID), &st)
	return st, notFound(err)
}

// StateGap spaces the writes of a batch's state.json: Cloud Storage sustains
// about one write per second per object, and a batch can change twice within
// a second (its first row starts as soon as it is accepted).
const StateGap = 1100 * time.Millisecond

// stateLag bounds how long after its own time a state's write is taken to
// have landed: a state older than that is not waited for. A younger one is
// waited for from when this caller first saw it, which is after it landed
// whatever the writer's clock or load.
const stateLag = 2 * time.Second

// Advance applies a batch-level transition to state.json by compare-and-swap
// and keeps the new state as its create-once snapshot. fn gets the current
// state (nil before the first) and op with the time of the attempt; it may run
// several times. A change less than StateGap after the current state landed
// waits for its turn (a change that is not due at all, ledger.ErrNoChange
// from fn, does not wait). changed says whether this call made the change; when it
// did not, the state returned is the current one.
//
// state.json is written first, then the snapshot: a caller that dies between
// the two leaves state.json naming a snapshot not yet written, and the next
// change writes it from the state it replaces (state.json and its snapshot
// hold the same state). A final state's snapshot is not written here:
// completion writes it once the round's effects are done, with what they did
// (ledger.State.Settled), so that it also marks them done.
//
// A write whose outcome is unknown (it may have landed with every answer
// lost) is read back: the state names its own snapshot, to the microsecond,
// and its request, so finding it in state.json tells that this call made the
// change.
func (s *Store) Advance(ctx context.Context, batchID string, op ledger.Op, fn func(cur *ledger.State, op ledger.Op) (ledger.State, error)) (st ledger.State, changed bool, err error) {
	seen := map[string]time.Time{} // when this call first read each state
	for {
		var prev, tried *ledger.State
		var due time.Time
		st, res, err := bucket.Update(ctx, s.b, ledger.StateObject(batchID), func(cur ledger.State, exists bool) (ledger.State, error) {
			prev, tried = nil, nil
			if exists {
				prev = &cur
			}
			op.Now = time.Now().UTC()
			n, err := fn(prev, op)
			if errors.Is(err, ledger.ErrNoChange) {
				return n, bucket.ErrNoChange
			}
			if err == nil && prev == nil {
				tried = &n
			}
			if err != nil || prev == nil {
				return n, err
			}
			if _, ok := seen[prev.Snapshot]; !ok {
				seen[prev.Snapshot] = op.Now
			}
			landed := seen[prev.Snapshot]
			if lag := prev.At.Add(stateLag); lag.Before(landed) {
				landed = lag
			}
			if op.Now.Before(landed.Add(StateGap)) {
				due = landed.Add(StateGap)
				return cur, errNotDue
			}
			tried = &n
			return n, nil
		})
		if errors.Is(err, errNotDue) {
			if err := gax.Sleep(ctx, time.Until(due)); err != nil {
				return st, false, fmt.Errorf("ledgerstore: state of %s: %w", batchID, err)
			}
			continue
		}
		if err != nil && tried != nil && s.landed(ctx, *tried) {
			st, res, err = *tried, bucket.Result{Outcome: bucket.Won}, nil
		}
		if err != nil {
			return st, false, fmt.Errorf("ledgerstore: state of %s: %w", batchID, err)
		}
		if res.Outcome != bucket.Won {
			return st, false, nil
		}
		g, gctx := errgroup.WithContext(ctx)
		if !st.Done() {
			g.Go(func() error { return s.KeepSnapshot(gctx, st) })
		}
		// A final state's snapshot is completion's to write (a retry follows
		// only a round whose snapshot is written).
		if prev != nil && prev.Snapshot != "" && !prev.Done() {
			g.Go(func() error { return s.KeepSnapshot(gctx, *prev) })
		}
		return st, true, g.Wait()
	}
}

var errNotDue = errors.New("ledgerstore: the state changed less than StateGap ago")

// landed reports whether state.json holds st, after a write of st whose
// outcome is unknown.
func (s *Store) landed(ctx context.Context, st ledger.State) bool {
	cur, err := s.Current(ctx, st.BatchID)
	return err == nil && cur.Snapshot == st.Snapshot && cur.Event == st.Event && cur.RequestID == st.RequestID && cur.Actor == st.Actor
}

// Begin writes a batch's first state: state.json and its snapshot together,
// both create-once, in one round trip (a submit waits for it). If state.json
// exists already (a retried submit), the state there stands and a snapshot
// this call wrote is removed again; created says whether this call's state is
// the batch's.
func (s *Store) Begin(ctx context.Context, st ledger.State) (created bool, err error) {
	if !ledger.IsSnapshotName(st.Snapshot) {
		return false, fmt.Errorf("ledgerstore: batch %s: %q is not a snapshot name", st.BatchID, st.Snapshot)
	}
	var state, snap bucket.Result
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		state, err = s.b.CreateJSON(gctx, ledger.StateObject(st.BatchID), st)
		return err
	})
	g.Go(func() (err error) {
		snap, err = s.b.CreateJSON(gctx, ledger.SnapshotObject(st.BatchID, st.Snapshot), st)
		return err
	})
	if err := g.Wait(); err != nil {
		return false, fmt.Errorf("ledgerstore: first state of %s: %w", st.BatchID, err)
	}
	if state.Outcome == bucket.Won {
		return true, nil
	}
	if snap.Outcome == bucket.Won {
		if err := s.b.DeleteAt(ctx, ledger.SnapshotObject(st.BatchID, st.Snapshot), snap.Generation); err != nil {
			return false, fmt.Errorf("ledgerstore: first state of %s: %w", st.BatchID, err)
		}
	}
	return false, nil
}

// KeepSnapshot writes st's immutable copy unless it exists.
func (s *Store) KeepSnapshot(ctx context.Context, st ledger.State) error {
	if !ledger.IsSnapshotName(st.Snapshot) {
		return fmt.Errorf("ledgerstore: batch %s: %q is not a snapshot name", st.BatchID, st.Snapshot)
	}
	if _, err := s.b.CreateJSON(ctx, ledger.SnapshotObject(st.BatchID, st.Snapshot), st); err != nil {
		return fmt.Errorf("ledgerstore: snapshot %s of %s: %w", st.Snapshot, st.BatchID, err)
	}
	return nil
}

// KeepFinal writes a finished round's snapshot, carrying what the round's
// effects did: its existence marks them done. created is false when the
// snapshot was there already (written by a release that kept the final
// snapshot with the state and marked the effects in effects.json).
func (s *Store) KeepFinal(ctx context.Context, st ledger.State, settled ledger.Settlement) (created bool, err error) {
	if !st.Done() || !ledger.IsSnapshotName(st.Snapshot) {
		return false, fmt.Errorf("ledgerstore: batch %s: %q is not a final snapshot", st.BatchID, st.Snapshot)
	}
	st.Settled = &settled
	res, err := s.b.CreateJSON(ctx, ledger.SnapshotObject(st.BatchID, st.Snapshot), st)
	if err != nil {
		return false, fmt.Errorf("ledgerstore: final snapshot %s of %s: %w", st.Snapshot, st.BatchID, err)
	}
	return res.Outcome == bucket.Won, nil
}

// Snapshots lists a batch's snapshots oldest first (one listing; the states
// themselves are read with Snapshot).
func (s *Store) Snapshots(ctx context.Context, batchID string) ([]string, error) {
	var out []string
	prefix := ledger.BatchPrefix(batchID)
	for a, err := range s.b.List(ctx, bucket.Query{Prefix: ledger.SnapshotPrefix(batchID)}) {
		if err != nil {
			return nil, fmt.Errorf("ledgerstore: list snapshots of %s: %w", batchID, err)
		}
		if name := strings.TrimPrefix(a.Name, prefix); ledger.IsSnapshotName(name) {
			out = append(out, name)
		}
	}
	return out, nil
}

// Snapshot reads one snapshot of a batch by name.
func (s *Store) Snapshot(ctx context.Context, batchID, name string) (ledger.State, error) {
	var st ledger.State
	if !ledger.IsSnapshotName(name) {
		return st, ledger.ErrNotFound
	}
	_, err := s.b.ReadJSON(ctx, ledger.SnapshotObject(batchID, name), &st)
	return st, notFound(err)
}
