package progress

import (
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/ledger"
)

// A running row's next result is looked for from rowGap after its last write,
// then every burstPoll while it may still land; rows that are not running, or
// long overdue, set no time.
func TestUntilResults(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	running := func(ago time.Duration) ledger.Row {
		return ledger.Row{Status: ledger.Running, UpdatedAt: now.Add(-ago)}
	}
	cases := []struct {
		name string
		rows []ledger.Row
		want time.Duration
		ok   bool
	}{
		{"nothing running", []ledger.Row{{Status: ledger.Queued, UpdatedAt: now}, {Status: ledger.Done, UpdatedAt: now}}, 0, false},
		{"just claimed", []ledger.Row{running(0)}, rowGap, true},
		{"claimed 700ms ago", []ledger.Row{running(700 * time.Millisecond)}, 300 * time.Millisecond, true},
		{"the earliest of several", []ledger.Row{running(200 * time.Millisecond), running(900 * time.Millisecond)}, 100 * time.Millisecond, true},
		{"due: look again soon", []ledger.Row{running(rowGap + 100*time.Millisecond)}, burstPoll, true},
		{"long overdue: the regular polls look", []ledger.Row{running(rowGap + time.Second)}, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			tl := &tail{hub: &Hub{cfg: Config{PollMin: 250 * time.Millisecond, PollMax: 2 * time.Second}}, rows: c.rows}
			d, ok := tl.untilResults(now)
			is.Equal(ok, c.ok)
			is.Equal(d, c.want)
		})
	}
}

// A row's result is seen from about rowGap after its last write, even when
// the regular polls are an hour apart: once the tail's first polls are over
// (the first, and the one a burst of changes adds), the results written are
// found by the look it takes when they can land.
func TestResultsAreLookedForWhenTheyCanLand(t *testing.T) {
	is := is.New(t)
	ctx := testCtx(t, 20*time.Second)
	faults := devstack.NewFaults(1)
	st := newStack(t, faults)
	cfg := testConfig()
	cfg.PollMin, cfg.PollMax, cfg.Heartbeat = time.Hour, time.Hour, time.Hour // no regular poll after the first
	in := st.newInstance(t, cfg, nil)
	d := st.newBatch(t, 2, 1, 0)
	d.start(0)
	d.start(1)

	faults.Reset()
	s := in.open(ctx, t, d.id(), "")
	s.until(ctx, func(e event) bool { return e.Type == "batch" })
	// The manifest, state.json and both rows, then both rows again in the
	// poll that follows a change.
	is.True(eventually(ctx, func() bool { return faults.Counts().Reads >= 1+1+2+2 }))
	r0, r1 := d.image(0, 0), d.finish(1)
	s.untilRow(ctx, r0.Index, r0.Version) // seen without a regular poll
	s.untilRow(ctx, r1.Index, r1.Version)
}
