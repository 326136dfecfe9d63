package flags

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/cached"
)

// fakeSource is a flags object the test edits; it counts reads.
type fakeSource struct {
	mu     sync.Mutex
	object map[string]string
	err    error
	reads  int
}

func (s *fakeSource) read(context.Context) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	return maps.Clone(s.object), s.err
}

func (s *fakeSource) set(object map[string]string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.object, s.err = object, err
}

func (s *fakeSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// newTestSet is a Set over src on a clock the test moves.
func newTestSet(t *testing.T, env map[string]string, src *fakeSource, now *time.Time) *Set {
	t.Helper()
	s, err := newSet(func(k string) string { return env[k] }, src.read, cached.Options{
		TTL: time.Minute, Backoff: time.Second, Now: func() time.Time { return *now }, // the test runs on one goroutine
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// An override changed in the flags object is picked up only once the TTL has
// passed, and the object is not read more than once per TTL.
func TestSetReloadsAfterTTL(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	now := time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)
	src := &fakeSource{object: map[string]string{"HYBRID_V1_ENABLED": "10%"}}
	s := newTestSet(t, nil, src, &now)

	is.Equal(s.Value(ctx, BatchAPI).String(), "10%") // first use reads the object
	is.Equal(src.count(), 1)

	src.set(map[string]string{"HYBRID_V1_ENABLED": "off"}, nil)
	now = now.Add(time.Minute - time.Nanosecond)
	is.Equal(s.Value(ctx, BatchAPI).String(), "10%") // within the TTL: the old value
	is.Equal(s.Value(ctx, LiveRuns).String(), "on")  // (other flags from the environment)
	is.Equal(src.count(), 1)                         // and no read

	now = now.Add(time.Nanosecond)
	is.Equal(s.Value(ctx, BatchAPI).String(), "off") // TTL passed: the new value
	is.Equal(src.count(), 2)
	is.Equal(s.Value(ctx, BatchAPI).String(), "off")
	is.Equal(src.count(), 2) // the reload restarted the TTL

	src.set(map[string]string{}, nil)
	now = now.Add(time.Minute)
	is.Equal(s.Value(ctx, BatchAPI).String(), "on") // no longer named: the environment's
	is.Equal(src.count(), 3)
}

// A storage hiccup or a typo in the object never flips a flag: the last good
// overrides stay in force, and the object is read again after a back-off, not
// on every call.
func TestSetKeepsLastGoodOverrides(t *testing.T) {
	for _, tt := range []struct {
		name   string
		object map[string]string
		err    error
	}{
		{"read fails", nil, errors.New("storage: 503")},
		{"a value does not parse", map[string]string{"HYBRID_V1_ENABLED": "of"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			ctx := context.Background()
			now := time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)
			src := &fakeSource{object: map[string]string{"HYBRID_V1_ENABLED": "off"}}
			s := newTestSet(t, map[string]string{"HYBRID_V1_ENABLED": "on"}, src, &now)
			is.Equal(s.Value(ctx, BatchAPI).String(), "off") // the override

			src.set(tt.object, tt.err)
			now = now.Add(time.Minute)
			is.Equal(s.Value(ctx, BatchAPI).String(), "off") // kept through the failed read
			is.Equal(src.count(), 2)
			is.Equal(s.Value(ctx, BatchAPI).String(), "off") // and the next call
			is.Equal(src.count(), 2)                         // does not read again at once

			src.set(map[string]string{"HYBRID_V1_ENABLED": "25%"}, nil)
			now = now.Add(time.Second)
			is.Equal(s.Value(ctx, BatchAPI).String(), "25%") // after the back-off: read again
			is.Equal(src.count(), 3)
		})
	}
}

// Until a first good read, the environment alone counts.
func TestSetUsesEnvironmentUntilFirstGoodRead(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	now := time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)
	src := &fakeSource{err: errors.New("storage: 503")}
	s := newTestSet(t, map[string]string{"LIVE_RUNS": "off"}, src, &now)
	is.Equal(s.Value(ctx, LiveRuns).String(), "off") // the environment's
	is.Equal(s.Value(ctx, BatchAPI).String(), "on")  // the default
	is.Equal(src.count(), 1)                         // one read for both: the back-off holds

	src.set(map[string]string{"LIVE_RUNS": "50%"}, nil)
	now = now.Add(time.Second)
	is.Equal(s.Value(ctx, LiveRuns).String(), "50%") // the object's, once readable
}
