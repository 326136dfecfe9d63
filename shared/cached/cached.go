// Package cached keeps an instance's copy of a small configuration object that
// operators change in the bucket (feature flags, API keys, budget overrides,
// sheet grants), reread after a TTL so a change needs no deploy.
//
// One rule for all of them:
//   - No lock is held across the read. One read runs at a time; while it runs,
//     callers with a copy get that copy at once, and only callers with none yet
//     wait for it.
//   - A read that fails is one of two things. The object could not be read
//     (an outage): the last good copy stays in force, logged at WARN (ERROR
//     when there is none). The object was read but is invalid — it does not
//     parse, or load marked its error with Invalid: the copy is dropped, since
//     it no longer says what the operator wants (a revoked key must not keep
//     working), so callers get an error wrapping ErrInvalid, Valid fails
//     (readiness names the object), and it is logged at ERROR once per streak
//     of such reads.
//   - After either, the next read waits for a back-off (doubling from
//     Options.Backoff up to the TTL), so neither turns every request into a
//     read. Each failure is counted in
//     assetgen_config_reload_failures_total{object}.
//   - The clock is injectable.
package cached

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/assetgen/assetgen/shared/metrics"
)

// ErrInvalid marks an object that was read but does not parse or validate.
var ErrInvalid = errors.New("cached: config object is invalid")

// Invalid marks err, returned by a load, as an invalid object rather than a
// failed read. JSON decoding errors are recognised without it.
func Invalid(err error) error { return fmt.Errorf("%w: %w", ErrInvalid, err) }

// invalid reports whether a load's error says the object is invalid.
func invalid(err error) bool {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	return errors.Is(err, ErrInvalid) || errors.As(err, &syntax) || errors.As(err, &typ)
}

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
	bad      error         // why the object is invalid, from the last read that got it; nil once a read succeeds
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

// Validity is what readiness asks of a Value, whatever it holds.
type Validity interface {
	Object() string
	Valid(ctx context.Context) error
}

var _ Validity = (*Value[int])(nil)

// Object is the name of the object the Value reads.
func (v *Value[T]) Object() string { return v.object }

// Valid fails while the object, as last read, is invalid (reading it first
// when the TTL or back-off allows, as Get does). An object that cannot be read
// is an outage, not an invalid object: Valid does not fail for it.
func (v *Value[T]) Valid(ctx context.Context) error {
	_, _ = v.Get(ctx) // what matters is what the read found, kept below
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.bad != nil {
		return fmt.Errorf("cached: %s: %w", v.object, v.bad)
	}
	return nil
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
		v.val, v.have, v.err, v.failures, v.bad = val, true, nil, 0, nil
		v.due = now.Add(v.opt.TTL)
		v.mu.Unlock()
		if recovered > 0 {
			v.opt.Log.Info("cached: config object read again", "object", v.object, "failedReads", recovered)
		}
		return
	}
	bad := invalid(err)
	firstBad := bad && v.bad == nil
	if bad {
		if !errors.Is(err, ErrInvalid) {
			err = Invalid(err)
		}
		var zero T
		v.val, v.have, v.bad = zero, false, err
	}
	v.err = err
	v.failures++
	pause := v.backoff()
	v.due = now.Add(pause)
	have, failures := v.have, v.failures
	v.mu.Unlock()

	metrics.ConfigReloadFailures.WithLabelValues(v.object).Inc()
	level, msg := slog.LevelWarn, "cached: config object unreadable; serving the last good copy"
	switch {
	case bad && !firstBad:
		return // said once per streak; the counter goes on
	case bad:
		level, msg = slog.LevelError, "cached: config object is invalid; it is not used until it is fixed"
	case !have:
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
