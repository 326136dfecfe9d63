package main

import (
	"errors"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/ledger"
)

func TestVerdict(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	p := policy{stuckAfter: 15 * time.Minute, maxAttempts: 3}
	created := now.Add(-time.Hour)
	lease := func(until time.Duration) *ledger.Lease { return &ledger.Lease{Holder: "h", Until: now.Add(until)} }
	tests := []struct {
		name    string
		row     ledger.Row
		created time.Time
		want    action
	}{
		{"final rows are kept", ledger.Row{Status: ledger.Done, UpdatedAt: now.Add(-48 * time.Hour)}, created, keep},
		{"failed rows are kept", ledger.Row{Status: ledger.Failed, Attempts: 9}, created, keep},
		{"a live lease is kept", ledger.Row{Status: ledger.Running, Attempts: 1, Lease: lease(time.Second), UpdatedAt: now.Add(-time.Hour)}, created, keep},
		{"an expired lease is re-enqueued", ledger.Row{Status: ledger.Running, Attempts: 1, Lease: lease(-time.Second), UpdatedAt: now.Add(-time.Minute)}, created, requeue},
		{"a lease expiring now counts as expired", ledger.Row{Status: ledger.Running, Attempts: 1, Lease: lease(0)}, created, requeue},
		{"an expired lease out of attempts gives up", ledger.Row{Status: ledger.Running, Attempts: 3, Lease: lease(-time.Second)}, created, giveUp},
		{"an expired lease with a cancel pending is cancelled", ledger.Row{Status: ledger.Running, Attempts: 3, Lease: lease(-time.Second), CancelRequested: true}, created, cancel},
		{"an unwritten row queued since the manifest", ledger.Row{Status: ledger.Queued}, now.Add(-16 * time.Minute), requeue},
		{"an unwritten row queued briefly", ledger.Row{Status: ledger.Queued}, now.Add(-14 * time.Minute), keep},
		{"a queued row's own time wins", ledger.Row{Status: ledger.Queued, UpdatedAt: now.Add(-time.Minute)}, now.Add(-time.Hour), keep},
		{"a released row waits for the queue's retry", ledger.Row{Status: ledger.Running, Attempts: 1, UpdatedAt: now.Add(-14 * time.Minute)}, created, keep},
		{"a released row idle too long is re-enqueued", ledger.Row{Status: ledger.Running, Attempts: 1, UpdatedAt: now.Add(-15 * time.Minute)}, created, requeue},
		{"a released row out of attempts gives up", ledger.Row{Status: ledger.Running, Attempts: 4, UpdatedAt: now.Add(-time.Hour)}, created, giveUp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			got, why := verdict(tt.row, tt.created, now, p)
			is.Equal(got, tt.want)
			is.Equal(why == "", tt.want == keep) // every action says why
		})
	}
}

// The transition re-judges the row it is given: a row an attempt claimed since
// it was read is not failed under that attempt.
func TestSettleRejudges(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	now := time.Now().UTC()
	p := policy{stuckAfter: 15 * time.Minute, maxAttempts: 3}
	op := ledger.Op{Actor: "housekeeping", Now: now}
	dead := ledger.Row{Index: 0, Status: ledger.Running, Attempts: 3, Variants: []ledger.Variant{{Status: ledger.Running}, {Status: ledger.Done, Object: "x"}},
		Lease: &ledger.Lease{Holder: "old", Until: now.Add(-time.Minute)}}

	out, err := settle(giveUp, now.Add(-time.Hour), op, p)(dead)
	is.NoErr(err)
	is.Equal(out.Status, ledger.Done) // a variant was made: the row is done…
	is.Equal(out.Variants[0].Error.Message, "gave up after 3 attempts")
	is.Equal(out.Variants[0].Error.Code, "MODEL_FAILED") // …and the open one failed with the reason
	is.Equal(out.History[len(out.History)-1].Actor, "housekeeping")
	is.Equal(dead.Variants[0].Status, ledger.Running) // the input is not modified

	claimed, err := ledger.Start(dead, ledger.Op{Now: now}, "new", time.Minute)
	is.NoErr(err)
	_, err = settle(giveUp, now.Add(-time.Hour), op, p)(claimed)
	is.True(errors.Is(err, ledger.ErrNoChange)) // claimed meanwhile: left alone

	final, err := settle(giveUp, now.Add(-time.Hour), op, p)(out)
	is.True(errors.Is(err, ledger.ErrNoChange)) // applied twice: no change
	is.Equal(final, out)

	cancelled, err := settle(cancel, now.Add(-time.Hour), op, p)(ledger.Row{Status: ledger.Running, CancelRequested: true, Attempts: 1,
		Variants: []ledger.Variant{{Status: ledger.Running}}, Lease: &ledger.Lease{Holder: "old", Until: now.Add(-time.Second)}})
	is.NoErr(err)
	is.Equal(cancelled.Status, ledger.Cancelled)
}
