package progress

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/ledgerstore"
	"github.com/assetgen/assetgen/shared/metrics"
)

// Hub shares one ledger tail per batch among all of this instance's watchers of
// that batch: Cloud Storage traffic depends on the number of batches watched,
// not on the number of watchers.
type Hub struct {
	cfg   Config
	store *ledgerstore.Store
	sign  api.SignFunc
	log   *slog.Logger

	// retryFrame opens every stream: EventSource's reconnect delay.
	retryFrame []byte
	// ticker starts the heartbeat's clock: time.NewTicker, or a test's.
	ticker func(time.Duration) (<-chan time.Time, func())

	// manifests shares the manifest reads of streams opened together.
	manifests singleflight.Group

	mu       sync.Mutex
	tails    map[string]*tail
	watchers int
	stopBeat context.CancelFunc
	// closing is closed when the instance shuts down: streams tell their clients
	// to reconnect elsewhere and end.
	closing   chan struct{}
	closeOnce sync.Once
	// idle is closed while no stream is open (WaitIdle).
	idle chan struct{}
}

// newHub returns an empty hub.
func newHub(cfg Config, store *ledgerstore.Store, sign api.SignFunc, log *slog.Logger) *Hub {
	h := &Hub{cfg: cfg, store: store, sign: sign, log: log, tails: map[string]*tail{}, closing: make(chan struct{}), idle: make(chan struct{}),
		retryFrame: []byte("retry: " + strconv.FormatInt(cfg.Retry.Milliseconds(), 10) + "\n\n"),
		ticker: func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}}
	close(h.idle)
	return h
}

// WaitIdle blocks until no stream is open: after Close, the streams have told
// their clients to reconnect and ended.
func (h *Hub) WaitIdle(ctx context.Context) error {
	h.mu.Lock()
	idle := h.idle
	h.mu.Unlock()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-idle:
		return nil
	}
}

// Close tells every stream to send its client elsewhere and end. It is the
// progress service's SIGTERM path (http.Server.RegisterOnShutdown). Streams
// learn it through their wake-up, so an idle stream waits on no channel of
// its own for it; one that joins meanwhile sees closing before it waits.
func (h *Hub) Close() {
	h.closeOnce.Do(func() {
		close(h.closing)
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, t := range h.tails {
			for w := range t.watchers {
				w.notify()
			}
		}
	})
}

// draining reports whether Close was called.
func (h *Hub) draining() bool {
	select {
	case <-h.closing:
		return true
	default:
		return false
	}
}

// Stats is what the hub is doing right now.
type Stats struct {
	Tails    int
	Watchers int
}

// Stats counts tails and watchers.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Stats{Tails: len(h.tails), Watchers: h.watchers}
}

// manifest returns a batch's manifest, from a running tail when there is one.
// Streams of a batch nobody watched yet that arrive together (a page of
// tabs, every client of an instance that went away) share one read of it.
func (h *Hub) manifest(ctx context.Context, batchID string) (*ledger.Manifest, error) {
	h.mu.Lock()
	t := h.tails[batchID]
	h.mu.Unlock()
	if t != nil {
		return t.m, nil
	}
	read := h.manifests.DoChan(batchID, func() (any, error) {
		// The read outlives a caller that leaves: the others wait for it.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), manifestTimeout)
		defer cancel()
		return h.store.Manifest(ctx, batchID)
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-read:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*ledger.Manifest), nil
	}
}

// manifestTimeout bounds a shared manifest read.
const manifestTimeout = 30 * time.Second

// watcher is one stream's registration: a one-slot wake-up channel, so a slow
// stream never blocks the tail; it just finds the newest state when it wakes.
// ping is set by the heartbeat before it wakes the stream.
type watcher struct {
	wake chan struct{}
	ping atomic.Bool
}

func (w *watcher) notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// subscribe registers w as a watcher of m's batch, starting its tail if
// needed, and returns the tail.
func (h *Hub) subscribe(m *ledger.Manifest, w *watcher) *tail {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.tails[m.BatchID]
	if t == nil {
		t = newTail(h, m)
		h.tails[m.BatchID] = t
		metrics.Tails.Inc()
		go t.run()
	}
	metrics.Streams.Inc()
	t.watchers[w] = struct{}{}
	if h.watchers == 0 {
		h.idle = make(chan struct{})
	}
	h.watchers++
	if h.stopBeat == nil {
		ctx, cancel := context.WithCancel(context.Background())
		h.stopBeat = cancel
		ticks, stop := h.ticker(h.cfg.Heartbeat)
		go h.heartbeat(ctx, ticks, stop)
	}
	return t
}

