package progress

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/metrics"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/problem"
)

// handleStream serves GET /progress/{batchId} as text/event-stream, in three
// steps: admit decides whether the request gets a stream, open starts it, and
// loop feeds it until the batch is done, the client leaves or the instance
// shuts down.
func (h *Hub) handleStream() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := h.admit(w, r)
		if !ok {
			return
		}
		defer h.unsubscribe(a.tail, a.watcher)
		if !h.open(w, a) {
			return
		}
		h.loop(r.Context(), a)
	})
}

// admission is a request let through: the stream's position and the tail it
// watches, which the handler leaves when the stream ends.
type admission struct {
	id      string
	tail    *tail
	watcher *watcher
	stream  *stream
}

// admit checks the request (batch id, ownership, shutdown, memory headroom),
// joins the batch's tail for its current state, and reads where the client
// resumes from. The finished check needs that state, so admission holds the
// subscription. When the request gets no stream, admit answers it (a
// problem, or 204 for a finished batch with nothing new), leaves the tail
// again, and returns false.
func (h *Hub) admit(w http.ResponseWriter, r *http.Request) (*admission, bool) {
	ctx := r.Context()
	id := r.PathValue("batchId")
	if !batch.ValidID(id) {
		problem.Write(w, r, problem.New(problem.BatchNotFound, "no batch %q", id))
		return nil, false
	}
	select {
	case <-h.closing:
		problem.Write(w, r, &problem.Error{Code: problem.NotReady, Detail: "this instance is shutting down; reconnect", RetryAfter: 1})
		return nil, false
	default:
	}
	m, err := h.manifest(ctx, id)
	// Only the owner's streams open; anyone else's batch is a missing one.
	if p, _ := auth.From(ctx); errors.Is(err, ledger.ErrNotFound) || (err == nil && m.Owner != p.UserID) {
		problem.Write(w, r, problem.New(problem.BatchNotFound, "no batch %q", id))
		return nil, false
	}
	if err != nil {
		if ctx.Err() == nil { // else the client left: nothing to answer
			problem.Write(w, r, fmt.Errorf("progress: reading the batch: %w", err))
		}
		return nil, false
	}
	if h.cfg.MinHeadroom > 0 {
		if mem := metrics.RecentHeadroom(); mem.Ratio < h.cfg.MinHeadroom {
			metrics.StreamsRefused.Inc()
			problem.Write(w, r, &problem.Error{Code: problem.Overloaded, RetryAfter: 5,
				Detail: "this instance is short of memory; reconnect in a few seconds"})
			return nil, false
		}
	}

	t, wt := h.subscribe(m)
	admitted := false
	defer func() {
		if !admitted {
			h.unsubscribe(t, wt)
		}
	}()
	select {
	case <-ctx.Done():
		return nil, false
	case <-t.ready:
	}
	if t.firstErr != nil {
		if ctx.Err() == nil {
			problem.Write(w, r, fmt.Errorf("progress: reading the batch: %w", t.firstErr))
		}
		return nil, false
	}

	tag := batchTag(id)
	seen, held, resumed := parseID(lastEventID(r), tag, len(m.Rows))
	if !resumed {
		seen = make([]int, len(m.Rows))
		for i := range seen {
			seen[i] = -1
		}
	}
	s := &stream{w: w, rc: http.NewResponseController(w), tag: tag, seen: seen, sent: make([]*snapshot, len(seen)),
		held: held, writeTimeout: h.cfg.WriteTimeout, refresh: h.cfg.RefreshBefore,
		// URLs the client kept from an earlier connection that are about to
		// expire are replaced: those rows are sent again.
		stale: resumed && !held.IsZero() && time.Until(held) < h.cfg.RefreshBefore}
	// A finished batch has nothing to stream unless the client missed states:
	// 204 tells EventSource to stop reconnecting.
	if st := t.cur.Load(); st.done && (!resumed || !s.pending(st)) {
		w.WriteHeader(http.StatusNoContent)
		return nil, false
	}
	admitted = true
	return &admission{id: id, tail: t, watcher: wt, stream: s}, true
}

// open starts the event stream: headers, the reconnect delay for EventSource,
// and a first flush so the client sees the stream open before any event. It
// reports false when the client is already gone.
func (h *Hub) open(w http.ResponseWriter, a *admission) bool {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: %d\n\n", h.cfg.Retry.Milliseconds())
	return a.stream.rc.Flush() == nil
}

