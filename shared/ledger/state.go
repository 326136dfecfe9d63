package ledger

import (
	"strings"
	"time"
)

// Event is a batch-level change. Each one is kept: state.json holds the newest
// state, and every state is also written once, immutable, as a snapshot
// state-{timestamp}.json beside it.
type Event string

// Batch-level events, in the order they can happen. Cancelled is optional;
// finished always comes last, unless a retry (Retried, retry.go) opens a new
// round, which starts, may be cancelled, and finishes in turn.
const (
	// Accepted: the submit recorded the batch and queued its rows.
	Accepted Event = "accepted"
	// Started: the first row began generating.
	Started Event = "started"
	// CancelRequested: the owner (or an interrupted submit) cancelled the batch;
	// rows already generating finish the variants they are making.
	CancelRequested Event = "cancelled"
	// Finished: every row is final; the snapshot holds the final rows.
	Finished Event = "finished"
)

// State is a batch-level snapshot: what state.json holds, and what each
// state-{timestamp}.json keeps for good. Snapshot names this state's own
// immutable copy, Previous the one before it, so the copies form a chain.
type State struct {
	BatchID string `json:"batchId"`
	Event   Event  `json:"event"`
	// At is when the state was recorded: an event's own moment is in the rows'
	// histories (a start is recorded up to a second or so after the row's).
	At       time.Time `json:"at"`
	Snapshot string    `json:"snapshot"`
	Previous string    `json:"previous,omitempty"`
	// Status is the batch's: queued, running, then done, failed or cancelled.
	Status    Status `json:"status"`
	Actor     string `json:"actor"`
	RequestID string `json:"requestId,omitempty"`
	// Row is the row whose start made the batch start (Started only).
	Row *int `json:"row,omitempty"`
	// CancelRequested stays set on every snapshot after a cancel (until a
	// retry opens a new round).
	CancelRequested bool `json:"cancelRequested,omitempty"`
	// Round counts the batch's retries; Retry is the current round's (every
	// state of a round carries it).
	Round int    `json:"round,omitempty"`
	Retry *Retry `json:"retry,omitempty"`
	// The final rows and totals (Finished only; Accepted carries the totals).
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	Summary    *Summary  `json:"summary,omitempty"`
	Rows       []Row     `json:"rows,omitempty"`
	// Settled is on a finished round's snapshot only: that snapshot is
	// written once the round's once-per-batch effects are done, and says
	// what they did (state.json never carries it).
	Settled *Settlement `json:"settled,omitempty"`
}

// Settlement is what a round's once-per-batch effects did.
type Settlement struct {
	At time.Time `json:"at"`
	// ChargedUSD is what the round added to its owner's spending.
	ChargedUSD float64 `json:"chargedUsd"`
	// Undelivered counts the round's notifications that failed for a reason
	// a retry may fix (their outcomes are in effects.json).
	Undelivered int `json:"undelivered,omitempty"`
}

// Done reports whether the state is the batch's final one. A state.json
// without an event is the final-only form older releases wrote.
func (s State) Done() bool {
	return s.Event == Finished || s.Event == "" && !s.FinishedAt.IsZero() && s.Summary != nil
}

// Final is the finished batch's rows and totals (ok false before it finished).
func (s State) Final() (Final, bool) {
	if !s.Done() || s.Summary == nil {
		return Final{}, false
	}
	return Final{BatchID: s.BatchID, FinishedAt: s.FinishedAt, Summary: *s.Summary, Rows: s.Rows}, true
}

// snapshotLayout is the compact RFC 3339 form used in snapshot names: fixed
// width, so names sort in time order.
const snapshotLayout = "20060102T150405.000000Z"

// SnapshotName is the name, within the batch's prefix, of the snapshot taken
// at t.
func SnapshotName(t time.Time) string {
	return "state-" + t.UTC().Format(snapshotLayout) + ".json"
}

// IsSnapshotName reports whether name (within a batch's prefix) is a snapshot.
func IsSnapshotName(name string) bool {
	ts, ok := strings.CutPrefix(name, "state-")
	if !ok {
		return false
	}
	ts, ok = strings.CutSuffix(ts, ".json")
	if !ok {
		return false
	}
	_, err := time.Parse(snapshotLayout, ts)
	return err == nil
}

// next builds the state that follows cur (nil before the first) for ev. Its
// time never goes back from cur's, even across instances whose clocks
// disagree, so snapshot names keep the order of the events.
func next(cur *State, batchID string, ev Event, op Op, status Status) State {
	at := op.Now.UTC()
	s := State{BatchID: batchID, Event: ev, Status: status, Actor: op.Actor, RequestID: op.RequestID}
	if cur != nil {
		if floor := cur.At.Add(time.Microsecond); at.Before(floor) {
			at = floor
		}
		s.Previous, s.CancelRequested = cur.Snapshot, cur.CancelRequested
		s.Round, s.Retry = cur.Round, cur.Retry
	}
	s.At, s.Snapshot = at, SnapshotName(at)
	return s
}

// AcceptBatch is the batch's first state. A batch that has a state already is
// left alone (ErrNoChange).
func AcceptBatch(cur *State, m *Manifest, op Op) (State, error) {
	if cur != nil {
		return *cur, ErrNoChange
	}
	s := next(nil, m.BatchID, Accepted, op, Queued)
	rows := make([]Row, len(m.Rows))
	for i, mr := range m.Rows {
		rows[i] = NewRow(mr)
	}
	sum := Summarize(rows)
	s.Summary = &sum
	return s, nil
}

// StartBatch records that row began generating, if it is the first row to (of
// the batch, or of a retry round): a
// started or finished batch is left alone (ErrNoChange). A cancel recorded
// before any start does not hide a row that had begun meanwhile, and a batch
// whose accepted state is missing starts all the same.
func StartBatch(cur *State, batchID string, row int, op Op) (State, error) {
	if cur != nil && cur.Event != Accepted && cur.Event != Retried && (cur.Event != CancelRequested || cur.Status != Queued) {
		return *cur, ErrNoChange
	}
	s := next(cur, batchID, Started, op, Running)
	s.Row = &row
	return s, nil
}

// CancelBatch records the cancel of an unfinished batch; cancelling again, or a
// finished batch, changes nothing (ErrNoChange).
func CancelBatch(cur *State, batchID string, op Op) (State, error) {
	if cur != nil && (cur.Done() || cur.CancelRequested) {
		return *cur, ErrNoChange
	}
	status := Queued
	if cur != nil {
		status = cur.Status
	}
	s := next(cur, batchID, CancelRequested, op, status)
	s.CancelRequested = true
	return s, nil
}

// FinishBatch records the batch's final rows, once: a finished batch is left alone
// (ErrNoChange). The caller has checked that every row is final. A cancel the
// rows show is kept even when no cancelled state came first: a cancel that
// leaves no row running finishes the batch at once, in one state. A retry
// round finishes only once its rows were reset for it (ErrRoundNotBegun).
func FinishBatch(cur *State, batchID string, rows []Row, op Op) (State, error) {
	if cur != nil && cur.Done() {
		return *cur, ErrNoChange
	}
	if !roundBegun(cur, rows) {
		return *cur, ErrRoundNotBegun
	}
	sum := Summarize(rows)
	s := next(cur, batchID, Finished, op, sum.Status)
	s.FinishedAt, s.Summary, s.Rows = s.At, &sum, rows
	for _, r := range rows {
		s.CancelRequested = s.CancelRequested || r.CancelRequested || r.Status == Cancelled
	}
	return s, nil
}
