// Package cached keeps an instance's copy of a small configuration object that
// operators change in the bucket (feature flags, API keys, budget overrides,
// sheet grants), reread after a TTL so a change needs no deploy.
//
// One rule for all of them:
//   - No lock is held across the read. One read runs at a time; while it runs,
//     callers with a copy get that copy at once, and only callers with none yet
//     wait for it.
//   - A failed read keeps the last good copy, and the next read waits for a
//     back-off (doubling from Options.Backoff up to the TTL), so an outage does
//     not turn every request into a read. Each failure is counted in
//     assetgen_config_reload_failures_total{object} and logged: WARN while a
//     good copy is served, ERROR when there is none.
//   - The clock is injectable.
package cached

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/assetgen/assetgen/shared/metrics"
)

// Options tune a Value; zero fields take the defaults.
type Options struct {
	// TTL is how long a good copy is served before the object is read again.
	TTL time.Duration
	// Backoff is the pause after a first failed read; it doubles with every
	// further failure, up to the TTL. Default one second.
	Backoff time.Duration
	// Timeout bounds one read. The read does not end with the request that
	// started it: others may be waiting for it. Default ten seconds.
	Timeout time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Log receives failed reads. Default slog.Default().
	Log *slog.Logger
}

// Value is the cached copy of one object. load reads and parses it; a missing
// object is for load to turn into a value (usually empty) or an error. The
// copy is shared by every caller: treat it as read-only.
type Value[T any] struct {
	object string
	load   func(context.Context) (T, error)
	opt    Options

	mu       sync.Mutex
	val      T
	have     bool          // val is a good copy
	err      error         // the last failure, answered while there is no copy
	due      time.Time     // no read before this instant
	failures int           // consecutive failed reads
	flight   chan struct{} // closed when the read in progress ends; nil when none
}

// New returns a Value of object (its name labels the metric and the logs) that
// reads it with load.
func New[T any](object string, load func(context.Context) (T, error), opt Options) *Value[T] {
	if opt.Backoff <= 0 {
		opt.Backoff = time.Second
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 10 * time.Second
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	// The series exists from the start, at zero, so an alert can watch it.
	metrics.ConfigReloadFailures.WithLabelValues(object)
	return &Value[T]{object: object, load: load, opt: opt}
}

// Get returns the copy in force, reading the object first when the copy is
// older than the TTL (and no back-off holds). The caller that starts a read
// waits for it; callers arriving meanwhile get the last good copy, or wait
// too when there is none yet. An error means no good copy was ever read: the
// last failure, or ctx's end while waiting for the first read.
func (v *Value[T]) Get(ctx context.Context) (T, error) {
	v.mu.Lock()
	wait := v.flight
	switch {
	case wait != nil && v.have:
		wait = nil // someone is refreshing: serve the copy meanwhile
	case wait == nil && !v.opt.Now().Before(v.due):
		wait = make(chan struct{})
		v.flight = wait
		go v.refresh(context.WithoutCancel(ctx), wait)
	}
	v.mu.Unlock()

	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			v.mu.Lock()
			defer v.mu.Unlock()
			if v.have {
				return v.val, nil
			}
			var zero T
			return zero, fmt.Errorf("cached: waiting for %s: %w", v.object, ctx.Err())
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.have {
		return v.val, nil
	}
	var zero T
	return zero, fmt.Errorf("cached: reading %s: %w", v.object, v.err)
}

// refresh reads the object once and installs the result, then releases the
// callers waiting on done (after counting and logging, so they see both).
func (v *Value[T]) refresh(ctx context.Context, done chan struct{}) {
	defer close(done)
	ctx, cancel := context.WithTimeout(ctx, v.opt.Timeout)
	defer cancel()
	val, err := v.load(ctx)

	v.mu.Lock()
	now := v.opt.Now()
	v.flight = nil
	if err == nil {
		recovered := v.failures
		v.val, v.have, v.err, v.failures = val, true, nil, 0
		v.due = now.Add(v.opt.TTL)
		v.mu.Unlock()
		if recovered > 0 {
			v.opt.Log.Info("cached: config object read again", "object", v.object, "failedReads", recovered)
		}
		return
	}
	v.err = err
	v.failures++
	pause := v.backoff()
	v.due = now.Add(pause)
	have, failures := v.have, v.failures
	v.mu.Unlock()

	metrics.ConfigReloadFailures.WithLabelValues(v.object).Inc()
	level, msg := slog.LevelWarn, "cached: config object unreadable; serving the last good copy"
	if !have {
		level, msg = slog.LevelError, "cached: config object unreadable and no good copy yet"
	}
	v.opt.Log.Log(ctx, level, msg, "object", v.object, "error", err, "failedReads", failures, "retryIn", pause)
}

// backoff is the pause before the next read after v.failures failures in a
// row: Backoff, doubled per further failure, at most the TTL. Called with mu
// held.
func (v *Value[T]) backoff() time.Duration {
	pause := v.opt.Backoff
	for i := 1; i < v.failures && pause < v.opt.TTL; i++ {
		pause *= 2
	}
	return min(pause, max(v.opt.TTL, v.opt.Backoff))
}
