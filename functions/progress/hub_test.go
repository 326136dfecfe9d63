package progress

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/problem"
)

// Fifty streams of one batch share one tail. When their clients go away, the
// hub forgets them all: WaitIdle returns, Stats is zero, no tail, heartbeat or
// handler goroutine is left, and the process is back to its goroutine count.
func TestDisconnectsLeaveNothingBehind(t *testing.T) {
	is := is.New(t)
	ctx := testCtx(t, 60*time.Second)
	st := newStack(t, nil)
	in := st.newInstance(t, testConfig(), nil)
	d := st.newBatch(t, 2, 1, 0)
	d.start(0) // running: the tail polls at PollMin throughout

	// One stream first, so the storage client's connections exist before the
	// count is taken.
	warm := in.open(ctx, t, d.id(), "")
	warm.until(ctx, func(e event) bool { return e.Type == "batch" })
	warm.close()
	is.NoErr(in.hub.WaitIdle(ctx))
	in.tr.CloseIdleConnections()
	if !eventually(ctx, func() bool { n, _ := progressGoroutines(); return n == 0 }) {
		t.Fatal("the warm-up stream left goroutines behind")
	}
	before := runtime.NumGoroutine()

	const n = 50
	streams := make([]*sse, n)
	for i := range streams {
		streams[i] = in.open(ctx, t, d.id(), "")
	}
	for _, s := range streams {
		s.until(ctx, func(e event) bool { return e.Type == "batch" })
	}
	is.Equal(in.hub.Stats(), Stats{Tails: 1, Watchers: n}) // one tail for all
	during := runtime.NumGoroutine()

	for _, s := range streams {
		s.close()
	}
	in.tr.CloseIdleConnections()
	is.NoErr(in.hub.WaitIdle(ctx))
	is.Equal(in.hub.Stats(), Stats{}) // no tail, no watcher

	if !eventually(ctx, func() bool { n, _ := progressGoroutines(); return n == 0 }) {
		_, stacks := progressGoroutines()
		t.Fatalf("hub goroutines left after every client went away:\n%s", stacks)
	}
	// Connections to the emulator may come and go with the tail's polls: a
	// few goroutines of slack, far below one per stream.
	const slack = 10
	if !eventually(ctx, func() bool { return runtime.NumGoroutine() <= before+slack }) {
		t.Fatalf("goroutines: %d before, %d with %d streams, %d after they closed", before, during, n, runtime.NumGoroutine())
	}
	t.Logf("goroutines: %d before, %d with %d streams, %d after", before, during, n, runtime.NumGoroutine())
}

// Close sends every open stream, of every batch, event: reconnect and ends
// it; WaitIdle returns; a new connection is refused with 503 NOT_READY so the
// client retries elsewhere.
func TestCloseSendsStreamsElsewhere(t *testing.T) {
	is := is.New(t)
	ctx := testCtx(t, 60*time.Second)
	st := newStack(t, nil)
	cfg := testConfig()
	cfg.Heartbeat = time.Hour // reconnect must come from Close, not from a ping
	in := st.newInstance(t, cfg, nil)
	d1, d2 := st.newBatch(t, 2, 1, 0), st.newBatch(t, 3, 1, 0)
	d1.start(0)

	var streams []*sse
	for _, d := range []*driver{d1, d1, d1, d2, d2} {
		s := in.open(ctx, t, d.id(), "")
		s.until(ctx, func(e event) bool { return e.Type == "batch" })
		streams = append(streams, s)
	}
	is.Equal(in.hub.Stats(), Stats{Tails: 2, Watchers: 5})

	in.hub.Close()
	for i, s := range streams {
		evs, err := s.untilEnd(ctx)
		is.NoErr(err) // the stream ended cleanly
		if len(evs) == 0 || evs[len(evs)-1].Type != "reconnect" {
			t.Errorf("stream %d ended with %s, want event: reconnect", i, summary(evs))
		}
	}
	is.NoErr(in.hub.WaitIdle(ctx))
	is.Equal(in.hub.Stats(), Stats{})

	resp, body := in.status(ctx, t, d1.id(), "")
	is.Equal(resp.StatusCode, http.StatusServiceUnavailable)
	is.Equal(resp.Header.Get("Content-Type"), problem.ContentType)
	is.Equal(resp.Header.Get("Retry-After"), "1")
	var doc problem.Document
	is.NoErr(json.Unmarshal(body, &doc))
	is.Equal(doc.Code, problem.NotReady)
	is.Equal(in.hub.Stats(), Stats{}) // the refused request never subscribed
	is.NoErr(in.hub.WaitIdle(ctx))
	in.hub.Close() // twice is fine
}

