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

// Store keeps accounts in the bucket, one object per user and day plus the
// shards of the deployment's daily cap, updated only by compare-and-swap.
type Store struct {
	bucket *bucket.Bucket
	limits *Limits
	total  Total
	// Patience bounds how long one change keeps retrying a contended account.
	patience time.Duration
}

// TotalShards is how many objects a deployment's daily cap is split over:
// every live submit writes one, and an object takes about one write per
// second, so 16 carry about 16 reservations and settlements a second. It is
// not a setting: every instance must split a day's cap the same way, or a
// shard one instance does not know of would add its share to the cap (and
// pieces on it would never be settled). Changing it takes a release that
// starts the new count on a new UTC day.
const TotalShards = 16

// Total is the deployment-wide daily cap on live spend.
type Total struct {
	LimitUSD float64
	// Shards is how many objects the cap is split over. Every live submit
	// writes one of them, and an object takes about one write per second.
	// Every function of a deployment must use the same count (TotalShards;
	// benchmarks compare others): settlement and release look for a batch's
	// pieces on these shards only.
	Shards int
}

// NewStore returns a budget store.
func NewStore(b *bucket.Bucket, limits *Limits, total Total, patience time.Duration) *Store {
	total.Shards = max(1, total.Shards)
	return &Store{bucket: b, limits: limits, total: total, patience: patience}
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
	fill := func(ctx context.Context, a Account) (Account, error) { return s.fill(ctx, a, user, day) }
	return s.update(ctx, Object(day, user), s.patience, fill, fn)
}

// update applies fn to the account stored under name, by CAS, for at most
// patience; fill sets what is not stored (the limit in force).
//
// Patience bounds when an attempt may start, not the attempt itself: a write
// cut off by the patience can still land after the caller has given up and
// released the batch, holding budget for a batch that never existed. An
// attempt that starts in time gets attemptGrace more to finish, so its
// outcome is known.
func (s *Store) update(ctx context.Context, name string, patience time.Duration, fill func(context.Context, Account) (Account, error), fn func(Account) (Account, error)) (Account, bucket.Result, error) {
	giveUp := time.Now().Add(patience)
	bounded, cancel := context.WithTimeout(ctx, patience+attemptGrace)
	defer cancel()
	a, res, err := bucket.Update(bounded, s.bucket, name, func(cur Account, _ bool) (Account, error) {
		if time.Now().After(giveUp) {
			return cur, errPatience
		}
		cur, err := fill(bounded, cur)
		if err != nil {
			return cur, err
		}
		next, err := fn(cur)
		if errors.Is(err, errNoChange) {
			err = bucket.ErrNoChange
		}
		return next, err
	})
	outOfTime := err != nil && (errors.Is(err, errPatience) || bounded.Err() != nil) && ctx.Err() == nil
	if outOfTime {
		// Changes are idempotent: applied to what is stored now, one that
		// landed reports no change, and the account is returned as it is.
		check, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		var cur Account
		_, rerr := s.bucket.ReadJSON(check, name, &cur)
		if rerr == nil {
			cur, ferr := fill(check, cur)
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
	if errors.Is(err, bucket.ErrContended) || outOfTime {
		return a, res, fmt.Errorf("%w: %w", ErrContended, err)
	}
	return a, res, err
}

// attemptGrace is how long a change's last attempt, started within the
// patience, may take to finish.
const attemptGrace = 5 * time.Second

// errPatience stops a change from starting another attempt once its patience
// has run out.
var errPatience = errors.New("budget: patience ran out")

// Reserve holds amount for a batch in the user's account of day, then in the
// deployment's daily cap. created is true when this call made the user's
// reservation (false for a retried submit that found it). On any error the
// caller decides whether to Release the batch: a refused or failed
// reservation leaves what it took in place, for a concurrent attempt of the
// same batch may be counting on it.
func (s *Store) Reserve(ctx context.Context, user, day, batchID string, amount Micros) (Account, bool, error) {
	a, res, err := s.change(ctx, user, day, func(a Account) (Account, error) { return Reserve(a, batchID, amount) })
	if err != nil {
		return a, false, err
	}
	// Won: this call's write holds the reservation, even if its answer was
	// lost and the client's retry met it. Unchanged: it was there already.
	created := res.Outcome == bucket.Won
	// A refusal by the cap gives nothing back here: another attempt of the
	// same batch (a retried submit racing this one) may have counted this
	// call's reservation and pieces as its own and gone on. The caller knows
	// whether one can have (the Idempotency-Key protocol), and releases the
	// batch with Release when none can.
	return a, created, s.reserveTotal(ctx, day, batchID, amount)
}

// Settle charges a batch what it actually cost and releases the rest, in the
// user's account and in the deployment's cap.
func (s *Store) Settle(ctx context.Context, user, day, batchID string, actual Micros) (Account, error) {
	a, err := s.Change(ctx, user, day, func(a Account) (Account, error) { return Settle(a, batchID, actual) })
	if err != nil {
		return a, err
	}
	return a, s.settleTotal(ctx, day, batchID, actual)
}

// Release drops a batch's reservation, in the user's account and in the
// deployment's cap.
func (s *Store) Release(ctx context.Context, user, day, batchID string) (Account, error) {
	a, err := s.Change(ctx, user, day, func(a Account) (Account, error) { return Release(a, batchID) })
	return a, errors.Join(err, s.releaseTotal(ctx, day, batchID))
}
