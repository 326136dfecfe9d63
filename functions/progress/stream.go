package progress

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/metrics"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/problem"
)

// handleStream serves GET /progress/{batchId} as text/event-stream, in
// steps: the caller is authenticated and counted against the per-user cap,
// admit decides whether the request gets a stream, open starts it, and loop
// feeds it until the batch is done, the client leaves or the instance shuts
// down.
func (h *Hub) handleStream(authn auth.Authenticator, users *userStreams) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := auth.Admit(authn, w, r)
		if !ok {
			return
		}
		// One user cannot hold every stream an instance serves; the count
		// drops when the handler returns, however the stream ended.
		if !users.acquire(p.UserID) {
			users.refuse(w, r)
			return
		}
		defer users.release(p.UserID)
		s, ok := h.admit(w, r, p)
		if !ok {
			return
		}
		defer h.unsubscribe(s.tail, &s.watcher)
		if !h.open(w, s) {
			return
		}
		// The stream keeps its request's end and names, not the request.
		h.loop(r.Context().Done(), logIDs{obs.RequestID(r.Context()), p.UserID}, s)
	})
}

// logIDs name a stream in its log lines.
type logIDs struct{ request, user string }

// admit checks the request (batch id, ownership, shutdown, memory headroom),
// joins the batch's tail for its current state, and reads where the client
// resumes from. The finished check needs that state, so admission holds the
// subscription. When the request gets no stream, admit answers it (a
// problem, or 204 for a finished batch with nothing new), leaves the tail
// again, and returns false.
func (h *Hub) admit(w http.ResponseWriter, r *http.Request, p auth.Principal) (*stream, bool) {
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
	if errors.Is(err, ledger.ErrNotFound) || (err == nil && m.Owner != p.UserID) {
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

	// The stream is the watcher the tail wakes: one allocation holds a
	// stream's whole state.
	s := &stream{w: w}
	s.wake = make(chan struct{}, 1)
	t := h.subscribe(m, &s.watcher)
	s.tail = t
	admitted := false
	defer func() {
		if !admitted {
			h.unsubscribe(t, &s.watcher)
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

	seen, held, resumed := parseID(lastEventID(r), t.tag, len(m.Rows))
	s.resumed, s.sent, s.held = seen, make([]*snapshot, len(m.Rows)), held
	// URLs the client kept from an earlier connection that are about to
	// expire are replaced: those rows are sent again.
	s.stale = resumed && !held.IsZero() && time.Until(held) < h.cfg.RefreshBefore
	// A finished batch has nothing to stream unless the client missed states:
	// 204 tells EventSource to stop reconnecting.
	if st := t.cur.Load(); st.done && (!resumed || !s.pending(st)) {
		w.WriteHeader(http.StatusNoContent)
		return nil, false
	}
	admitted = true
	return s, true
}

// open starts the event stream: headers, the reconnect delay for EventSource,
// and a first flush so the client sees the stream open before any event. It
// reports false when the client is already gone.
func (h *Hub) open(w http.ResponseWriter, s *stream) bool {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(h.retryFrame); err != nil {
		return false
	}
	return s.flush() == nil
}

// Frames without an id, written as they are.
var (
	pingFrame      = []byte("event: ping\ndata: {}\n\n")
	reconnectFrame = []byte("event: reconnect\ndata: {}\n\n")
	newline        = []byte{'\n'}
)

// loop sends what the client lacks each time the tail publishes or the
// heartbeat ticks (pings, URL refreshes and the duration limit ride on the
// heartbeat, so a stream has no timer of its own), until the batch is done
// (done: the request's end), the client leaves or the instance drains. An
// idle stream waits on two channels only: its request's end and its wake-up,
// which the tail, the heartbeat and Close all use.
func (h *Hub) loop(done <-chan struct{}, ids logIDs, s *stream) {
	started := time.Now()
	for {
		st := s.tail.cur.Load()
		if err := s.send(st); err != nil {
			h.log.Debug("progress: client went away", "requestId", ids.request, "userId", ids.user, "batchId", s.tail.m.BatchID, "error", err)
			return
		}
		if st.done {
			h.log.Info("progress: stream finished", "requestId", ids.request, "userId", ids.user, "batchId", s.tail.m.BatchID, "duration", time.Since(started))
			return
		}
		if h.draining() {
			// Shutting down: the client reconnects (EventSource does so by
			// itself) and resumes on another instance from its Last-Event-ID.
			_ = s.write(reconnectFrame)
			return
		}
		select {
		case <-done:
			return
		case <-s.wake:
		}
		if s.ping.Swap(false) {
			// Checked on the heartbeat, so streams need no timer of their own:
			// end before the limit rather than after it.
			if time.Since(started)+h.cfg.Heartbeat >= h.cfg.MaxDuration {
				_ = s.write(reconnectFrame)
				return
			}
			s.pingDue = true
		}
	}
}

// lastEventID is the Last-Event-ID header, or the lastEventId query parameter
// for clients that cannot set headers on their first connection. The query is
// parsed only when it may hold one: a stream's URL carries a long token the
// stream has no further use for.
func lastEventID(r *http.Request) string {
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		return id
	}
	if !strings.Contains(r.URL.RawQuery, "lastEventId") {
		return ""
	}
	return r.URL.Query().Get("lastEventId")
}

// stream is one client's position: the row versions it has seen, the
// snapshots it was sent, and when the URLs it kept from before expire. It is
// all a stream holds while idle, besides net/http's own connection state.
type stream struct {
	watcher
	tail *tail
	w    http.ResponseWriter
	// sent are the snapshots this connection sent; resumed the versions its
	// Last-Event-ID says the client holds (nil for a new client).
	sent    []*snapshot
	resumed []int
	held    time.Time // expiry of URLs kept from an earlier connection
	stale   bool      // those URLs must be replaced
	pingDue bool
}

// due reports whether row i's snapshot is news to this client: a newer
// version, the same version with fresh URLs, or a row whose URLs it kept from
// an earlier connection are about to expire.
func (s *stream) due(i int, snap *snapshot) bool {
	if snap == nil {
		return false
	}
	seen := s.seen(i)
	if s.sent[i] != nil {
		return snap != s.sent[i] && snap.version >= seen
	}
	if snap.version > seen {
		return true
	}
	return s.stale && snap.version == seen && !snap.expires.IsZero()
}

// seen is the version of row i the client holds (-1: none).
func (s *stream) seen(i int) int {
	switch {
	case s.sent[i] != nil:
		return s.sent[i].version
	case s.resumed != nil:
		return s.resumed[i]
	}
	return -1
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
	if !s.stale && !s.held.IsZero() && time.Until(s.held) < s.tail.hub.cfg.RefreshBefore {
		s.stale = true
	}
	wrote := false
	for i, snap := range st.rows {
		if !s.due(i, snap) {
			continue
		}
		s.sent[i] = snap
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
		if _, err := s.w.Write(pingFrame); err != nil {
			return err
		}
	case !wrote:
		return nil
	}
	s.pingDue = false
	return s.flush()
}

// idLines are the scratch buffers event ids are rendered in: an event costs
// no allocation of its own, and an idle stream holds no buffer.
var idLines = sync.Pool{New: func() any { return new([]byte) }}

// event writes a frame with the stream's current id.
func (s *stream) event(frame []byte) error {
	bp := idLines.Get().(*[]byte)
	b := append((*bp)[:0], "id: "...)
	b = append(appendID(b, s.tail.tag, len(s.sent), s.seen, s.heldExpiry()), '\n')
	_, err := s.w.Write(b)
	*bp = b
	idLines.Put(bp)
	if err != nil {
		return err
	}
	if _, err := s.w.Write(frame); err != nil {
		return err
	}
	_, err = s.w.Write(newline)
	return err
}

// deadline bounds the next writes: a client that stops reading is dropped,
// not waited for.
func (s *stream) deadline() {
	if d := s.tail.hub.cfg.WriteTimeout; d > 0 {
		_ = http.NewResponseController(s.w).SetWriteDeadline(time.Now().Add(d))
	}
}

func (s *stream) flush() error { return http.NewResponseController(s.w).Flush() }

func (s *stream) write(b []byte) error {
	s.deadline()
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	return s.flush()
}
