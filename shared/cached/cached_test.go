package cached_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/cached"
	"github.com/assetgen/assetgen/shared/metrics"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// source is a load func whose answers the test sets. It counts its calls and
// the most that ever ran at once; with gate set, each call announces itself
// on started and waits for a value on gate before answering.
type source struct {
	mu      sync.Mutex
	val     int
	err     error
	calls   int
	running int
	most    int
	ctxs    []context.Context

	gate    chan struct{}
	started chan struct{}
}

func newSource(val int) *source { return &source{val: val} }

// blocking makes every later call wait for release.
func (s *source) blocking() *source {
	s.gate, s.started = make(chan struct{}), make(chan struct{}, 16)
	return s
}

func (s *source) load(ctx context.Context) (int, error) {
	s.mu.Lock()
	s.calls++
	s.running++
	s.most = max(s.most, s.running)
	s.ctxs = append(s.ctxs, ctx)
	gate, started := s.gate, s.started
	s.mu.Unlock()
	if gate != nil {
		started <- struct{}{}
		<-gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running--
	return s.val, s.err
}

func (s *source) set(val int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.val, s.err = val, err
}

func (s *source) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *source) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func (s *source) maxRunning() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.most
}

// release lets one waiting call answer.
func (s *source) release() { s.gate <- struct{}{} }

// logBuf is a goroutine-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const (
	ttl     = time.Minute
	backoff = time.Second
)

// fixture is a Value over a source, a clock and a log, with its own object
// name so its failure counter is its own.
type fixture struct {
	v      *cached.Value[int]
	src    *source
	clock  *clock
	log    *logBuf
	object string
	base   float64 // the counter when the fixture was made
}

func newFixture(t *testing.T, src *source) *fixture {
	t.Helper()
	f := &fixture{src: src, clock: &clock{t: t0}, log: &logBuf{}, object: "config/" + t.Name() + ".json"}
	f.v = cached.New(f.object, src.load, cached.Options{
		TTL: ttl, Backoff: backoff, Now: f.clock.Now,
		Log: slog.New(slog.NewTextHandler(f.log, nil)),
	})
	f.base = reloadFailures(t, f.object)
	return f
}

// failures is how much the fixture's counter grew (the registry is the
// process's, and outlives one run of a test).
func (f *fixture) failures(t *testing.T) float64 { return reloadFailures(t, f.object) - f.base }

// reloadFailures reads the failure counter of object as /metrics exposes it.
func reloadFailures(t *testing.T, object string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != "assetgen_config_reload_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "object" && l.GetValue() == object {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1 // no series: New did not create it
}

// testCtx bounds a test's waits, so a Get that blocks fails the test instead
// of hanging it.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var errStorage = errors.New("storage unavailable")