// Cloud Storage traffic depends on the batches watched, not on the watchers:
// one watcher and a hundred of the same running batch cost the same listings
// over the same window, and exactly the same reads for the same changes.
func TestFanOutDoesNotMultiplyStorageRequests(t *testing.T) {
	is := is.New(t)
	ctx := testCtx(t, 90*time.Second)
	faults := devstack.NewFaults(1)
	st := newStack(t, faults)
	cfg := testConfig()
	cfg.PollMin = 50 * time.Millisecond
	cfg.PollMax = 200 * time.Millisecond
	cfg.Heartbeat = time.Hour // idle streams: nothing but the tail works
	in := st.newInstance(t, cfg, nil)
	d := st.newBatch(t, 4, 1, 0)
	d.start(0) // running: the tail polls at PollMin

	const window = 1500 * time.Millisecond
	const changes = 10
	type cost struct {
		connect, idle, changes devstack.Counts
	}
	measure := func(n int) cost {
		var c cost
		faults.Reset()
		streams := make([]*sse, n)
		for i := range streams {
			streams[i] = in.open(ctx, t, d.id(), "")
		}
		for _, s := range streams {
			s.until(ctx, func(e event) bool { return e.Type == "batch" })
		}
		is.Equal(in.hub.Stats(), Stats{Tails: 1, Watchers: n})
		c.connect = faults.Counts()

		// A measurement window, not a synchronisation: the tail polls on its
		// own clock while nothing changes.
		faults.Reset()
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(window):
		}
		c.idle = faults.Counts()

		// Each change is seen by every watcher before the next.
		faults.Reset()
		for i := range changes {
			r := d.start(1 + i%3)
			for _, s := range streams {
				s.untilRow(ctx, r.Index, r.Version)
			}
		}
		c.changes = faults.Counts()

		for _, s := range streams {
			s.close()
		}
		is.NoErr(in.hub.WaitIdle(ctx))
		return c
	}
	one, hundred := measure(1), measure(100)
	t.Logf("connect:        1 watcher %+v, 100 watchers %+v", one.connect, hundred.connect)
	t.Logf("idle %s: 1 watcher %+v, 100 watchers %+v", window, one.idle, hundred.idle)
	t.Logf("%d changes:     1 watcher %+v, 100 watchers %+v", changes, one.changes, hundred.changes)

	// The tail reads the batch's open rows (four here) on each poll, and
	// never lists or writes.
	is.Equal(one.idle.Lists+hundred.idle.Lists+one.changes.Lists+hundred.changes.Lists, int64(0))
	is.Equal(one.idle.Writes+hundred.idle.Writes, int64(0))
	is.True(one.idle.Reads > 0) // the open rows are read
	// The tail polls on a timer, so the count moves with the machine's load
	// (a loaded machine may poll half as often in one run as in the other); a
	// cost per watcher would multiply it by a hundred.
	if hundred.idle.Reads > 2*one.idle.Reads+12 {
		t.Errorf("reads over %s: %d with 1 watcher, %d with 100", window, one.idle.Reads, hundred.idle.Reads)
	}
	if hundred.changes.Reads > 2*one.changes.Reads+12 {
		t.Errorf("reads over %d changes: %d with 1 watcher, %d with 100", changes, one.changes.Reads, hundred.changes.Reads)
	}
	is.Equal(hundred.changes.Writes, one.changes.Writes)
}

