package progress

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/ledger"
)

// A client that drops its stream on one instance and reconnects to another
// with its Last-Event-ID gets exactly the row states it had not been sent:
// event ids are built from the ledger alone, so any instance can resume any
// stream. Once the batch is over, the final id gets 204 (EventSource stops),
// and an old id gets what it missed, then done.
func TestResumeAcrossInstances(t *testing.T) {
	is := is.New(t)
	ctx := testCtx(t, 60*time.Second)
	st := newStack(t, nil)
	a := st.newInstance(t, testConfig(), nil)
	b := st.newInstance(t, testConfig(), nil)
	d := st.newBatch(t, 3, 1, 0)

	// Every state the ledger ever held, as (row, version).
	written := map[rv]bool{{0, 0}: true, {1, 0}: true, {2, 0}: true}
	write := func(r ledger.Row) ledger.Row {
		written[rv{r.Index, r.Version}] = true
		return r
	}

	sa := a.open(ctx, t, d.id(), "")
	sa.until(ctx, func(e event) bool { return e.Type == "batch" }) // the full snapshot, then the totals
	r := write(d.start(0))
	mid := sa.untilRow(ctx, 0, r.Version) // a mid-batch row event
	sa.close()
	sentByA := rowStates(t, sa.log)
	is.Equal(sentByA, []rv{{0, 0}, {1, 0}, {2, 0}, {0, 1}}) // A sent the snapshot and one change
	is.True(mid.ID != "")                                   // row events carry ids
	seen, _, ok := parseID(mid.ID, batchTag(d.id()), 3)
	is.True(ok)                             // the id parses for its batch
	is.Equal(seen, []int{1, 0, 0})          // and holds what A sent
	is.Equal(mid.LastID, mid.ID)            // the id EventSource resumes with
	is.True(!strings.Contains(mid.ID, "~")) // no image yet: no URL expiry in the id

	// While the client is away, two rows change.
	write(d.image(0, 0)) // row 0 v2
	write(d.start(1))    // row 1 v1

	sb := b.open(ctx, t, d.id(), mid.ID)
	sb.untilRow(ctx, 1, 1) // what was missed arrives at once (row 0 v2 comes first)
	// Drive the batch to its end, each change seen by the stream before the next.
	step := func(r ledger.Row) { sb.untilRow(ctx, r.Index, write(r).Version) }
	step(d.finish(0))   // row 0 v3
	step(d.start(2))    // row 2 v1
	step(d.image(1, 0)) // row 1 v2
	step(d.finish(1))   // row 1 v3
	step(d.image(2, 0)) // row 2 v2
	write(d.finish(2))  // row 2 v3: the batch is done
	rest, err := sb.untilEnd(ctx)
	is.NoErr(err) // B ended the stream cleanly after done
	is.True(len(rest) > 0)
	last := sb.log[len(sb.log)-1]
	is.Equal(last.Type, "done") // done is the last event
	var totals api.Totals
	is.NoErr(jsonUnmarshal(last.Data, &totals))
	is.Equal(totals.Status, ledger.Done) // done carries the final totals

	sentByB := rowStates(t, sb.log)
	is.Equal(sentByB[:2], []rv{{0, 2}, {1, 1}}) // B began with exactly what A had not sent
	got := map[rv]bool{}
	for _, s := range sentByA {
		is.True(!got[s]) // A sent no state twice
		got[s] = true
	}
	for _, s := range sentByB {
		if got[s] {
			t.Errorf("state row %d v%d sent twice (A sent %v, B sent %v)", s.row, s.version, sentByA, sentByB)
		}
		got[s] = true
	}
	is.Equal(got, written) // no gap: every state the ledger held reached the client once

	// The batch is over; the finisher's completion marker exists.
	d.writeFinal()
	final := last.LastID
	resp, _ := a.status(ctx, t, d.id(), final)
	is.Equal(resp.StatusCode, http.StatusNoContent) // the final id: nothing to send, EventSource stops
	resp, _ = b.status(ctx, t, d.id(), final)
	is.Equal(resp.StatusCode, http.StatusNoContent) // on either instance
	resp, _ = a.status(ctx, t, d.id(), "")
	is.Equal(resp.StatusCode, http.StatusNoContent) // a new client of a finished batch reads GET /batch instead

	old := a.open(ctx, t, d.id(), mid.ID)
	evs, err := old.untilEnd(ctx)
	is.NoErr(err)
	is.Equal(rowStates(t, evs), []rv{{0, 3}, {1, 3}, {2, 3}}) // an old id gets the states it lacks
	is.Equal(evs[len(evs)-1].Type, "done")                    // then done, then the stream ends
}