// A script of steps against one Value: advance the clock, change the
// source, Get, and check the answer, the number of loads, the failure
// counter and the log levels.
func TestValue(t *testing.T) {
	type step struct {
		advance  time.Duration
		set      *int  // the source's next value
		fail     error // the source's next error (with set nil: keep the value)
		want     int
		wantErr  bool
		calls    int     // loads so far
		failures float64 // counter so far
	}
	val := func(n int) *int { return &n }
	tests := []struct {
		name  string
		start int
		steps []step
		logs  []string // levels logged, in order
	}{
		{
			name: "a good copy is served for the TTL, then reread", start: 1,
			steps: []step{
				{want: 1, calls: 1},
				{set: val(2), advance: ttl - time.Nanosecond, want: 1, calls: 1},
				{advance: time.Nanosecond, want: 2, calls: 2},
				{advance: ttl - time.Nanosecond, want: 2, calls: 2},
			},
		},
		{
			name: "a failed reread keeps the last good copy and backs off", start: 1,
			steps: []step{
				{want: 1, calls: 1},
				{fail: errStorage, advance: ttl, want: 1, calls: 2, failures: 1},
				{advance: backoff - time.Nanosecond, want: 1, calls: 2, failures: 1}, // within the back-off: no read
				{advance: time.Nanosecond, want: 1, calls: 3, failures: 2},
				{advance: 2*backoff - time.Nanosecond, want: 1, calls: 3, failures: 2}, // the back-off doubled
				{advance: time.Nanosecond, want: 1, calls: 4, failures: 3},
				{advance: 4 * backoff, want: 1, calls: 5, failures: 4},
				{set: val(7), advance: 8 * backoff, want: 7, calls: 6, failures: 4}, // recovered
				{advance: ttl - time.Nanosecond, want: 7, calls: 6, failures: 4},    // and the TTL applies again
			},
			logs: []string{"WARN", "WARN", "WARN", "WARN", "INFO"},
		},
		{
			name: "the back-off stops growing at the TTL", start: 1,
			steps: []step{
				{want: 1, calls: 1},
				{fail: errStorage, advance: ttl, want: 1, calls: 2, failures: 1},
				{advance: backoff, want: 1, calls: 3, failures: 2},
				{advance: 2 * backoff, want: 1, calls: 4, failures: 3},
				{advance: 4 * backoff, want: 1, calls: 5, failures: 4},
				{advance: 8 * backoff, want: 1, calls: 6, failures: 5},
				{advance: 16 * backoff, want: 1, calls: 7, failures: 6},
				{advance: 32 * backoff, want: 1, calls: 8, failures: 7},
				{advance: ttl - time.Nanosecond, want: 1, calls: 8, failures: 7},
				{advance: time.Nanosecond, want: 1, calls: 9, failures: 8}, // the TTL, not 64 s
				{advance: ttl, want: 1, calls: 10, failures: 9},
			},
			logs: strings.Fields(strings.Repeat("WARN ", 9)),
		},
		{
			name: "without a copy a failure is an error, retried after the back-off",
			steps: []step{
				{fail: errStorage, wantErr: true, calls: 1, failures: 1},
				{advance: backoff - time.Nanosecond, wantErr: true, calls: 1, failures: 1}, // not reread on every request
				{set: val(3), advance: time.Nanosecond, want: 3, calls: 2, failures: 1},
			},
			logs: []string{"ERROR", "INFO"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			ctx := testCtx(t)
			f := newFixture(t, newSource(tt.start))
			for i, s := range tt.steps {
				f.clock.Advance(s.advance)
				switch {
				case s.set != nil:
					f.src.set(*s.set, s.fail)
				case s.fail != nil:
					f.src.fail(s.fail)
				}
				got, err := f.v.Get(ctx)
				if s.wantErr {
					is.True(errors.Is(err, errStorage)) // the last failure, when there is no copy
				} else {
					is.NoErr(err) // a copy
					is.Equal(got, s.want)
				}
				is.Equal(f.src.count(), s.calls)    // loads
				is.Equal(f.failures(t), s.failures) // failures counted
				if t.Failed() {
					t.Fatalf("step %d", i)
				}
			}
			var levels []string
			for _, line := range strings.Split(strings.TrimSpace(f.log.String()), "\n") {
				_, rest, ok := strings.Cut(line, "level=")
				if !ok {
					continue
				}
				level, _, _ := strings.Cut(rest, " ")
				levels = append(levels, level)
				if level == "WARN" || level == "ERROR" {
					is.True(strings.Contains(line, "object="+f.object)) // a failure names the object
					is.True(strings.Contains(line, errStorage.Error())) // and the error
				}
			}
			is.Equal(fmt.Sprint(levels), fmt.Sprint(tt.logs)) // log levels
		})
	}
}

// While a reread is slow, callers with a copy get it at once; only one read
// runs; the caller that started it gets the new copy.
func TestValueServesCopyDuringSlowReload(t *testing.T) {
	is := is.New(t)
	ctx := testCtx(t)
	f := newFixture(t, newSource(1))
	got, err := f.v.Get(ctx)
	is.NoErr(err)
	is.Equal(got, 1)

	f.src.blocking()
	f.src.set(2, nil)
	f.clock.Advance(ttl)
	first := make(chan int, 1)
	go func() {
		v, _ := f.v.Get(ctx)
		first <- v
	}()
	select {
	case <-f.src.started:
	case <-ctx.Done():
		t.Fatal("the reread did not start")
	}

	const readers = 50
	answers := make(chan int, readers)
	for range readers {
		go func() {
			v, err := f.v.Get(context.Background()) // no deadline: a blocked Get would never return
			if err != nil {
				v = -1
			}
			answers <- v
		}()
	}
	for range readers {
		select {
		case v := <-answers:
			is.Equal(v, 1) // the last good copy, without waiting for the read
		case <-ctx.Done():
			t.Fatal("a reader with a copy waited for the slow read")
		}
	}
	is.Equal(f.src.count(), 2) // one reread for all of them

	f.src.release()
	is.Equal(<-first, 2) // the caller that started it waited for the new copy
	got, err = f.v.Get(ctx)
	is.NoErr(err)
	is.Equal(got, 2) // which everyone gets now
	is.Equal(f.src.count(), 2)
	is.Equal(f.src.maxRunning(), 1) // never two reads at once
}

// Without a copy, concurrent callers all wait for one shared read.
func TestValueFirstReadIsShared(t *testing.T) {
	is := is.New(t)
	ctx := testCtx(t)
	f := newFixture(t, newSource(5).blocking())

	const callers = 20
	answers := make(chan int, callers)
	for range callers {
		go func() {
			v, err := f.v.Get(ctx)
			if err != nil {
				v = -1
			}
			answers <- v
		}()
	}
	select {
	case <-f.src.started:
	case <-ctx.Done():
		t.Fatal("the first read did not start")
	}
	select {
	case v := <-answers:
		t.Fatalf("a caller without a copy did not wait: got %d", v)
	default:
	}
	f.src.release()
	for range callers {
		is.Equal(<-answers, 5) // every caller got the one read's copy
	}
	is.Equal(f.src.count(), 1)      // one read
	is.Equal(f.src.maxRunning(), 1) // at a time
}

