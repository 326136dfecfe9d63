package submit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/assetgen/assetgen/shared/backlog"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/problem"
)

// queuedRetryAfter is the wait suggested to a user at the queued-row cap:
// about how long a batch of dry-run rows takes to drain.
const queuedRetryAfter = 60

// queuedCount is one listing of the caller's queued-row markers, started as
// soon as the submit is allowed, so that it rides along with a round trip the
// submit makes anyway: the Idempotency-Key's look-up, a live run's budget
// reads, the references' fetches — or, for a dry run without a key that this
// instance has no reason to doubt, the batch's own create-once writes.
type queuedCount struct {
	done   chan struct{}
	cancel context.CancelFunc
	queued backlog.Queued
	err    error
}

// startCount starts counting user's queued rows (nil when there is no cap).
// The count is detached from the client's connection: a client that goes
// away mid-submit must not fail it, since a failed count lets the batch by.
func (s *server) startCount(ctx context.Context, user string) *queuedCount {
	if s.cfg.MaxQueuedRows <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	c := &queuedCount{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(c.done)
		defer cancel()
		c.queued, c.err = backlog.New(s.Bucket).Queued(ctx, user)
	}()
	return c
}

// ready reports whether the count is in.
func (c *queuedCount) ready() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// drop abandons a count the submit no longer needs (a retry of a batch an
// earlier attempt began is not held to the cap).
func (c *queuedCount) drop() {
	if c != nil {
		c.cancel()
	}
}

// beforeWrites applies the cap before the batch's first write, unless the
// batch may be written while its count is still under way: a dry run without
// an Idempotency-Key (a refused one then only has its own writes to roll
// back: no key, no reservation), whose count is not in yet, and which the
// instance's last count of the user leaves room for (capHints).
func (s *server) beforeWrites(ctx context.Context, sub *submission) error {
	c := sub.count
	if c == nil {
		return nil
	}
	if sub.key == "" && sub.spec.RunMode == ledger.DryRun && !c.ready() &&
		s.hints.begin(sub.user, len(sub.spec.Rows), s.cfg.MaxQueuedRows, s.now()) {
		sub.countBeside = true
		return nil
	}
	return s.applyCap(ctx, sub, "")
}

// besideWrites applies the cap to a batch written while it was counted:
// the listing may or may not show the batch's own marker, so it is left out.
// A refusal is answered like one before any write, and the failed submit's
// rollback removes what the batch wrote.
func (s *server) besideWrites(ctx context.Context, sub *submission, batchID string) error {
	if !sub.countBeside {
		return nil
	}
	sub.countBeside = false
	defer s.hints.end(sub.user)
	err := s.applyCap(ctx, sub, batchID)
	if err != nil {
		obs.Logger(ctx).Info("submit: over the queued-row cap once written; rolled back", "batchId", batchID)
	}
	return err
}

// capFirst answers the cap's refusal instead of err when the batch is over
// it: the cap is checked before the budget and the references, as if the
// count had come first.
func (s *server) capFirst(ctx context.Context, sub *submission, err error) error {
	if cerr := s.applyCap(ctx, sub, ""); cerr != nil {
		return cerr
	}
	return err
}

// checkQueued counts the caller's queued rows and applies the cap at once.
func (s *server) checkQueued(ctx context.Context, sub *submission) error {
	sub.count = s.startCount(ctx, sub.user)
	return s.applyCap(ctx, sub, "")
}

// applyCap waits for the count and refuses a batch that would take the
// user's rows in unfinished batches over the cap (MaxQueuedRows), leaving
// out the batch except. It uses the count once. Submits of one user that
// overlap each count only the markers that exist when their listing runs, so
// together they can pass the cap by the rows of the overlapping batches. A
// batch counted beside its writes lists while its own marker lands, so an
// overlapping submit is likelier to see it: that narrows the window, never
// widens it, and near the cap both submits may be refused.
func (s *server) applyCap(ctx context.Context, sub *submission, except string) error {
	c := sub.count
	if c == nil {
		return nil
	}
	sub.count = nil
	<-c.done
	if c.err != nil {
		// An abuse cap, not a ledger invariant: a count that fails lets the
		// batch through (the budget still bounds what it costs), and the
		// writes that follow meet the storage fault if it lasts.
		obs.Logger(ctx).Warn("submit: counting queued rows failed; the batch is not held to the cap", "error", c.err)
		return nil
	}
	queued, rows, max := c.queued.Rows(except), len(sub.spec.Rows), s.cfg.MaxQueuedRows
	s.hints.observe(sub.user, queued, s.now())
	if queued+rows <= max {
		return nil
	}
	return &problem.Error{
		Code:       problem.RateLimited,
		RetryAfter: queuedRetryAfter,
		Detail: fmt.Sprintf("%d rows of your batches are still queued or running and this batch adds %d; at most %d may be: "+
			"retry when earlier batches have finished", queued, rows, max),
		Extra: map[string]any{"queuedRows": queued, "batchRows": rows, "maxQueuedRows": max},
	}
}