// A Last-Event-ID that cannot be this batch's (garbage, another batch's, the
// wrong number of rows) is ignored: the client gets the full snapshot. A valid
// one in the lastEventId query parameter (EventSource's first connection
// cannot set headers) is honoured.
func TestResumeWithForeignIDGetsFullSnapshot(t *testing.T) {
	is := is.New(t)
	ctx := testCtx(t, 60*time.Second)
	st := newStack(t, nil)
	in := st.newInstance(t, testConfig(), nil)
	d := st.newBatch(t, 3, 1, 0)
	d.start(0)
	d.image(0, 0) // row 0 v2, rows 1 and 2 as submitted
	full := []rv{{0, 2}, {1, 0}, {2, 0}}

	other := st.newBatch(t, 3, 1, 0)
	so := in.open(ctx, t, other.id(), "")
	foreign := so.until(ctx, func(e event) bool { return e.Type == "batch" }).LastID
	so.close()
	tag := batchTag(d.id())

	for _, id := range []string{
		"garbage",
		foreign,                  // another batch's id, same number of rows
		tag + "-3.1",             // too few rows
		tag + "-3.1.1.1",         // too many
		tag + "-3.x.1",           // not a number
		tag + "-3.1.1~",          // empty expiry
		tag + "-3.1.1~zzzzzzzzz", // expiry too long
		"-3.1.1",                 // no tag
		tag + "3.1.1",            // no separator
	} {
		s := in.open(ctx, t, d.id(), id)
		s.until(ctx, func(e event) bool { return e.Type == "batch" })
		if got := rowStates(t, s.log); fmt.Sprint(got) != fmt.Sprint(full) {
			t.Errorf("Last-Event-ID %q: got %v, want the full snapshot %v", id, got, full)
		}
		s.close()
	}

	// A valid id sends nothing the client has: the first event is a ping.
	resp, cancel, err := in.get(ctx, d.id()+"?lastEventId="+tag+"-3.1.1", "")
	is.NoErr(err)
	defer cancel()
	is.Equal(resp.StatusCode, http.StatusOK)
	s := &sse{t: t, resp: resp, events: make(chan event, 64), done: make(chan struct{}), cancel: cancel, retry: make(chan int, 1)}
	go s.read("")
	t.Cleanup(s.close)
	e, err := s.next(ctx)
	is.NoErr(err)
	is.Equal(e.Type, "ping") // nothing resent
}

// With URLs that live 3 s and RefreshBefore 1 s, the stream sends the row
// again with fresh URLs before the ones the client holds expire, again and
// again: the same version, a different URL, a later expiry, and every URL
// still valid when it arrives.
func TestURLRefreshBeforeExpiry(t *testing.T) {
	is := is.New(t)
	ctx := testCtx(t, 30*time.Second)
	st := newStack(t, nil)
	cfg := testConfig()
	cfg.RefreshBefore = time.Second
	in := st.newInstance(t, cfg, st.shortSigner(t, 3*time.Second).Sign)
	d := st.newBatch(t, 2, 1, 0)
	d.start(0)
	d.image(0, 0)
	r := d.finish(0) // row 0 is done with an image; row 1 waits, so the batch runs on
	tag := batchTag(d.id())

	s := in.open(ctx, t, d.id(), "")
	check := func(e event) (string, time.Time) {
		t.Helper()
		row := e.row(t)
		is.Equal(row.Version, r.Version) // the same version each time
		v := row.Variants[0]
		is.True(v.URL != "" && v.ExpiresAt != nil)
		if !v.ExpiresAt.After(e.At) {
			t.Fatalf("received a URL that expired at %s at %s", v.ExpiresAt.Format(time.RFC3339Nano), e.At.Format(time.RFC3339Nano))
		}
		return v.URL, *v.ExpiresAt
	}
	first := s.untilRow(ctx, 0, r.Version)
	url, exp := check(first)
	for i := range 3 {
		e := s.until(ctx, func(e event) bool { return e.Type == "row" && e.row(t).Index == 0 })
		nextURL, nextExp := check(e)
		if !e.At.Before(exp) {
			t.Fatalf("refresh %d came at %s, after the URL it replaces expired (%s)", i+1, e.At.Format(time.RFC3339Nano), exp.Format(time.RFC3339Nano))
		}
		is.True(nextURL != url)     // a fresh URL
		is.True(nextExp.After(exp)) // that lives longer
		_, held, ok := parseID(e.ID, tag, 2)
		is.True(ok)
		is.Equal(held.Unix(), nextExp.Unix()) // the id tells another instance when the held URLs expire
		t.Logf("refresh %d: %s before the old URL expired", i+1, exp.Sub(e.At).Round(time.Millisecond))
		url, exp = nextURL, nextExp
	}
	for _, e := range s.log {
		is.True(e.Type != "done") // the batch is still running
	}
}

