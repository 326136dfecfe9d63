// Package flags switches features per user: each flag is on, off, or on for a
// percentage of users chosen by a stable hash, so a user stays in (or out) as the
// percentage grows. Values come from the environment at deploy time and from a
// flags object in the bucket, reloaded on a short TTL, which wins when it names
// a flag — operators canary, widen and roll back without a deploy.
package flags

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/assetgen/assetgen/shared/cached"
	"github.com/assetgen/assetgen/shared/layout"
)

// Flag is one switch.
type Flag struct {
	// Name is the environment variable and the key in the flags object.
	Name        string
	Description string
	Default     string
}

// The flags. Every one changes real behaviour (see Registry's users).
var (
	// BatchAPI is the master switch of the batch API: off, POST /batch/images
	// answers 503 FEATURE_DISABLED; a percentage makes it a canary.
	BatchAPI = Flag{Name: "HYBRID_V1_ENABLED", Default: "on",
		Description: "Master switch of the batch API: off, submit answers 503 FEATURE_DISABLED; N% is a canary."}
	// LiveRuns gates live (paid) runs; dry runs are unaffected.
	LiveRuns = Flag{Name: "LIVE_RUNS", Default: "on",
		Description: "Live (paid) runs: off, live submits answer 503 FEATURE_DISABLED; dry runs still work."}
)

// Registry lists every flag.
var Registry = []Flag{BatchAPI, LiveRuns}

// Value is a parsed setting: the share of users it is on for, in basis points
// (0 = off, 10000 = on).
type Value struct{ bp int }

// Parse reads "on"/"true"/"1", "off"/"false"/"0", or a percentage "12.5%".
func Parse(s string) (Value, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "on", "true", "1", "100%":
		return Value{10000}, nil
	case "off", "false", "0", "0%":
		return Value{0}, nil
	}
	p, ok := strings.CutSuffix(strings.TrimSpace(s), "%")
	if !ok {
		return Value{}, fmt.Errorf("flags: %q is not on, off or a percentage", s)
	}
	f, err := strconv.ParseFloat(p, 64)
	if err != nil || !(f >= 0 && f <= 100) { // NaN fails both comparisons
		return Value{}, fmt.Errorf("flags: %q is not a percentage from 0%% to 100%%", s)
	}
	// Rounded: 0.29*100 is 28.999…, which truncation would make 0.28%.
	return Value{int(math.Round(f * 100))}, nil
}

// String renders the value the way Parse reads it.
func (v Value) String() string {
	switch v.bp {
	case 0:
		return "off"
	case 10000:
		return "on"
	}
	return strconv.FormatFloat(float64(v.bp)/100, 'f', -1, 64) + "%"
}

// For reports whether the value is on for user. The bucket of a user is a hash
// of (flag, user), so different flags pick independent users and a user in at
// 10% is still in at 50%.
func (v Value) For(f Flag, user string) bool {
	if v.bp >= 10000 {
		return true
	}
	if v.bp <= 0 {
		return false
	}
	return Bucket(f, user) < v.bp
}

// Bucket places a user in [0, 10000) for a flag.
func Bucket(f Flag, user string) int {
	sum := sha256.Sum256([]byte(f.Name + "\x00" + user))
	return int(binary.BigEndian.Uint64(sum[:8]) % 10000)
}

// Source reads the flags object: a JSON map from flag name to value.
type Source func(ctx context.Context) (map[string]string, error)

// Set is the flags in force on an instance.
type Set struct {
	env  map[string]Value
	over *cached.Value[map[string]Value] // nil without a source
}

// ErrNoObject tells the Set that no flags object exists (only the environment
// counts); a Source returns it instead of failing.
var ErrNoObject = errors.New("flags: no flags object")

// New reads every flag from getenv (refusing bad values at start) and takes
// overrides from source, reloaded after ttl.
func New(getenv func(string) string, source Source, ttl time.Duration) (*Set, error) {
	return newSet(getenv, source, cached.Options{TTL: ttl})
}

func newSet(getenv func(string) string, source Source, opt cached.Options) (*Set, error) {
	s := &Set{env: map[string]Value{}}
	var errs []error
	for _, f := range Registry {
		raw := getenv(f.Name)
		if raw == "" {
			raw = f.Default
		}
		v, err := Parse(raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.Name, err))
		}
		s.env[f.Name] = v
	}
	if source != nil {
		s.over = cached.New(layout.FlagsObject, func(ctx context.Context) (map[string]Value, error) {
			return overrides(ctx, source)
		}, opt)
	}
	return s, errors.Join(errs...)
}

// Enabled reports whether f is on for user.
func (s *Set) Enabled(ctx context.Context, f Flag, user string) bool {
	return s.Value(ctx, f).For(f, user)
}

// Value is the setting of f in force: the flags object's if it names f, else
// the environment's. While the object cannot be read, the last good copy
// stays in force, so a storage hiccup never flips a flag; until a first good
// read, the environment alone counts. While the object is invalid, every flag
// is off: it may be the edit that switched something off, so neither its old
// copy nor the environment may speak for it.
func (s *Set) Value(ctx context.Context, f Flag) Value {
	if s.over != nil {
		over, err := s.over.Get(ctx)
		if errors.Is(err, cached.ErrInvalid) {
			return Value{}
		}
		if v, ok := over[f.Name]; ok && err == nil {
			return v
		}
	}
	return s.env[f.Name]
}

// Config is the flags object, for readiness (nil without one).
func (s *Set) Config() cached.Validity {
	if s.over == nil {
		return nil
	}
	return s.over
}

// overrides reads and parses the flags object. A value that does not parse
// makes the whole object invalid, so a typo turns the flags off (counted,
// logged, and failing readiness) instead of silently falling back to the
// environment or to a copy the operator meant to replace.
// Names no flag of this release uses are ignored: a newer release may know
// them.
func overrides(ctx context.Context, source Source) (map[string]Value, error) {
	raw, err := source(ctx)
	if errors.Is(err, ErrNoObject) {
		return map[string]Value{}, nil
	}
	if err != nil {
		return nil, err
	}
	over := map[string]Value{}
	for _, f := range Registry {
		val, ok := raw[f.Name]
		if !ok {
			continue
		}
		v, err := Parse(val)
		if err != nil {
			return nil, cached.Invalid(fmt.Errorf("flags: %s: %s: %w", layout.FlagsObject, f.Name, err))
		}
		over[f.Name] = v
	}
	return over, nil
}