// A caller that stops waiting for the first read gets its context's error;
// the read itself runs on, not tied to that request, and its copy serves the
// next caller.
func TestValueReadOutlivesTheCallerThatStartedIt(t *testing.T) {
	is := is.New(t)
	ctx := testCtx(t)
	f := newFixture(t, newSource(9).blocking())

	req, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := f.v.Get(req)
		errc <- err
	}()
	<-f.src.started
	cancel()
	err := <-errc
	is.True(errors.Is(err, context.Canceled)) // the caller's own end

	f.src.mu.Lock()
	loadCtx := f.src.ctxs[0]
	f.src.mu.Unlock()
	is.NoErr(loadCtx.Err()) // the read goes on
	_, hasDeadline := loadCtx.Deadline()
	is.True(hasDeadline) // bounded by the read timeout instead

	f.src.release()
	got, err := f.v.Get(ctx) // waits for the read still in flight
	is.NoErr(err)
	is.Equal(got, 9)
	is.Equal(f.failures(t), 0.0) // a caller leaving is no read failure
}

// The read timeout ends a read that hangs; it counts as a failure.
func TestValueReadTimeout(t *testing.T) {
	is := is.New(t)
	ctx := testCtx(t)
	hung := func(ctx context.Context) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	object := "config/" + t.Name() + ".json"
	v := cached.New(object, hung, cached.Options{TTL: ttl, Timeout: time.Millisecond,
		Log: slog.New(slog.NewTextHandler(&logBuf{}, nil))})
	before := reloadFailures(t, object)
	_, err := v.Get(ctx)
	is.True(errors.Is(err, context.DeadlineExceeded)) // the read's own deadline
	is.Equal(reloadFailures(t, object)-before, 1.0)   // counted
}

// An object that was read but is invalid drops the copy in force: callers get
// ErrInvalid (never the stale copy), Valid fails naming the object, ERROR is
// logged once for the streak, and a good read restores everything. An outage
// meanwhile neither clears nor repeats the verdict.
func TestValueInvalidObjectDropsTheCopy(t *testing.T) {
	is := is.New(t)
	ctx := testCtx(t)
	f := newFixture(t, newSource(1))
	syntax := json.Unmarshal([]byte(`{"keys":`), new(any))
	is.True(syntax != nil) // truncated JSON does not parse

	got, err := f.v.Get(ctx)
	is.NoErr(err)
	is.Equal(got, 1)
	is.NoErr(f.v.Valid(ctx)) // a good object is valid

	f.src.fail(fmt.Errorf("parsing: %w", syntax)) // a JSON error is recognised unmarked
	f.clock.Advance(ttl)
	_, err = f.v.Get(ctx)
	is.True(errors.Is(err, cached.ErrInvalid)) // the copy is gone: an error, not the old value
	err = f.v.Valid(ctx)
	is.True(errors.Is(err, cached.ErrInvalid))                // not valid
	is.True(strings.Contains(err.Error(), f.object))          // naming the object
	is.Equal(f.failures(t), 1.0)                              // counted
	is.Equal(strings.Count(f.log.String(), "level=ERROR"), 1) // logged at ERROR

	f.src.fail(cached.Invalid(errors.New("unknown flag value"))) // or marked by load
	f.clock.Advance(backoff)
	_, err = f.v.Get(ctx)
	is.True(errors.Is(err, cached.ErrInvalid))
	f.src.fail(errStorage) // an outage: nothing new is known of the object
	f.clock.Advance(2 * backoff)
	_, err = f.v.Get(ctx)
	is.True(errors.Is(err, errStorage))                                      // the outage is the answer
	is.True(errors.Is(f.v.Valid(ctx), cached.ErrInvalid))                    // the object is still held invalid
	is.Equal(f.failures(t), 3.0)                                             // every failure counted
	is.Equal(strings.Count(f.log.String(), "level=ERROR"), 2)                // once for the invalid streak, once for the outage without a copy
	is.Equal(strings.Count(f.log.String(), "not used until it is fixed"), 1) // the invalid object is said once

	f.src.set(2, nil) // fixed
	f.clock.Advance(4 * backoff)
	got, err = f.v.Get(ctx)
	is.NoErr(err)
	is.Equal(got, 2)         // the fixed object is used
	is.NoErr(f.v.Valid(ctx)) // and valid again
	is.True(strings.Contains(f.log.String(), "read again"))

	f.src.fail(cached.Invalid(errors.New("broken again"))) // a new streak is said again
	f.clock.Advance(ttl)
	_, err = f.v.Get(ctx)
	is.True(errors.Is(err, cached.ErrInvalid))
	is.Equal(strings.Count(f.log.String(), "not used until it is fixed"), 2)
}