// A 10-minute connection, compressed: Heartbeat 20 ms, MaxDuration 1 s. The
// stream pings about MaxDuration/Heartbeat times, ends itself with event:
// reconnect before MaxDuration, sends nothing after it, and its last id
// resumes without resending anything.
func TestMaxDurationEndsWithReconnect(t *testing.T) {
	is := is.New(t)
	ctx := testCtx(t, 30*time.Second)
	st := newStack(t, nil)
	cfg := testConfig()
	cfg.Heartbeat = 20 * time.Millisecond
	cfg.MaxDuration = time.Second
	in := st.newInstance(t, cfg, nil)
	d := st.newBatch(t, 2, 1, 0)
	d.start(0)

	s := in.open(ctx, t, d.id(), "")
	evs, err := s.untilEnd(ctx)
	is.NoErr(err) // the server ended the stream cleanly
	is.True(len(evs) > 0)
	last := evs[len(evs)-1]
	is.Equal(last.Type, "reconnect") // the last event tells the client to reconnect
	is.Equal(last.ID, "")            // without touching its Last-Event-ID
	select {
	case ms := <-s.retry:
		is.Equal(ms, int(cfg.Retry.Milliseconds())) // the reconnect delay EventSource uses
	default:
		t.Error("no retry: field")
	}
	elapsed := last.At.Sub(s.opened)
	// The stream decides on a heartbeat tick; on a loaded machine ticks reach
	// it late, by about as much as its pings arrive late. That jitter is the
	// only slack: a stream that waited for the limit itself would end about a
	// heartbeat later.
	var jitter time.Duration
	prev := s.opened
	for _, e := range evs {
		if e.Type == "ping" || e.Type == "reconnect" {
			jitter = max(jitter, e.At.Sub(prev)-cfg.Heartbeat)
			prev = e.At
		}
	}
	t.Logf("stream lasted %s (ping jitter %s)", elapsed.Round(time.Millisecond), jitter.Round(time.Millisecond))
	if elapsed >= cfg.MaxDuration+jitter {
		t.Errorf("the stream ended after %s, not before MaxDuration %s (ping jitter %s)", elapsed, cfg.MaxDuration, jitter)
	}
	is.True(elapsed >= cfg.MaxDuration-2*cfg.Heartbeat) // and not much before it

	pings := 0
	for _, e := range evs {
		switch e.Type {
		case "ping":
			pings++
			is.Equal(e.ID, "") // pings carry no id
		case "row", "batch":
			_, _, ok := parseID(e.ID, batchTag(d.id()), 2)
			is.True(ok) // every id is valid
		}
	}
	want := int(cfg.MaxDuration / cfg.Heartbeat)
	t.Logf("%d pings (MaxDuration/Heartbeat = %d)", pings, want)
	// A ticker drops the ticks a busy machine delivers late, so the floor is
	// loose; the ceiling is exact: no second heartbeat scheme adds pings.
	if pings < want/4 || pings > want {
		t.Errorf("%d pings over %s at a %s heartbeat, want about %d", pings, elapsed, cfg.Heartbeat, want)
	}

	// Resuming with the last id sends nothing again: the first event is a ping.
	again := in.open(ctx, t, d.id(), last.LastID)
	e, err := again.next(ctx)
	is.NoErr(err)
	is.Equal(e.Type, "ping")
}