// eventuallyStats waits until the hub's counters read want.
func eventuallyStats(ctx context.Context, h *Hub, want Stats) bool {
	return eventually(ctx, func() bool { return h.Stats() == want })
}

// The heartbeat is one clock for the whole hub, started with the first
// stream and stopped after the last: each tick reaches every stream of every
// batch as one event: ping. The clock is the test's, so ticks are exact.
func TestOneHeartbeatPingsEveryStream(t *testing.T) {
	is := is.New(t)
	ctx := testCtx(t, 60*time.Second)
	st := newStack(t, nil)
	cfg := testConfig()
	cfg.Heartbeat = 7 * time.Second
	in := st.newInstance(t, cfg, nil)
	ticks := make(chan time.Time)
	started := make(chan time.Duration, 10)
	stopped := make(chan struct{})
	in.hub.mu.Lock()
	in.hub.ticker = func(d time.Duration) (<-chan time.Time, func()) {
		started <- d
		return ticks, func() { close(stopped) }
	}
	in.hub.mu.Unlock()
	d1, d2 := st.newBatch(t, 2, 1, 0), st.newBatch(t, 1, 1, 0)
	d1.start(0)
	d2.start(0) // both running: no stream ends on its own

	var streams []*sse
	for _, d := range []*driver{d1, d1, d2} {
		s := in.open(ctx, t, d.id(), "")
		s.until(ctx, func(e event) bool { return e.Type == "batch" })
		streams = append(streams, s)
	}
	is.Equal(len(started), 1)          // one clock for three streams of two batches
	is.Equal(<-started, cfg.Heartbeat) // ticking at the configured interval
	for tick := range 2 {
		select {
		case ticks <- time.Now():
		case <-ctx.Done():
			t.Fatalf("tick %d not taken: %v", tick, ctx.Err())
		}
		for i, s := range streams {
			e, err := s.next(ctx)
			is.NoErr(err)
			if e.Type != "ping" {
				t.Fatalf("tick %d: stream %d got %s, want event: ping", tick, i, e.Type)
			}
			is.Equal(e.ID, "") // a ping moves no id
		}
	}

	for _, s := range streams {
		s.close()
	}
	is.NoErr(in.hub.WaitIdle(ctx))
	select {
	case <-stopped: // the last stream out stopped the clock
	case <-ctx.Done():
		t.Fatal("the heartbeat's clock still runs with no stream open")
	}
}

// Streams of a batch nobody watches yet that arrive at once share one read of
// its manifest: fifty cost what one does, the manifest once and the tail's
// first poll (its state and its rows).
func TestStreamsOpenedTogetherShareTheManifestRead(t *testing.T) {
	is := is.New(t)
	ctx := testCtx(t, 60*time.Second)
	faults := devstack.NewFaults(1)
	st := newStack(t, faults)
	cfg := testConfig()
	cfg.PollMin, cfg.PollMax, cfg.Heartbeat = time.Hour, time.Hour, time.Hour // the tail polls once
	in := st.newInstance(t, cfg, nil)
	const rows = 3
	d := st.newBatch(t, rows, 1, 0)
	d.start(0)

	faults.Reset()
	const n = 50
	resps := make([]*http.Response, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var cancel context.CancelFunc
			resps[i], cancel, errs[i] = in.get(ctx, d.id(), "")
			if errs[i] == nil {
				t.Cleanup(func() { cancel(); resps[i].Body.Close() })
			}
		})
	}
	wg.Wait()
	for i := range n {
		is.NoErr(errs[i])
		is.Equal(resps[i].StatusCode, http.StatusOK) // every stream opened
	}
	is.Equal(in.hub.Stats(), Stats{Tails: 1, Watchers: n})
	reads := faults.Counts().Reads
	t.Logf("%d streams opened together: %d reads", n, reads)
	// The manifest, the state and the rows; a stream that arrives between the
	// shared read's end and its tail's start may read the manifest again.
	if reads > 1+1+rows+5 {
		t.Errorf("%d streams opened together cost %d reads, want about %d", n, reads, 1+1+rows)
	}
}
