// Package idempotency makes submit safe to retry: an Idempotency-Key names one
// batch per user for 24 hours. The same key with the same body gets the same
// batch back; with another body it is a conflict.
package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/layout"
)

// TTL is how long a key names its batch.
const TTL = 24 * time.Hour

// MaxKey is the longest key accepted.
const MaxKey = 255

// Record is what a key holds.
type Record struct {
	BodySHA256 string    `json:"bodySha256"`
	BatchID    string    `json:"batchId"`
	CreatedAt  time.Time `json:"createdAt"`
	// BudgetDay is the UTC day whose budget holds the batch's reservation,
	// fixed by the key's first claim: a retry after midnight reserves on the
	// day the first attempt did, the day the batch settles on.
	BudgetDay string `json:"budgetDay,omitempty"`
	// Queuing is set before the batch's first task is created. From then on
	// a task may be running, so nothing of the batch is undone any more: the
	// record is never forgotten, and a retry finishes the submit or answers
	// the batch as it is.
	Queuing bool `json:"queuing,omitempty"`
	// Committed is set once the batch is recorded and queued: a replay then
	// only answers; before, it finishes the (idempotent) submit itself.
	Committed bool `json:"committed"`
}

// Live reports whether the record still binds its key at now.
func (r Record) Live(now time.Time) bool { return now.Before(r.CreatedAt.Add(TTL)) }

// ErrConflict means the key was used with another body.
var ErrConflict = errors.New("idempotency: key used with a different body")

// ValidKey reports whether k is an acceptable key: 1–255 printable ASCII.
func ValidKey(k string) bool {
	if k == "" || len(k) > MaxKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// BodyHash fingerprints a request body.
func BodyHash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// Object is where the record of (user, key) lives; both are hashed, so neither
// appears in object names.
func Object(user, key string) string {
	sum := sha256.Sum256([]byte(user + "\x00" + key))
	return layout.Idempotency + hex.EncodeToString(sum[:16]) + ".json"
}

// Decide is the pure rule: given the record found (if any), return the record
// in force and whether it must be written. A live record with the same body is
// reused; with another body it is a conflict; a missing or expired one is
// replaced by fresh.
func Decide(cur Record, exists bool, fresh Record, now time.Time) (Record, bool, error) {
	if exists && cur.Live(now) {
		if cur.BodySHA256 != fresh.BodySHA256 {
			return cur, false, ErrConflict
		}
		return cur, false, nil
	}
	return fresh, true, nil
}

// Keys stores records in the bucket.
type Keys struct {
	bucket *bucket.Bucket
	now    func() time.Time
}

// New returns the key store.
func New(b *bucket.Bucket) *Keys { return &Keys{bucket: b, now: time.Now} }

// Claim binds (user, key) to fresh — a body hash, a new batch id and the day
// its budget is reserved on — unless a live record binds it already: it
// returns the record in force and whether this call created it. Concurrent
// claims of one key agree on one batch id and one budget day.
func (k *Keys) Claim(ctx context.Context, user, key string, fresh Record) (Record, bool, error) {
	now := k.now().UTC()
	fresh = Record{BodySHA256: fresh.BodySHA256, BatchID: fresh.BatchID, BudgetDay: fresh.BudgetDay, CreatedAt: now}
	rec, res, err := bucket.Update(ctx, k.bucket, Object(user, key), func(cur Record, exists bool) (Record, error) {
		next, write, err := Decide(cur, exists, fresh, now)
		if err == nil && !write {
			err = bucket.ErrNoChange
		}
		return next, err
	})
	// Won: this call's record is the one stored, even if its answer was lost
	// and the client's retry met it.
	return rec, err == nil && res.Outcome == bucket.Won, err
}

// ErrLost means the key no longer names the batch being queued or committed: a failed
// twin request rolled it back meanwhile.
var ErrLost = errors.New("idempotency: the key no longer names this batch")

// BeginQueuing marks the record's batch as about to create its tasks, after
// which it is never forgotten. ErrLost means the key no longer names the
// batch (its first attempt rolled it back meanwhile): no task may be created.
func (k *Keys) BeginQueuing(ctx context.Context, user, key, batchID string) error {
	return k.mark(ctx, user, key, batchID, func(r *Record) *bool { return &r.Queuing })
}

// Commit marks the record's batch as recorded and queued.
func (k *Keys) Commit(ctx context.Context, user, key, batchID string) error {
	return k.mark(ctx, user, key, batchID, func(r *Record) *bool { return &r.Committed })
}

// mark sets one flag of the record of batchID, once.
func (k *Keys) mark(ctx context.Context, user, key, batchID string, flag func(*Record) *bool) error {
	_, _, err := bucket.Update(ctx, k.bucket, Object(user, key), func(cur Record, exists bool) (Record, error) {
		switch {
		case !exists || cur.BatchID != batchID:
			return cur, ErrLost
		case *flag(&cur):
			return cur, bucket.ErrNoChange
		}
		next := cur
		*flag(&next) = true
		return next, nil
	})
	return err
}

// Peek reads the live record of (user, key) without writing: a retry of an
// accepted submit is answered from it before any other check.
func (k *Keys) Peek(ctx context.Context, user, key string) (Record, bool, error) {
	var rec Record
	_, err := k.bucket.ReadJSON(ctx, Object(user, key), &rec)
	if errors.Is(err, bucket.ErrNotFound) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, err
	}
	return rec, rec.Live(k.now()), nil
}

// Forget drops the record of a failed submit of batchID, so a retry starts
// afresh. It reports false when the record is queuing or committed, or bound
// to another batch — another request owns the batch now, or its tasks may
// run, and the failed one must undo nothing — and true when the record is
// gone.
func (k *Keys) Forget(ctx context.Context, user, key, batchID string) (bool, error) {
	name := Object(user, key)
	free := true
	err := bucket.DeleteIf(ctx, k.bucket, name, func(cur Record) bool {
		free = cur.BatchID == batchID && !cur.Queuing && !cur.Committed
		return free
	})
	if err != nil || !free {
		return false, err
	}
	// The delete is guarded by the generation read: one that met a rewrite
	// (a twin request marking the record queuing) left the record alone, so
	// whether it is gone is read, not assumed.
	var cur Record
	_, err = k.bucket.ReadJSON(ctx, name, &cur)
	if errors.Is(err, bucket.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return cur.BatchID != batchID, nil
}