// markQueued records the new batch among the user's unfinished ones (before
// any of its tasks exists, so completion always finds the marker to clear).
// It returns the undo of a marker this call may have made (nil when an
// earlier attempt made it): it goes with the batch. A marker whose write
// failed may have landed all the same, its answer lost, so a failure returns
// an undo too.
func (s *server) markQueued(ctx context.Context, m *ledger.Manifest) (func(context.Context), error) {
	e := backlog.Entry{User: m.Owner, BatchID: m.BatchID, Rows: len(m.Rows)}
	markers := backlog.New(s.Bucket)
	gen, err := markers.Mark(ctx, e)
	clear := func(ctx context.Context) {
		if err := markers.ClearAt(ctx, e, gen); err != nil {
			obs.Logger(ctx).Warn("submit: clearing the queued marker of a rolled-back batch failed; the housekeeping job removes it", "batchId", m.BatchID, "error", err)
		}
	}
	switch {
	case err != nil:
		return clear, fmt.Errorf("submit: %w", err)
	case gen == 0:
		return nil, nil
	}
	return clear, nil
}

// hintIdle is how long the instance remembers a user who no longer submits.
const hintIdle = 10 * time.Minute

// capHints is what this instance remembers of each user's queued rows, to
// decide whether a submit may write its batch before its count is in.
// Writing first saves the count's round trip, but a refused batch then costs
// its writes and their deletes instead of one listing; so a user whose last
// count here left no room for the batch is counted first, and at most one
// submit per user writes first at a time. A user flooding submits at the cap
// therefore pays for writes once per instance (the first refusal teaches the
// instance), and again only after a count here showed room that other
// instances' batches took meanwhile. The hints are only hints: every submit
// is held to a fresh count either way.
type capHints struct {
	mu    sync.Mutex
	users map[string]*capHint
	swept time.Time
}

// capHint is one user's: rows is their queued rows as last counted here,
// plus the batches accepted here since (0 for a user not counted yet).
type capHint struct {
	rows    int
	writing bool // a submit of theirs is writing before its count is in
	seen    time.Time
}

// mayWriteFirst says whether a batch of rows may be written before its
// count is in, under a cap of max.
func (h capHint) mayWriteFirst(rows, max int) bool {
	return !h.writing && h.rows+rows <= max
}

// begin reports whether user's batch of rows may be written before its count
// is in; if so, the caller calls end once the count is in.
func (c *capHints) begin(user string, rows, max int, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.user(user, now)
	if !h.mayWriteFirst(rows, max) {
		return false
	}
	h.writing = true
	return true
}

// end is called when the count of a batch begin let write first is in.
func (c *capHints) end(user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h := c.users[user]; h != nil {
		h.writing = false
	}
}

// observe records a count of user's queued rows.
func (c *capHints) observe(user string, rows int, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.user(user, now).rows = rows
}

// accepted adds a batch accepted here to user's rows.
func (c *capHints) accepted(user string, rows int, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.user(user, now).rows += rows
}

// user is user's hint, made if needed; c.mu is held. Users idle for
// hintIdle are forgotten, at most once a minute.
func (c *capHints) user(user string, now time.Time) *capHint {
	if c.users == nil {
		c.users = map[string]*capHint{}
	}
	h := c.users[user]
	if h == nil {
		if now.Sub(c.swept) > time.Minute {
			c.swept = now
			for u, old := range c.users {
				if !old.writing && now.Sub(old.seen) > hintIdle {
					delete(c.users, u)
				}
			}
		}
		h = &capHint{}
		c.users[user] = h
	}
	h.seen = now
	return h
}
