package budget

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/cached"
	"github.com/assetgen/assetgen/shared/layout"
)

// Limits says what each user may spend per day: a default, and overrides read
// from a config object in the bucket (reloaded after a TTL, so an operator
// raises a limit without a deploy).
type Limits struct {
	def     Micros
	perUser *cached.Value[map[string]Micros]
}

// NewLimits returns limits with a default in USD and overrides from
// layout.BudgetsObject.
func NewLimits(b *bucket.Bucket, defaultUSD float64, ttl time.Duration) *Limits {
	return newLimits(readLimits(b), defaultUSD, cached.Options{TTL: ttl})
}

func newLimits(load func(context.Context) (map[string]Micros, error), defaultUSD float64, opt cached.Options) *Limits {
	return &Limits{def: FromUSD(defaultUSD), perUser: cached.New(layout.BudgetsObject, load, opt)}
}

// readLimits reads the overrides; no object means none.
func readLimits(b *bucket.Bucket) func(context.Context) (map[string]Micros, error) {
	return func(ctx context.Context) (map[string]Micros, error) {
		var doc struct {
			Users map[string]float64 `json:"users"`
		}
		_, err := b.ReadJSON(ctx, layout.BudgetsObject, &doc)
		if err != nil && !errors.Is(err, bucket.ErrNotFound) {
			return nil, err
		}
		m := make(map[string]Micros, len(doc.Users))
		for u, usd := range doc.Users {
			m[u] = FromUSD(usd)
		}
		return m, nil
	}
}

// Config is the overrides object, for readiness.
func (l *Limits) Config() cached.Validity { return l.perUser }

// ErrLimitsUnknown means the overrides were never read: an operator may have
// lowered or blocked this user, so no money is spent until they are known.
var ErrLimitsUnknown = errors.New("budget: the per-user limits cannot be read")

// For returns a user's daily limit. An override table that cannot be reread
// keeps the last good one; with none read yet, or one that is read but
// invalid, it fails closed.
func (l *Limits) For(ctx context.Context, user string) (Micros, error) {
	table, err := l.perUser.Get(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrLimitsUnknown, err)
	}
	if m, ok := table[user]; ok {
		return m, nil
	}
	return l.def, nil
}

// Store keeps accounts in the bucket, one object per user and day, updated
// only by compare-and-swap.
type Store struct {
	bucket *bucket.Bucket
	limits *Limits
	// Patience bounds how long one change keeps retrying a contended account.
	patience time.Duration
}

// NewStore returns a budget store.
func NewStore(b *bucket.Bucket, limits *Limits, patience time.Duration) *Store {
	return &Store{bucket: b, limits: limits, patience: patience}
}

// ErrContended means the account object stayed contended past the store's
// patience; nothing was changed.
var ErrContended = errors.New("budget: contended")

// Object is the name of a user's account for a day. The user id is hashed:
// ids may be e-mail addresses, which do not belong in object names.
func Object(day, user string) string {
	sum := sha256.Sum256([]byte(user))
	return fmt.Sprintf("%s%s/%s.json", layout.Budgets, day, hex.EncodeToString(sum[:16]))
}

// Get returns a user's account for a day (empty if none was written yet).
func (s *Store) Get(ctx context.Context, user, day string) (Account, error) {
	var a Account
	_, err := s.bucket.ReadJSON(ctx, Object(day, user), &a)
	if errors.Is(err, bucket.ErrNotFound) {
		err = nil
	}
	if err != nil {
		return Account{}, err
	}
	return s.fill(ctx, a, user, day)
}

func (s *Store) fill(ctx context.Context, a Account, user, day string) (Account, error) {
	a.User, a.Day = user, day
	// The limit in force is today's setting, so a raised limit applies at once.
	limit, err := s.limits.For(ctx, user)
	a.Limit = limit
	return a, err
}

// Change applies a pure change to a user's account for a day, by CAS, for at
// most the store's patience. ErrContended means the change is not in the
// account: a write cut off by the deadline may still have landed, so the
// account is read once more to tell.
func (s *Store) Change(ctx context.Context, user, day string, fn func(Account) (Account, error)) (Account, error) {
	a, _, err := s.change(ctx, user, day, fn)
	return a, err
}

// change is Change that also reports the write's outcome: Won when this call's
// change is the one stored.
func (s *Store) change(ctx context.Context, user, day string, fn func(Account) (Account, error)) (Account, bucket.Result, error) {
	patient, cancel := context.WithTimeout(ctx, s.patience)
	defer cancel()
	a, res, err := bucket.Update(patient, s.bucket, Object(day, user), func(cur Account, _ bool) (Account, error) {
		cur, err := s.fill(patient, cur, user, day)
		if err != nil {
			return cur, err
		}
		next, err := fn(cur)
		if errors.Is(err, errNoChange) {
			err = bucket.ErrNoChange
		}
		return next, err
	})
	if err != nil && patient.Err() != nil && ctx.Err() == nil {
		// Changes are idempotent: applied to what is stored now, one that
		// landed reports no change, and the account is returned as it is.
		check, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		var cur Account
		_, rerr := s.bucket.ReadJSON(check, Object(day, user), &cur)
		if rerr == nil {
			cur, ferr := s.fill(check, cur, user, day)
			if ferr == nil {
				_, ferr = fn(cur)
			}
			if errors.Is(ferr, errNoChange) {
				// The change is in the account, but whose write put it there
				// (this call's, cut off, or an earlier call's) is unknown.
				return cur, bucket.Result{Outcome: bucket.Unknown}, nil
			}
		}
	}
	if errors.Is(err, bucket.ErrContended) || (err != nil && patient.Err() != nil) {
		return a, res, fmt.Errorf("%w: %w", ErrContended, err)
	}
	return a, res, err
}

// Reserve holds amount for a batch in the user's account of day. created is
// false when the batch held its reservation already (a retried submit): only
// the call that created a reservation may release it.
func (s *Store) Reserve(ctx context.Context, user, day, batchID string, amount Micros) (Account, bool, error) {
	a, res, err := s.change(ctx, user, day, func(a Account) (Account, error) { return Reserve(a, batchID, amount) })
	// Won: this call's write holds the reservation, even if its answer was
	// lost and the client's retry met it. Unchanged: it was there already.
	return a, err == nil && res.Outcome == bucket.Won, err
}

// Settle charges a batch what it actually cost and releases the rest.
func (s *Store) Settle(ctx context.Context, user, day, batchID string, actual Micros) (Account, error) {
	return s.Change(ctx, user, day, func(a Account) (Account, error) { return Settle(a, batchID, actual) })
}

// Release drops a batch's reservation.
func (s *Store) Release(ctx context.Context, user, day, batchID string) (Account, error) {
	return s.Change(ctx, user, day, func(a Account) (Account, error) { return Release(a, batchID) })
}
