// Package budget keeps each user's daily spend on live runs: a reservation when
// a batch is accepted, a settlement when it finishes. The arithmetic here is
// pure; store.go keeps one compare-and-swap object per user and UTC day.
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

// ErrExceeded means the estimate does not fit in what remains.
var ErrExceeded = errors.New("budget: exceeded")

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
