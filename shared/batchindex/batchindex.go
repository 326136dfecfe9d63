// Package batchindex is each user's list of batches, newest first. Nothing is
// rewritten per submit (Cloud Storage takes about one write per second per
// object): every batch has one create-once entry under its owner's prefix,
// users/{user key}/batches/{inverted time}-{batch id}, whose name sorts the
// newest batch first and whose metadata holds what never changes about the
// batch (when it was made, run mode, model, rows). A page of the list is then
// one listing, from a cursor, of as many names as the page needs; a batch's
// status is read from its own state.
package batchindex

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/ledger"
)

// metaKey is the object metadata key holding an entry's fields.
const metaKey = "assetgen-batch"

// Entry is one batch in its owner's list.
type Entry struct {
	User    string `json:"-"`
	BatchID string `json:"-"`
	// Key is the entry's name within the user's prefix: where a listing
	// resumes.
	Key       string         `json:"-"`
	CreatedAt time.Time      `json:"createdAt"`
	RunMode   ledger.RunMode `json:"runMode"`
	Model     string         `json:"model"`
	// Variants are the variants of each row, in row order.
	Variants []int `json:"variants"`
}

// FromManifest is the entry of a batch.
func FromManifest(m *ledger.Manifest) Entry {
	e := Entry{User: m.Owner, BatchID: m.BatchID, Key: Key(m.BatchID), CreatedAt: m.CreatedAt, RunMode: m.RunMode, Model: m.Model}
	for _, r := range m.Rows {
		e.Variants = append(e.Variants, r.Variants)
	}
	return e
}

// UserKey is how user ids appear in object names: the first 16 bytes of their
// SHA-256, in hex, as under queued/ and budgets/. Ids may be e-mail addresses,
// which do not belong in object names, and one user's prefix must not end
// where another's begins.
func UserKey(user string) string {
	sum := sha256.Sum256([]byte(user))
	return hex.EncodeToString(sum[:16])
}

// UserPrefix is where user's entries live.
func UserPrefix(user string) string {
	return layout.Users + UserKey(user) + "/batches/"
}

// Object is the name of the entry of user's batch.
func Object(user, batchID string) string { return UserPrefix(user) + Key(batchID) }

// timeDigits is how much of a batch id the key inverts: a UUIDv7's first 64
// bits are its Unix time in milliseconds, its version and a sub-millisecond
// sequence, so ids issued later have greater first digits.
const timeDigits = 16

// Key is the entry name of a batch within its owner's prefix: the first
// digits of its id (its time), each hex digit d written as f-d so that later
// batches sort first, then the id itself.
func Key(batchID string) string {
	return invert(strings.ReplaceAll(batchID, "-", "")[:timeDigits]) + "-" + batchID
}

// ParseKey returns the batch id of an entry name (within the user's prefix);
// ok is false for anything Key does not make.
func ParseKey(key string) (batchID string, ok bool) {
	inv, id, found := strings.Cut(key, "-")
	if !found || len(inv) != timeDigits || !batch.ValidID(id) || Key(id) != key {
		return "", false
	}
	return id, true
}

// invert maps each lower-case hex digit d to f-d.
func invert(hexDigits string) string {
	const digits = "0123456789abcdef"
	out := []byte(hexDigits)
	for i, c := range out {
		if j := strings.IndexByte(digits, c); j >= 0 {
			out[i] = digits[15-j]
		}
	}
	return string(out)
}

// Index is the batch lists in one bucket.
type Index struct {
	b *bucket.Bucket
}

// New returns the index in b.
func New(b *bucket.Bucket) *Index { return &Index{b: b} }

// Add writes e's entry once. It answers the entry's generation when this call
// made it (0: an earlier attempt of the same submit did, and the batch is
// listed once).
func (x *Index) Add(ctx context.Context, e Entry) (int64, error) {
	meta, err := json.Marshal(e)
	if err != nil {
		return 0, fmt.Errorf("batchindex: encoding the entry of %s: %w", e.BatchID, err)
	}
	res, err := x.b.Create(ctx, Object(e.User, e.BatchID), nil, bucket.Meta{
		ContentType: "text/plain", Metadata: map[string]string{metaKey: string(meta)},
	})
	if err != nil {
		return 0, fmt.Errorf("batchindex: listing batch %s: %w", e.BatchID, err)
	}
	if res.Outcome != bucket.Won {
		return 0, nil
	}
	return res.Generation, nil
}

// Remove deletes the entry of user's batch; an entry already gone is no
// error.
func (x *Index) Remove(ctx context.Context, user, batchID string) error {
	if err := x.b.Delete(ctx, Object(user, batchID)); err != nil {
		return fmt.Errorf("batchindex: unlisting batch %s: %w", batchID, err)
	}
	return nil
}

// RemoveAt undoes the entry of user's batch that Add made at generation gen
// (0: Add's outcome is unknown): with the generation, a delete with a
// precondition, which the storage client retries.
func (x *Index) RemoveAt(ctx context.Context, user, batchID string, gen int64) error {
	if err := x.b.Undo(ctx, Object(user, batchID), gen); err != nil {
		return fmt.Errorf("batchindex: unlisting batch %s: %w", batchID, err)
	}
	return nil
}

// List returns the entries among the first n names of user's list, newest
// first, starting at key from (inclusive; "" is the newest), with one listing
// call of n+1 names; next is the name after them, where the following page
// starts ("" at the end). A name under the prefix that is not an entry is
// skipped, but still counts as one of the n.
func (x *Index) List(ctx context.Context, user, from string, n int) (entries []Entry, next string, err error) {
	if n <= 0 {
		return nil, "", nil
	}
	prefix := UserPrefix(user)
	q := bucket.Query{Prefix: prefix, Metadata: true, PageSize: n + 1}
	if from != "" {
		q.StartOffset = prefix + from
	}
	seen := 0
	for a, err := range x.b.List(ctx, q) {
		if err != nil {
			return nil, "", fmt.Errorf("batchindex: listing the batches of a user: %w", err)
		}
		key := strings.TrimPrefix(a.Name, prefix)
		if seen++; seen > n {
			return entries, key, nil
		}
		if e, ok := parse(user, key, a.Metadata); ok {
			entries = append(entries, e)
		}
	}
	return entries, "", nil
}

// parse reads an entry back from its key and metadata; ok is false for an
// object this package did not write.
func parse(user, key string, meta map[string]string) (e Entry, ok bool) {
	id, ok := ParseKey(key)
	if !ok || json.Unmarshal([]byte(meta[metaKey]), &e) != nil || len(e.Variants) == 0 || len(e.Variants) > batch.MaxRows {
		return Entry{}, false
	}
	e.User, e.BatchID, e.Key = user, id, key
	return e, true
}
