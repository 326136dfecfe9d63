package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/queue"
)

// retriedAt records a retry round of m's finished batch (its final state) as
// a retry that died before resetting its rows leaves it, recorded at.
func (s *stack) retriedAt(t *testing.T, m *ledger.Manifest, final ledger.State, at time.Time) ledger.State {
	t.Helper()
	ctx := context.Background()
	st, err := ledger.RetryBatch(&final, m.BatchID, ledger.Retry{Reservation: m.BatchID + "-retry-t"}, ledger.Op{Actor: "retry/test", Now: at})
	if err != nil {
		t.Fatal(err)
	}
	st.At = at
	b, _ := json.Marshal(st)
	if _, err := s.bucket.Put(ctx, ledger.StateObject(m.BatchID), b, bucket.Meta{ContentType: "application/json"}); err != nil {
		t.Fatal(err)
	}
	return st
}

// A retry that died between recording its round and resetting the round's
// rows leaves rows whose final state is the previous round's. The job must
// not finish the round on them (before, it did: the round read finished with
// nothing run, and its reservation was released under the rows a late
// reset would queue); once the round is older than the stuck threshold it
// resets the rows and queues them under the round's task names.
func TestResumesAnInterruptedRetry(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	s := newStack(t)
	m := s.manifest(t, time.Now().Add(-2*time.Hour), ledger.DryRun, 2)
	s.finishRow(t, m, 0, true)
	s.finishRow(t, m, 1, false)
	summary, _, err := s.run(t)
	is.NoErr(err)
	is.True(strings.Contains(summary, "completed 1")) // the batch finished, effects and all
	final, err := s.store.Current(ctx, m.BatchID)
	is.NoErr(err)

	// A retry just recorded its round: the job leaves it to the retry.
	s.retriedAt(t, m, final, time.Now())
	summary, _, err = s.run(t)
	is.NoErr(err)
	is.True(strings.Contains(summary, "completed 0, renotified 0, resumed 0 retries")) // not finished on the old rows
	cur, err := s.store.Current(ctx, m.BatchID)
	is.NoErr(err)
	is.Equal(cur.Event, ledger.Retried) // the round is still open

	// The retry is long gone: the job resumes it.
	s.retriedAt(t, m, final, time.Now().Add(-time.Hour))
	summary, _, err = s.run(t)
	is.NoErr(err)
	is.True(strings.Contains(summary, "resumed 1 retries"))
	s.settle(t)
	row, _ := s.row(t, m, 1)
	is.Equal(row.Round, 1)                          // reset for the round
	is.Equal(row.Variants[0].Status, ledger.Queued) // its failed variant runs again
	done, _ := s.row(t, m, 0)
	is.Equal(done.Round, 0)                                                      // the done row is not part of the round
	is.Equal(s.delivered()[queue.Task{BatchID: m.BatchID, Row: 1, Round: 1}], 1) // queued for the round
	cur, err = s.store.Current(ctx, m.BatchID)
	is.NoErr(err)
	is.True(!cur.Done()) // and the round runs on

	// A resumed round's rows are the round's: the next run has nothing to resume.
	summary, _, err = s.run(t)
	is.NoErr(err)
	is.True(strings.Contains(summary, "resumed 0 retries"))
}