// A client that stops reading never slows the others: its socket fills, its
// write blocks until WriteTimeout, and the hub drops it, while a normal client
// on the same batch gets every change promptly and then done.
func TestSlowClientIsolated(t *testing.T) {
	is := is.New(t)
	ctx := testCtx(t, 90*time.Second)
	st := newStack(t, nil)
	cfg := testConfig()
	cfg.WriteTimeout = 500 * time.Millisecond
	in := st.newInstance(t, cfg, nil)
	const rows = 8
	d := st.newBatch(t, rows, 1, 128<<10) // 128 KiB prompts: every row event is that large
	d.start(0)

	// The slow client sends its request and never reads a byte.
	slow := in.rawDial(ctx, t, 4096)
	_, err := fmt.Fprintf(slow, "GET /progress/%s HTTP/1.1\r\nHost: progress\r\nAccept: text/event-stream\r\n\r\n", d.id())
	is.NoErr(err)
	slowSince := time.Now()
	if !eventuallyStats(ctx, in.hub, Stats{Tails: 1, Watchers: 1}) {
		t.Fatalf("the slow client never subscribed: %+v", in.hub.Stats())
	}

	normal := in.open(ctx, t, d.id(), "")
	normal.until(ctx, func(e event) bool { return e.Type == "batch" })
	is.Equal(in.hub.Stats(), Stats{Tails: 1, Watchers: 2})

	var worst time.Duration
	var dropped time.Time
	changes := 0
	for dropped.IsZero() {
		if changes == 500 {
			t.Fatalf("the slow watcher was not dropped after %d changes (%+v)", changes, in.hub.Stats())
		}
		row := 1 + changes%(rows-1)
		r := d.start(row)
		written := time.Now()
		e := normal.untilRow(ctx, row, r.Version)
		worst = max(worst, e.At.Sub(written))
		changes++
		if in.hub.Stats().Watchers == 1 {
			dropped = time.Now()
		}
	}
	t.Logf("slow watcher dropped after %d changes, %s after it connected; worst delay of the normal client %s",
		changes, dropped.Sub(slowSince).Round(time.Millisecond), worst.Round(time.Millisecond))
	is.True(dropped.Sub(slowSince) >= cfg.WriteTimeout) // not before its write timed out
	is.True(worst < cfg.WriteTimeout)                   // the normal client never waited on the slow one

	for row := range rows {
		r := d.finish(row)
		if row < rows-1 {
			normal.untilRow(ctx, row, r.Version)
		}
	}
	evs, err := normal.untilEnd(ctx)
	is.NoErr(err)
	is.Equal(evs[len(evs)-1].Type, "done") // the normal client saw the batch finish
	// The slow client's socket is still open on this side: the hub let it go.
	is.NoErr(in.hub.WaitIdle(ctx))
	is.Equal(in.hub.Stats(), Stats{})
}

// The reconnect that ends a stream at MaxDuration is written on the write
// deadline of the previous send. With a heartbeat longer than WriteTimeout
// that deadline has passed, so the write fails and the client sees the
// connection cut instead of event: reconnect. Production runs Heartbeat =
// WriteTimeout = 30 s, where the deadline and the tick race.
func TestReconnectAtMaxDurationSurvivesWriteDeadline(t *testing.T) {
	is := is.New(t)
	ctx := testCtx(t, 30*time.Second)
	st := newStack(t, nil)
	cfg := testConfig()
	cfg.Heartbeat = 200 * time.Millisecond
	cfg.WriteTimeout = 100 * time.Millisecond
	cfg.MaxDuration = 500 * time.Millisecond
	in := st.newInstance(t, cfg, nil)
	d := st.newBatch(t, 2, 1, 0)
	d.start(0)

	s := in.open(ctx, t, d.id(), "")
	evs, err := s.untilEnd(ctx)
	is.NoErr(err) // the server ended the stream cleanly
	if len(evs) == 0 || evs[len(evs)-1].Type != "reconnect" {
		t.Fatalf("stream ended with %s, want event: reconnect last", summary(evs))
	}
}

// A client resuming on another instance keeps the URLs it was sent before; its
// id says when they expire. The new stream must replace them before then, even
// though the row's version has not changed.
func TestResumedStreamRefreshesKeptURLs(t *testing.T) {
	is := is.New(t)
	ctx := testCtx(t, 30*time.Second)
	st := newStack(t, nil)
	cfg := testConfig()
	cfg.RefreshBefore = time.Second
	sign := st.shortSigner(t, 3*time.Second).Sign
	a := st.newInstance(t, cfg, sign)
	b := st.newInstance(t, cfg, sign)
	d := st.newBatch(t, 2, 1, 0)
	d.start(0)
	d.image(0, 0)
	r := d.finish(0) // row 1 waits: the batch runs on

	sa := a.open(ctx, t, d.id(), "")
	held := sa.untilRow(ctx, 0, r.Version).row(t).Variants[0].ExpiresAt
	id := sa.until(ctx, func(e event) bool { return e.Type == "batch" }).LastID
	sa.close()

	sb := b.open(ctx, t, d.id(), id)
	until, cancel := context.WithDeadline(ctx, *held)
	defer cancel()
	for {
		e, err := sb.next(until)
		if err != nil {
			t.Fatalf("the URL the client kept expired at %s without a replacement (events: %s)", held.Format(time.RFC3339Nano), summary(sb.log))
		}
		if e.Type != "row" {
			continue
		}
		row := e.row(t)
		is.Equal(row.Index, 0)
		is.Equal(row.Version, r.Version)
		is.True(row.Variants[0].ExpiresAt.After(e.At)) // valid when it arrives
		if row.Variants[0].ExpiresAt.After(*held) {
			return // replaced, in time, by a URL that outlives the kept one
		}
	}
}
