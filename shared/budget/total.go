package budget

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/layout"
)

// The deployment's daily cap is split evenly over Total.Shards accounts
// (layout.BudgetTotalShard). Cloud Storage takes about one write per second
// per object and every live submit writes the cap, so one object would hold
// the whole deployment to about one live submit per second. A reservation
// takes its amount from a random shard, spilling to the next ones when that
// shard lacks room (or stays busy), possibly in pieces from several; when the
// whole amount cannot be found it gives back every piece it took. Each piece
// is taken by compare-and-swap against its shard's share, and the shares sum
// to the cap, so no interleaving of submits can overspend it.

// shardPatience bounds how long a reservation waits for one busy shard before
// it tries the next (the store's patience bounds the whole reservation).
const shardPatience = time.Second

// TotalOf returns the deployment's cap on a day: its limit and what is
// reserved, spent and remaining over all its shards.
func (s *Store) TotalOf(ctx context.Context, day string) (Totals, error) {
	shards, err := s.readShards(ctx, day)
	if err != nil {
		return Totals{}, err
	}
	return SumShards(shards), nil
}

// shares is each shard's part of the cap in force now, so a cap raised or
// lowered by a deploy applies at once.
func (s *Store) shares() []Micros { return Shares(FromUSD(s.total.LimitUSD), s.total.Shards) }

func fillShard(a Account, day string, limit Micros) Account {
	a.User, a.Day, a.Limit = "", day, limit
	return a
}

// readShards reads every shard of a day at once (a shard never written is
// empty).
func (s *Store) readShards(ctx context.Context, day string) ([]Account, error) {
	shares := s.shares()
	out := make([]Account, len(shares))
	g, gctx := errgroup.WithContext(ctx)
	for i := range out {
		g.Go(func() error {
			var a Account
			_, err := s.bucket.ReadJSON(gctx, layout.BudgetTotalShard(day, i), &a)
			if err != nil && !errors.Is(err, bucket.ErrNotFound) {
				return fmt.Errorf("budget: reading shard %d of the total: %w", i, err)
			}
			out[i] = fillShard(a, day, shares[i])
			return nil
		})
	}
	return out, g.Wait()
}

// updateShard applies fn to one shard by CAS for at most patience.
func (s *Store) updateShard(ctx context.Context, day string, i int, patience time.Duration, fn func(Account) (Account, error)) (Account, bucket.Result, error) {
	limit := s.shares()[i]
	fill := func(_ context.Context, a Account) (Account, error) { return fillShard(a, day, limit), nil }
	return s.update(ctx, layout.BudgetTotalShard(day, i), patience, fill, fn)
}

// reserveTotal holds amount for batchID in the deployment's cap: all of it,
// or nothing this call took. ErrTotalExceeded means the cap cannot cover it.
func (s *Store) reserveTotal(ctx context.Context, day, batchID string, amount Micros) error {
	shards, err := s.readShards(ctx, day)
	if err != nil {
		return err
	}
	held, order, fits := Plan(shards, batchID, amount, rand.IntN(len(shards)))
	if !fits {
		return ErrTotalExceeded
	}
	need := amount - held
	var broken, contended error
	// A busy shard is passed over for the next, and tried again after the
	// others, until the store's patience is spent: contention delays a
	// reservation, only a lack of room refuses it.
	deadline := time.Now().Add(s.patience)
	for need > 0 && len(order) > 0 {
		var busy []int
		contended = nil
		for _, i := range order {
			left := time.Until(deadline)
			if need <= 0 || left <= 0 {
				break
			}
			piece, err := s.take(ctx, day, i, batchID, need, min(left, shardPatience))
			switch {
			case errors.Is(err, ErrExceeded):
				// The shard filled since the snapshot.
			case errors.Is(err, ErrContended):
				busy = append(busy, i)
				contended = errors.Join(contended, err)
			case err != nil:
				broken = errors.Join(broken, err)
			default:
				need -= piece
			}
		}
		if time.Until(deadline) <= 0 || ctx.Err() != nil {
			break
		}
		order = busy
	}
	if need <= 0 {
		return nil
	}
	failed := errors.Join(broken, contended)
	if failed == nil {
		failed = ErrTotalExceeded
	}
	// The pieces taken stay for the caller to Release (see Store.Reserve): a
	// concurrent attempt of the same batch may have counted them as held and
	// found the rest. Pieces left behind make the cap stricter, never looser.
	return failed
}

// take reserves for batchID as much of want as shard i has room for. piece is
// what the batch holds on the shard afterwards (a piece found held, whoever
// took it, counts: the batch's pieces are released together).
func (s *Store) take(ctx context.Context, day string, i int, batchID string, want Micros, patience time.Duration) (piece Micros, err error) {
	_, _, err = s.updateShard(ctx, day, i, patience, func(a Account) (Account, error) {
		next, p, err := Take(a, batchID, want)
		piece = p
		return next, err
	})
	if err != nil {
		return 0, err
	}
	return piece, nil
}

// releaseShards drops batchID's pieces from the shards listed.
func (s *Store) releaseShards(ctx context.Context, day, batchID string, shards []int) error {
	return s.eachShard(shards, func(i int) error {
		_, _, err := s.updateShard(ctx, day, i, s.patience, func(a Account) (Account, error) { return Release(a, batchID) })
		return err
	})
}

// releaseTotal drops every piece batchID holds in the deployment's cap.
func (s *Store) releaseTotal(ctx context.Context, day, batchID string) error {
	shards, err := s.readShards(ctx, day)
	if err != nil {
		return err
	}
	var holding []int
	for i, a := range shards {
		if _, ok := a.Reserved[batchID]; ok {
			holding = append(holding, i)
		}
	}
	return s.releaseShards(ctx, day, batchID, holding)
}

// settleTotal charges batchID's actual cost to its pieces of the cap and
// releases the rest of them.
func (s *Store) settleTotal(ctx context.Context, day, batchID string, actual Micros) error {
	shards, err := s.readShards(ctx, day)
	if err != nil {
		return err
	}
	charges := Apportion(shards, batchID, actual)
	idx := make([]int, 0, len(charges))
	for i := range charges {
		idx = append(idx, i)
	}
	return s.eachShard(idx, func(i int) error {
		_, _, err := s.updateShard(ctx, day, i, s.patience, func(a Account) (Account, error) { return Settle(a, batchID, charges[i]) })
		return err
	})
}

// eachShard runs fn on the shards listed at once and joins their errors:
// one failing shard does not stop the others.
func (s *Store) eachShard(shards []int, fn func(int) error) error {
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, i := range shards {
		wg.Go(func() {
			if err := fn(i); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("budget: shard %d of the total: %w", i, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