// unsubscribe removes a watcher; the last one out stops the tail.
func (h *Hub) unsubscribe(t *tail, w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := t.watchers[w]; !ok {
		return
	}
	delete(t.watchers, w)
	h.watchers--
	metrics.Streams.Dec()
	if len(t.watchers) == 0 {
		t.stop()
		if h.tails[t.m.BatchID] == t {
			delete(h.tails, t.m.BatchID)
			metrics.Tails.Dec()
		}
	}
	if h.watchers == 0 {
		close(h.idle)
		if h.stopBeat != nil {
			h.stopBeat()
			h.stopBeat = nil
		}
	}
}

// heartbeat is the only timer of the streams: one ticker for the whole hub
// flags every watcher for a ping.
func (h *Hub) heartbeat(ctx context.Context, ticks <-chan time.Time, stop func()) {
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
			h.mu.Lock()
			for _, t := range h.tails {
				for w := range t.watchers {
					w.ping.Store(true)
					w.notify()
				}
			}
			h.mu.Unlock()
		}
	}
}

// snapshot is one row's state as sent to clients: its event frame, encoded
// once and shared by every watcher.
type snapshot struct {
	version int
	frame   []byte // "event: row\ndata: {...}\n"
	// expires is when the first signed URL in the frame stops working (zero
	// when the row has no image yet).
	expires time.Time
}

// state is a tail's immutable view; the tail replaces it whole on each change,
// so watchers read it without locks and never stall the tail.
type state struct {
	rows      []*snapshot
	totals    []byte // "event: batch\ndata: {...}\n"
	doneFrame []byte // "event: done\ndata: {...}\n"
	done      bool
}

type tail struct {
	hub      *Hub
	m        *ledger.Manifest
	tag      string                // the batch's tag in event ids, shared by its streams
	watchers map[*watcher]struct{} // guarded by hub.mu
	cur      atomic.Pointer[state]
	ctx      context.Context
	stop     context.CancelFunc
	ready    chan struct{} // closed after the first poll
	firstErr error         // set before ready closes

	// Owned by the run goroutine.
	gens   map[int]int64
	rows   []ledger.Row
	polled bool
}

func newTail(h *Hub, m *ledger.Manifest) *tail {
	ctx, cancel := context.WithCancel(context.Background())
	return &tail{
		hub: h, m: m, tag: batchTag(m.BatchID), watchers: map[*watcher]struct{}{}, ctx: ctx, stop: cancel,
		ready: make(chan struct{}), gens: map[int]int64{}, rows: make([]ledger.Row, len(m.Rows)),
	}
}

// run polls the ledger until the batch is final or the last watcher leaves. The
// interval adapts: the minimum while rows change or are being generated (a
// listing costs a fraction of a cent per thousand; an image, cents), growing by
// half on each quiet poll up to the maximum while rows only wait in the queue.
func (t *tail) run() {
	interval := t.hub.cfg.PollMin
	timer := time.NewTimer(0)
	defer timer.Stop()
	first := true
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-timer.C:
		}
		changed, err := t.poll(t.ctx)
		if err == nil {
			if old := t.stale(time.Now()); len(old) > 0 {
				if err = t.publish(t.rows, old); err == nil {
					changed = true
				}
			}
		}
		if first {
			t.firstErr = err
			close(t.ready)
			first = false
			if err != nil {
				return
			}
		}
		if err != nil && t.ctx.Err() == nil {
			t.hub.log.Warn("progress: polling the ledger failed", "batchId", t.m.BatchID, "error", err)
		}
		switch {
		case changed && t.running():
			t.broadcast()
			// Rows started together finish together: the rest of a burst
			// is looked for soon, not a whole interval after its first.
			interval = min(t.hub.cfg.PollMin, burstPoll)
		case changed:
			t.broadcast()
			interval = t.hub.cfg.PollMin
		case t.running():
			// A row is being generated: its result may land any moment, and
			// is looked for closely from when it can.
			interval = t.hub.cfg.PollMin
			if d, ok := t.untilResults(time.Now()); ok {
				interval = min(interval, d)
			}
		default:
			interval = min(interval*3/2, t.hub.cfg.PollMax)
		}
		if st := t.cur.Load(); st != nil && st.done {
			return
		}
		timer.Reset(interval)
	}
}

// burstPoll is how soon a tail polls again after a poll that saw rows change
// while others are still being generated: one extra read of the open rows
// per burst, where waiting the whole interval would hold every sibling's
// result back by up to that much.
const burstPoll = 50 * time.Millisecond

// rowGap is the least time between two writes of a row by the attempt that
// generates it (Cloud Storage takes one write per second per object): a
// running row's next result lands no sooner than that after its last write.
const rowGap = time.Second

