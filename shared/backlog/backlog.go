// Package backlog counts each user's rows in unfinished batches, so one user
// cannot fill the task queue. Nothing is rewritten per submit (Cloud Storage
// takes about one write per second per object): every unfinished batch has a
// create-once marker under its owner's prefix, named
// queued/{user key}/{batch id}.{rows}, so one listing of the prefix counts the
// user's rows without reading an object. Completion deletes the marker; the
// housekeeping job deletes what a crash left behind, and a marker older than
// Horizon no longer counts whatever happened to it.
package backlog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/layout"
)

// Horizon is how long a marker counts: longer than any batch runs (retries
// and housekeeping included), so only a marker a crash stranded outlives it.
const Horizon = 24 * time.Hour

// Entry is one marker: an unfinished batch and its rows.
type Entry struct {
	User    string
	BatchID string
	Rows    int
}

// UserPrefix is where user's markers live. The user id is hashed: ids carry
// characters object names should not, and the prefix must not end where
// another user's begins.
func UserPrefix(user string) string {
	sum := sha256.Sum256([]byte(user))
	return layout.Queued + hex.EncodeToString(sum[:16]) + "/"
}

// Object is the marker's name.
func (e Entry) Object() string {
	return UserPrefix(e.User) + e.BatchID + "." + strconv.Itoa(e.Rows)
}

// Parse reads a marker's name back: its batch and rows (the user is hashed,
// so only its prefix is known).
func Parse(name string) (batchID string, rows int, ok bool) {
	rest, found := strings.CutPrefix(name, layout.Queued)
	if !found {
		return "", 0, false
	}
	_, leaf, found := strings.Cut(rest, "/")
	if !found {
		return "", 0, false
	}
	batchID, n, found := strings.Cut(leaf, ".")
	if !found || !batch.ValidID(batchID) {
		return "", 0, false
	}
	rows, err := strconv.Atoi(n)
	if err != nil || rows < 1 || rows > batch.MaxRows || strconv.Itoa(rows) != n {
		return "", 0, false
	}
	return batchID, rows, true
}

// Markers are the backlog's markers in one bucket.
type Markers struct {
	b   *bucket.Bucket
	now func() time.Time
}

// New returns the markers in b.
func New(b *bucket.Bucket) *Markers { return &Markers{b: b, now: time.Now} }

// Queued is what one listing of a user's markers found: the rows of each of
// their unfinished batches, by batch id.
type Queued map[string]int

// Rows are the rows of every batch in q but except: a submit that counts
// while it writes its own marker may or may not find it in the listing.
func (q Queued) Rows(except string) int {
	total := 0
	for id, rows := range q {
		if id != except {
			total += rows
		}
	}
	return total
}

// Queued lists user's unfinished batches, with one listing.
func (k *Markers) Queued(ctx context.Context, user string) (Queued, error) {
	since := k.now().Add(-Horizon)
	q := Queued{}
	for a, err := range k.b.List(ctx, bucket.Query{Prefix: UserPrefix(user)}) {
		if err != nil {
			return nil, fmt.Errorf("backlog: counting queued rows: %w", err)
		}
		if id, rows, ok := Parse(a.Name); ok && a.Created.After(since) {
			q[id] = rows
		}
	}
	return q, nil
}

// Rows counts user's rows in unfinished batches, with one listing.
func (k *Markers) Rows(ctx context.Context, user string) (int, error) {
	q, err := k.Queued(ctx, user)
	return q.Rows(""), err
}

// Mark records e's batch as unfinished. It returns the generation of the
// marker this call made (0: an earlier attempt of the same submit made it).
func (k *Markers) Mark(ctx context.Context, e Entry) (int64, error) {
	res, err := k.b.Create(ctx, e.Object(), nil, bucket.Meta{ContentType: "text/plain"})
	if err != nil {
		return 0, fmt.Errorf("backlog: marking batch %s queued: %w", e.BatchID, err)
	}
	if res.Outcome != bucket.Won {
		return 0, nil
	}
	return res.Generation, nil
}

// ClearAt undoes a marker Mark made at generation gen (0: Mark's outcome is
// unknown). Unlike Clear, with the generation it survives a lost answer: a
// delete that names its generation is idempotent, so the storage client
// retries it.
func (k *Markers) ClearAt(ctx context.Context, e Entry, gen int64) error {
	if err := k.b.Undo(ctx, e.Object(), gen); err != nil {
		return fmt.Errorf("backlog: clearing batch %s: %w", e.BatchID, err)
	}
	return nil
}

// Clear deletes e's marker; a marker already gone is no error.
func (k *Markers) Clear(ctx context.Context, e Entry) error {
	if err := k.b.Delete(ctx, e.Object()); err != nil {
		return fmt.Errorf("backlog: clearing batch %s: %w", e.BatchID, err)
	}
	return nil
}

// Marker is one marker found by Walk.
type Marker struct {
	Name    string
	BatchID string
	Created time.Time
}

// Walk yields every marker of every user, for the housekeeping job.
func (k *Markers) Walk(ctx context.Context, fn func(Marker) error) error {
	var errs []error
	for a, err := range k.b.List(ctx, bucket.Query{Prefix: layout.Queued}) {
		if err != nil {
			return fmt.Errorf("backlog: listing markers: %w", err)
		}
		id, _, ok := Parse(a.Name)
		if !ok {
			continue
		}
		if err := fn(Marker{Name: a.Name, BatchID: id, Created: a.Created}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Remove deletes a marker Walk found.
func (k *Markers) Remove(ctx context.Context, m Marker) error {
	if err := k.b.Delete(ctx, m.Name); err != nil {
		return fmt.Errorf("backlog: removing marker of %s: %w", m.BatchID, err)
	}
	return nil
}
