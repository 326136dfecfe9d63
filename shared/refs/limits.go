package refs

import (
	"context"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// limits are the instance's shares of reference work: fetch slots and bytes in
// flight, taken by every fetch of every submit the Fetcher serves. Both
// semaphores serve waiters in order, so a large reservation is not starved by
// small ones.
type limits struct {
	fetches  *semaphore.Weighted
	bytes    *semaphore.Weighted
	capacity int64
	// waiting counts fetches queued for a slot or for bytes (tests read it to
	// know every fetch has either started or is queued).
	waiting atomic.Int64
}

func newLimits(fetches int, bytes int64) *limits {
	return &limits{fetches: semaphore.NewWeighted(int64(fetches)), bytes: semaphore.NewWeighted(bytes), capacity: bytes}
}

// MaxBytes is the size cap of one reference (Options.MaxBytes).
func (f *Fetcher) MaxBytes() int64 { return f.o.MaxBytes }

// Queued is how many fetches wait for the instance's limits now: a
// saturated instance shows here before submits start to time out.
func (f *Fetcher) Queued() int { return int(f.lim.waiting.Load()) }

// reservation is one fetch's slot and bytes, held while it reads and stores.
type reservation struct {
	l *limits
	n int64
}

// reserve takes a fetch slot and worst bytes (a reference's size cap: its
// real size is not known before it is asked for), waiting until both are free
// or ctx is done.
func (l *limits) reserve(ctx context.Context, worst int64) (*reservation, error) {
	worst = min(worst, l.capacity)
	l.waiting.Add(1)
	defer l.waiting.Add(-1)
	if err := l.fetches.Acquire(ctx, 1); err != nil {
		return nil, &queuedError{err: err}
	}
	if err := l.bytes.Acquire(ctx, worst); err != nil {
		l.fetches.Release(1)
		return nil, &queuedError{err: err}
	}
	return &reservation{l: l, n: worst}, nil
}

// shrink gives back what a declared length shows the fetch will not need: the
// read is capped at n from then on.
func (r *reservation) shrink(n int64) {
	if n >= 0 && n < r.n {
		r.l.bytes.Release(r.n - n)
		r.n = n
	}
}

func (r *reservation) release() {
	r.l.bytes.Release(r.n)
	r.l.fetches.Release(1)
}

// queuedError is a fetch that never started: the instance's limits were taken
// by other fetches until its context ended.
type queuedError struct{ err error }

func (e *queuedError) Error() string { return "waiting for a fetch slot: " + e.err.Error() }
func (e *queuedError) Unwrap() error { return e.err }