// untilResults is how soon to look again for the results of running rows: a
// row's next write may land from rowGap after its last one (by the writer's
// clock), and is looked for from then, every burstPoll, for up to PollMin.
// ok is false when no running row's result is due that soon.
func (t *tail) untilResults(now time.Time) (d time.Duration, ok bool) {
	burst := min(t.hub.cfg.PollMin, burstPoll)
	for _, r := range t.rows {
		if r.Status != ledger.Running {
			continue
		}
		wait := r.UpdatedAt.Add(rowGap).Sub(now)
		switch {
		case wait > 0:
		case -wait < t.hub.cfg.PollMin:
			wait = burst
		default:
			continue
		}
		if !ok || wait < d {
			d, ok = wait, true
		}
	}
	return d, ok
}

// running reports whether any row was being generated at the last poll.
func (t *tail) running() bool {
	for _, r := range t.rows {
		if r.Status == ledger.Running {
			return true
		}
	}
	return false
}

func (t *tail) broadcast() {
	t.hub.mu.Lock()
	defer t.hub.mu.Unlock()
	for w := range t.watchers {
		w.notify()
	}
}

// poll reads what changed. Each row not yet final is read (one small read
// per open row; a final row never changes again), and only rows whose
// generation moved are published. A listing of the rows would be one request
// instead of up to ten, but Cloud Storage bills a listing as a class A
// operation, priced like ten or more reads, and a batch has at most ten rows.
// A finished batch is one read of its state.json.
func (t *tail) poll(ctx context.Context) (bool, error) {
	if !t.polled {
		f, err := t.hub.store.State(ctx, t.m.BatchID)
		switch {
		case err == nil && len(f.Rows) == len(t.m.Rows):
			t.polled = true
			return true, t.publish(f.Rows, allRows(len(f.Rows)))
		case err != nil && !errors.Is(err, ledger.ErrNotFound):
			return false, err
		}
	}
	next := append([]ledger.Row(nil), t.rows...)
	gens := make([]int64, len(next))
	read := make([]bool, len(next))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(10)
	for i := range t.m.Rows {
		if t.polled && t.rows[i].Status.Terminal() {
			continue
		}
		g.Go(func() error {
			r, gen, err := t.hub.store.ReadRow(gctx, t.m, i)
			next[i], gens[i], read[i] = r, gen, err == nil
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return false, err
	}
	var changed []int
	for i := range next {
		if g, seen := t.gens[i]; read[i] && (!t.polled || !seen || g != gens[i]) {
			t.gens[i] = gens[i]
			changed = append(changed, i)
		}
	}
	t.polled = true
	if len(changed) == 0 {
		return false, nil
	}
	return true, t.publish(next, changed)
}

func allRows(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// publish encodes the changed rows and the totals and swaps in the new state.
func (t *tail) publish(rows []ledger.Row, changed []int) error {
	prev := t.cur.Load()
	st := &state{rows: make([]*snapshot, len(rows))}
	if prev != nil {
		copy(st.rows, prev.rows)
	}
	for _, i := range changed {
		snap, err := t.encodeRow(i, rows[i])
		if err != nil {
			return err
		}
		st.rows[i] = snap
		t.rows[i] = rows[i]
	}
	totals := api.NewTotals(t.rows)
	b, err := json.Marshal(totals)
	if err != nil {
		return err
	}
	st.totals, st.doneFrame = frame("batch", b), frame("done", b)
	st.done = true
	for i, r := range t.rows {
		if st.rows[i] == nil || !r.Status.Terminal() {
			st.done = false
		}
	}
	t.cur.Store(st)
	return nil
}

func (t *tail) encodeRow(i int, r ledger.Row) (*snapshot, error) {
	view, err := api.NewRow(t.m.BatchID, t.m.Rows[i], r, t.hub.sign)
	if err != nil {
		return nil, fmt.Errorf("progress: row %d: %w", i, err)
	}
	b, err := json.Marshal(view)
	if err != nil {
		return nil, err
	}
	snap := &snapshot{version: r.Version, frame: frame("row", b)}
	for _, v := range view.Variants {
		if v.ExpiresAt != nil && (snap.expires.IsZero() || v.ExpiresAt.Before(snap.expires)) {
			snap.expires = *v.ExpiresAt
		}
	}
	return snap, nil
}

// stale lists the rows whose URLs expire within RefreshBefore: they are signed
// again and sent as fresh snapshots, so a client never holds a dead URL.
func (t *tail) stale(now time.Time) []int {
	st := t.cur.Load()
	if st == nil {
		return nil
	}
	var out []int
	for i, snap := range st.rows {
		if snap != nil && !snap.expires.IsZero() && snap.expires.Sub(now) < t.hub.cfg.RefreshBefore {
			out = append(out, i)
		}
	}
	return out
}

// frame renders an event's type and data lines (JSON has no raw newlines).
func frame(event string, data []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(event) + len(data) + 16)
	b.WriteString("event: ")
	b.WriteString(event)
	b.WriteString("\ndata: ")
	b.Write(data)
	b.WriteByte('\n')
	return b.Bytes()
}
