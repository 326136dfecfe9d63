package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/backlog"
	"github.com/assetgen/assetgen/shared/ledger"
)

// A queued marker counts its batch's rows against the owner's cap until the
// batch finishes. The job removes markers whose batch has finished (its
// finisher crashed after the effects, or a retried submit marked a batch its
// first attempt's tasks had finished), and completing a batch clears its
// marker; an unfinished batch keeps its marker.
func TestQueuedMarkersOfFinishedBatchesAreCleared(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newStack(t)
	ctx := context.Background()
	now := time.Now()
	mark := func(m *ledger.Manifest) string {
		e := backlog.Entry{User: m.Owner, BatchID: m.BatchID, Rows: len(m.Rows)}
		_, err := backlog.New(s.bucket).Mark(ctx, e)
		is.NoErr(err) // mark the batch queued
		return e.Object()
	}

	done := s.manifest(t, now.Add(-time.Hour), ledger.DryRun, 1)
	s.finishRow(t, done, 0, true)
	s.complete(t, done) // the batch's effects are done: it is finished
	stranded := mark(done)

	crashed := s.manifest(t, now.Add(-30*time.Minute), ledger.DryRun, 2)
	s.finishRow(t, crashed, 0, true)
	s.finishRow(t, crashed, 1, true)
	completed := mark(crashed)

	running := s.manifest(t, now.Add(-2*time.Minute), ledger.DryRun, 2)
	s.setRow(t, running, 0, func(r *ledger.Row) { r.UpdatedAt = now.Add(-time.Minute).UTC() })
	kept := mark(running)

	queued := func() int {
		total := 0
		for _, m := range []*ledger.Manifest{done, crashed, running} {
			rows, err := backlog.New(s.bucket).Rows(ctx, m.Owner)
			is.NoErr(err) // count the owner's queued rows
			total += rows
		}
		return total
	}
	is.Equal(queued(), 5) // every marker counts before the run

	summary, _, err := s.run(t)
	is.NoErr(err)
	is.True(strings.Contains(summary, "completed 1,"))             // the crashed finisher's batch was completed
	is.True(strings.Contains(summary, "cleared 1 queued markers")) // and the finished batch's marker removed
	is.True(!s.exists(t, stranded))                                // a finished batch's marker goes
	is.True(!s.exists(t, completed))                               // completing a batch clears its marker
	is.True(s.exists(t, kept))                                     // a running batch keeps its marker
	is.Equal(queued(), 2)                                          // only the running batch's rows still count
}
