// Package budget keeps the daily spend on live runs — each user's, and the
// deployment's total — with a reservation when a batch is accepted and a
// settlement when it finishes. The arithmetic here is pure; store.go keeps one
// compare-and-swap object per user and UTC day, total.go the deployment's
// daily cap split over shards.
package budget

import (
	"errors"
	"math"
	"time"
)

// Micros are millionths of a US dollar: money is counted in integers so sums
// never drift.
type Micros int64

// FromUSD converts dollars to micros, rounding to the nearest micro.
func FromUSD(usd float64) Micros { return Micros(math.Round(usd * 1e6)) }

// USD converts micros to dollars.
func (m Micros) USD() float64 { return float64(m) / 1e6 }

// Day is a UTC calendar day, "2006-01-02": budgets reset at UTC midnight.
func Day(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// Account is one user's budget for one day.
type Account struct {
	User  string `json:"user"`
	Day   string `json:"day"`
	Limit Micros `json:"limitMicros"`
	// Reserved holds each accepted live batch's estimate until it settles.
	Reserved map[string]Micros `json:"reserved"`
	// Spent holds what each settled batch actually cost.
	Spent map[string]Micros `json:"spent"`
}

// ErrExceeded means the estimate does not fit in what remains of the user's
// day (or, from the pure functions, of one account).
var ErrExceeded = errors.New("budget: exceeded")

// ErrTotalExceeded means the estimate does not fit in what remains of the
// deployment's daily cap.
var ErrTotalExceeded = errors.New("budget: the deployment's daily cap is reached")

// ErrNegative refuses a negative reservation, which would grow what remains.
var ErrNegative = errors.New("budget: negative amount")

// Totals are an account's sums.
type Totals struct {
	Limit, Reserved, Spent, Remaining Micros
}

// Sum totals an account; Remaining never goes below zero.
func (a Account) Sum() Totals {
	t := Totals{Limit: a.Limit}
	for _, v := range a.Reserved {
		t.Reserved += v
	}
	for _, v := range a.Spent {
		t.Spent += v
	}
	t.Remaining = max(0, t.Limit-t.Reserved-t.Spent)
	return t
}

func (a Account) clone() Account {
	c := a
	c.Reserved = make(map[string]Micros, len(a.Reserved)+1)
	for k, v := range a.Reserved {
		c.Reserved[k] = v
	}
	c.Spent = make(map[string]Micros, len(a.Spent)+1)
	for k, v := range a.Spent {
		c.Spent[k] = v
	}
	return c
}

// Reserve holds amount for batchID if it fits. Reserving a batch already
// reserved or settled changes nothing, so a retried submit is never charged
// twice.
func Reserve(a Account, batchID string, amount Micros) (Account, error) {
	if amount < 0 {
		return a, ErrNegative
	}
	if _, ok := a.Reserved[batchID]; ok {
		return a, errNoChange
	}
	if _, ok := a.Spent[batchID]; ok {
		return a, errNoChange
	}
	t := a.Sum()
	if amount > t.Limit-t.Reserved-t.Spent {
		return a, ErrExceeded
	}
	out := a.clone()
	out.Reserved[batchID] = amount
	return out, nil
}

// Settle turns batchID's reservation into what it actually cost (never more
// than was reserved: the estimate is the most a batch can cost). Settling twice
// changes nothing.
func Settle(a Account, batchID string, actual Micros) (Account, error) {
	if _, done := a.Spent[batchID]; done {
		return a, errNoChange
	}
	reserved, ok := a.Reserved[batchID]
	if !ok {
		return a, errNoChange
	}
	out := a.clone()
	delete(out.Reserved, batchID)
	out.Spent[batchID] = min(max(actual, 0), reserved)
	return out, nil
}

// Release drops batchID's reservation without charge (a submit that failed
// after reserving).
func Release(a Account, batchID string) (Account, error) {
	if _, ok := a.Reserved[batchID]; !ok {
		return a, errNoChange
	}
	out := a.clone()
	delete(out.Reserved, batchID)
	return out, nil
}

// errNoChange means the change was already made: nothing to write.
var errNoChange = errors.New("budget: no change")

// Shares splits a deployment's daily cap over n shards as evenly as micros
// allow: the first limit%n shards hold one micro more, and the shares sum to
// the cap exactly.
func Shares(limit Micros, n int) []Micros {
	n = max(1, n)
	out := make([]Micros, n)
	each, extra := limit/Micros(n), limit%Micros(n)
	for i := range out {
		out[i] = each
		if Micros(i) < extra {
			out[i]++
		}
	}
	return out
}

// Held is what batchID holds on one account: its reservation, or its charge
// once settled.
func Held(a Account, batchID string) (Micros, bool) {
	if v, ok := a.Reserved[batchID]; ok {
		return v, true
	}
	v, ok := a.Spent[batchID]
	return v, ok
}

// Take reserves for batchID as much of want as the shard has room for: a
// piece of a reservation spread over shards. It returns the piece the batch holds on the shard; a batch that holds one
// already (a retried submit) changes nothing, and a shard without room
// answers ErrExceeded.
func Take(a Account, batchID string, want Micros) (Account, Micros, error) {
	if want < 0 {
		return a, 0, ErrNegative
	}
	if v, ok := Held(a, batchID); ok {
		return a, v, errNoChange
	}
	room := a.Sum().Remaining
	if room <= 0 {
		return a, 0, ErrExceeded
	}
	piece := min(want, room)
	out, err := Reserve(a, batchID, piece)
	if err != nil {
		return a, 0, err
	}
	return out, piece, nil
}

// Plan reads a snapshot of the shards for a reservation of want: held is what
// batchID holds on them already (an earlier attempt of the same submit),
// order the shards with room to take the rest from — starting at start and
// going round, so concurrent submits spread over the shards — and fits
// whether held and that room together cover want. A snapshot may be stale:
// it only saves writes that could not succeed, each piece is still taken by
// compare-and-swap.
func Plan(shards []Account, batchID string, want Micros, start int) (held Micros, order []int, fits bool) {
	var room Micros
	for k := range shards {
		i := (start + k) % len(shards)
		if v, ok := Held(shards[i], batchID); ok {
			held += v
			continue
		}
		if r := shards[i].Sum().Remaining; r > 0 {
			order = append(order, i)
			room += r
		}
	}
	if held >= want {
		return held, nil, true
	}
	return held, order, held+room >= want
}

// Apportion charges a batch's actual cost to the pieces it holds on the
// shards, in shard order: a piece settled already keeps its charge, the
// others are charged up to their size until the cost is covered, and what is
// left of each is released. It returns the charge of each piece still to
// settle, by shard index. Settling the same batch again (some shards done,
// some not) charges the rest without exceeding the cost.
func Apportion(shards []Account, batchID string, actual Micros) map[int]Micros {
	rest := max(actual, 0)
	for _, a := range shards {
		if v, ok := a.Spent[batchID]; ok {
			rest -= v
		}
	}
	rest = max(rest, 0)
	out := map[int]Micros{}
	for i, a := range shards {
		piece, ok := a.Reserved[batchID]
		if !ok {
			continue
		}
		c := min(piece, rest)
		out[i] = c
		rest -= c
	}
	return out
}

// SumShards totals the shards of a deployment's cap; Remaining is the sum of
// each shard's, so a shard over its share (its cap lowered during the day)
// does not lend room to the others.
func SumShards(shards []Account) Totals {
	var t Totals
	for _, a := range shards {
		s := a.Sum()
		t.Limit += s.Limit
		t.Reserved += s.Reserved
		t.Spent += s.Spent
		t.Remaining += s.Remaining
	}
	return t
}