// loop sends what the client lacks each time the tail publishes or the
// heartbeat ticks (pings, URL refreshes and the duration limit ride on the
// heartbeat, so a stream has no timer of its own), until the batch is done,
// the client leaves or the instance drains.
func (h *Hub) loop(ctx context.Context, a *admission) {
	s, t, wt := a.stream, a.tail, a.watcher
	log := obs.Logger(ctx).With("batchId", a.id)
	started := time.Now()
	for {
		st := t.cur.Load()
		if err := s.send(st); err != nil {
			log.Debug("progress: client went away", "error", err)
			return
		}
		if st.done {
			log.Info("progress: stream finished", "duration", time.Since(started))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-h.closing:
			// Shutting down: the client reconnects (EventSource does so by
			// itself) and resumes on another instance from its Last-Event-ID.
			_ = s.write([]byte("event: reconnect\ndata: {}\n\n"))
			return
		case <-wt.wake:
		}
		if wt.ping.Swap(false) {
			// Checked on the heartbeat, so streams need no timer of their own:
			// end before the limit rather than after it.
			if time.Since(started)+h.cfg.Heartbeat >= h.cfg.MaxDuration {
				_ = s.write([]byte("event: reconnect\ndata: {}\n\n"))
				return
			}
			s.pingDue = true
		}
	}
}

// lastEventID is the Last-Event-ID header, or the lastEventId query parameter
// for clients that cannot set headers on their first connection.
func lastEventID(r *http.Request) string {
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		return id
	}
	return r.URL.Query().Get("lastEventId")
}

// stream is one client's position: the row versions it has seen, the
// snapshots it was sent, and when the URLs it kept from before expire.
type stream struct {
	w            http.ResponseWriter
	rc           *http.ResponseController
	tag          string
	seen         []int
	sent         []*snapshot
	held         time.Time // expiry of URLs kept from an earlier connection
	stale        bool      // those URLs must be replaced
	refresh      time.Duration
	writeTimeout time.Duration
	pingDue      bool
}

// due reports whether row i's snapshot is news to this client: a newer
// version, the same version with fresh URLs, or a row whose URLs it kept from
// an earlier connection are about to expire.
func (s *stream) due(i int, snap *snapshot) bool {
	if snap == nil {
		return false
	}
	if s.sent[i] != nil {
		return snap != s.sent[i] && snap.version >= s.seen[i]
	}
	if snap.version > s.seen[i] {
		return true
	}
	return s.stale && snap.version == s.seen[i] && !snap.expires.IsZero()
}

// heldExpiry is when the first URL the client now holds expires: the ones sent
// on this connection, and those kept from before for rows not sent again.
func (s *stream) heldExpiry() time.Time {
	var first time.Time
	keep := func(t time.Time) {
		if !t.IsZero() && (first.IsZero() || t.Before(first)) {
			first = t
		}
	}
	for _, snap := range s.sent {
		if snap != nil {
			keep(snap.expires)
		}
	}
	if !s.stale {
		keep(s.held)
	}
	return first
}

func (s *stream) pending(st *state) bool {
	for i, snap := range st.rows {
		if s.due(i, snap) {
			return true
		}
	}
	return false
}

// send writes every row the client lacks, then the totals, then done or a ping.
func (s *stream) send(st *state) error {
	s.deadline()
	// URLs kept from an earlier connection age too: once they come within the
	// refresh margin, their rows are sent again (the heartbeat wakes us).
	if !s.stale && !s.held.IsZero() && time.Until(s.held) < s.refresh {
		s.stale = true
	}
	wrote := false
	for i, snap := range st.rows {
		if !s.due(i, snap) {
			continue
		}
		s.seen[i], s.sent[i] = snap.version, snap
		if err := s.event(snap.frame); err != nil {
			return err
		}
		wrote = true
	}
	if wrote {
		if err := s.event(st.totals); err != nil {
			return err
		}
	}
	switch {
	case st.done:
		if err := s.event(st.doneFrame); err != nil {
			return err
		}
	case s.pingDue && !wrote:
		if err := s.write([]byte("event: ping\ndata: {}\n\n")); err != nil {
			return err
		}
	case !wrote:
		return nil
	}
	s.pingDue = false
	return s.rc.Flush()
}

// event writes a frame with the stream's current id.
func (s *stream) event(frame []byte) error {
	if _, err := s.w.Write([]byte("id: " + formatID(s.tag, s.seen, s.heldExpiry()) + "\n")); err != nil {
		return err
	}
	if _, err := s.w.Write(frame); err != nil {
		return err
	}
	_, err := s.w.Write([]byte{'\n'})
	return err
}

// deadline bounds the next writes: a client that stops reading is dropped,
// not waited for.
func (s *stream) deadline() {
	if s.writeTimeout > 0 {
		_ = s.rc.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	}
}

func (s *stream) write(b []byte) error {
	s.deadline()
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	return s.rc.Flush()
}
