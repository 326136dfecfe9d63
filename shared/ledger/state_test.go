package ledger_test

import (
	"errors"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/ledger"
)

func TestBatchStateTransitions(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 14, 21, 38, 123456789, time.UTC)
	m := &ledger.Manifest{BatchID: "b", CreatedAt: t0, Rows: []ledger.ManifestRow{{Index: 0, Variants: 2}, {Index: 1, Variants: 1}}}
	op := func(d time.Duration) ledger.Op { return ledger.Op{Actor: "a", Now: t0.Add(d)} }
	final := []ledger.Row{{Index: 0, Status: ledger.Done, Variants: []ledger.Variant{{Status: ledger.Done}}}, {Index: 1, Status: ledger.Cancelled, Variants: []ledger.Variant{{Status: ledger.Cancelled}}}}
	// A batch with a cancelled row reads cancelled, its made image kept.
	accepted, err := ledger.AcceptBatch(nil, m, op(0))
	if err != nil {
		t.Fatal(err)
	}
	started, _ := ledger.StartBatch(&accepted, "b", 1, op(time.Second))
	cancelled, _ := ledger.CancelBatch(&started, "b", op(2*time.Second))
	finished, _ := ledger.FinishBatch(&cancelled, "b", final, op(3*time.Second))

	tests := []struct {
		name       string
		got        func() (ledger.State, error)
		noChange   bool
		event      ledger.Event
		status     ledger.Status
		at         time.Time
		previous   string
		cancelFlag bool
	}{
		{"accepted", func() (ledger.State, error) { return accepted, nil }, false, ledger.Accepted, ledger.Queued, t0, "", false},
		{"accepted twice", func() (ledger.State, error) { return ledger.AcceptBatch(&accepted, m, op(0)) }, true, ledger.Accepted, ledger.Queued, t0, "", false},
		{"first row starts", func() (ledger.State, error) { return started, nil }, false, ledger.Started, ledger.Running, t0.Add(time.Second), accepted.Snapshot, false},
		{"second row starts", func() (ledger.State, error) { return ledger.StartBatch(&started, "b", 0, op(5*time.Second)) }, true, ledger.Started, ledger.Running, t0.Add(time.Second), accepted.Snapshot, false},
		{"starts without an accepted state", func() (ledger.State, error) { return ledger.StartBatch(nil, "b", 0, op(0)) }, false, ledger.Started, ledger.Running, t0, "", false},
		{"a row starts after a cancel", func() (ledger.State, error) { return ledger.StartBatch(&cancelled, "b", 0, op(5*time.Second)) }, true, ledger.CancelRequested, ledger.Running, t0.Add(2 * time.Second), started.Snapshot, true},
		{"cancelled", func() (ledger.State, error) { return cancelled, nil }, false, ledger.CancelRequested, ledger.Running, t0.Add(2 * time.Second), started.Snapshot, true},
		{"cancelled twice", func() (ledger.State, error) { return ledger.CancelBatch(&cancelled, "b", op(9*time.Second)) }, true, ledger.CancelRequested, ledger.Running, t0.Add(2 * time.Second), started.Snapshot, true},
		{"cancelled before any row starts", func() (ledger.State, error) { return ledger.CancelBatch(&accepted, "b", op(time.Second)) }, false, ledger.CancelRequested, ledger.Queued, t0.Add(time.Second), accepted.Snapshot, true},
		{"finished keeps the cancel", func() (ledger.State, error) { return finished, nil }, false, ledger.Finished, ledger.Cancelled, t0.Add(3 * time.Second), cancelled.Snapshot, true},
		{"finished twice", func() (ledger.State, error) { return ledger.FinishBatch(&finished, "b", nil, op(9*time.Second)) }, true, ledger.Finished, ledger.Cancelled, t0.Add(3 * time.Second), cancelled.Snapshot, true},
		{"cancel after finishing", func() (ledger.State, error) { return ledger.CancelBatch(&finished, "b", op(9*time.Second)) }, true, ledger.Finished, ledger.Cancelled, t0.Add(3 * time.Second), cancelled.Snapshot, true},
		{"a clock behind the last writer", func() (ledger.State, error) { return ledger.FinishBatch(&started, "b", final, op(-time.Hour)) }, false, ledger.Finished, ledger.Cancelled, t0.Add(time.Second + time.Microsecond), started.Snapshot, true}, // the rows show a cancel
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			st, err := tt.got()
			is.Equal(errors.Is(err, ledger.ErrNoChange), tt.noChange)
			is.Equal(st.Event, tt.event)
			is.Equal(st.Status, tt.status)
			is.True(st.At.Equal(tt.at))
			is.Equal(st.Snapshot, ledger.SnapshotName(tt.at))
			is.Equal(st.Previous, tt.previous)
			is.Equal(st.CancelRequested, tt.cancelFlag)
		})
	}
}

func TestFinalIsOnlyAFinishedState(t *testing.T) {
	is := is.New(t)
	rows := []ledger.Row{{Index: 0, Status: ledger.Failed}}
	st, err := ledger.FinishBatch(nil, "b", rows, ledger.Op{Now: time.Now()})
	is.NoErr(err)
	f, ok := st.Final()
	is.True(ok)
	is.Equal(f.Summary.Status, ledger.Failed)
	is.Equal(len(f.Rows), 1)
	is.True(f.FinishedAt.Equal(st.At))
	started, _ := ledger.StartBatch(nil, "b", 0, ledger.Op{Now: time.Now()})
	_, ok = started.Final()
	is.True(!ok) // a running batch has no final rows
	old := ledger.State{BatchID: "b", FinishedAt: time.Now(), Summary: &f.Summary, Rows: rows}
	is.True(old.Done()) // the final-only state.json older releases wrote
}

func TestSnapshotNamesSortInTimeOrder(t *testing.T) {
	is := is.New(t)
	a := time.Date(2026, 12, 6, 9, 59, 59, 999999000, time.UTC)
	b := a.Add(time.Microsecond)
	is.Equal(ledger.SnapshotName(a), "state-20261206T095959.999999Z.json")
	is.True(ledger.SnapshotName(a) < ledger.SnapshotName(b))
	is.True(ledger.SnapshotName(b) < ledger.SnapshotName(b.Add(time.Hour*24*40)))
	is.True(ledger.IsSnapshotName(ledger.SnapshotName(b)))
	for _, bad := range []string{"state.json", "state-.json", "state-2026.json", "state-20261206T095959.999999Z.json.tmp", "../state-20261206T095959.999999Z.json"} {
		is.True(!ledger.IsSnapshotName(bad)) // not a snapshot name
	}
}
