package main

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/cloudtasks/apiv2/cloudtaskspb"
	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/client"
	"github.com/assetgen/assetgen/shared/ledger"
)

// retried is what one retry answered, for retries asked concurrently.
type retried struct {
	resp api.SubmitResponse
	err  error
}

func retryAsync(ctx context.Context, base, id string) <-chan retried {
	out := make(chan retried, 1)
	go func() {
		resp, err := client.New(base).Retry(ctx, id, client.RetryOptions{Confirm: true})
		out <- retried{resp, err}
	}()
	return out
}

// wait receives from c, or fails the test when ctx ends first.
func wait[T any](t *testing.T, ctx context.Context, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-ctx.Done():
		t.Fatalf("%s: %v", what, ctx.Err())
		panic("unreachable")
	}
}

// micros is an amount in USD in whole micro-dollars, for exact comparisons.
func micros(usd float64) float64 { return math.Round(usd * 1e6) }

// gate holds whoever waits at it until it is opened; reached tells that
// someone arrived.
type gate struct {
	reached chan struct{}
	opened  chan struct{}
	once    sync.Once
}

func newGate(t *testing.T) *gate {
	g := &gate{reached: make(chan struct{}, 1), opened: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

// wait arrives at the gate and waits for it to open (or ctx to end).
func (g *gate) wait(ctx context.Context) {
	select {
	case g.reached <- struct{}{}:
	default:
	}
	select {
	case <-g.opened:
	case <-ctx.Done():
	}
}

func (g *gate) open() { g.once.Do(func() { close(g.opened) }) }

// A retry asked while the last round's effects are still being performed (a
// completion webhook is being delivered) would reopen a batch whose round is
// not settled: it is refused with 409 BATCH_NOT_FINISHED and a Retry-After,
// and reserves nothing. Once the effects are done, the same retry is taken.
func TestRetryWaitsForTheLastRoundsEffects(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := deadline(t, time.Minute)
	delivery := newGate(t)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		delivery.wait(r.Context())
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)
	p := startPartial(t, map[string]string{"REFS_ALLOW_LOOPBACK": "true", "DAILY_BUDGET_USD": "1"})
	t.Cleanup(delivery.open) // before the stack shuts down: its last task waits on the webhook

	sub := post(t, p.base+"/batch/images", `{"runMode":"live","confirm":"CONFIRM","webhookUrl":"`+hook.URL+`/done",
		"rows":[{"prompt":"[blocked] a lighthouse"},{"prompt":"a harbour"}]}`, nil)
	is.Equal(sub.status, http.StatusAccepted)
	id := sub.str("batchId")
	wait(t, ctx, delivery.reached, "the completion webhook was never delivered")
	// Every row is final and the batch's final state is written; its
	// effects are under way.
	before := get(t, p.base+"/batch/"+id, nil)
	is.Equal(before.doc["rowCounts"].(map[string]any)["failed"], 1.0) // the blocked row failed: something to retry

	early := post(t, p.base+"/batch/"+id+"/retry", `{"confirm":"CONFIRM"}`, nil)
	is.Equal(early.status, http.StatusConflict)
	is.Equal(early.str("code"), "BATCH_NOT_FINISHED")
	after, err := strconv.Atoi(early.header.Get("Retry-After"))
	is.NoErr(err)      // a Retry-After in seconds
	is.True(after > 0) // telling the client when to ask again
	s, r := spent(t, p)
	is.Equal(micros(s), 39000.0) // the image made, charged
	is.Equal(r, 0.0)             // the refused retry reserved nothing
	cur, err := p.platform.Ledger.Current(ctx, id)
	is.NoErr(err)
	is.True(cur.Done()) // the batch was not reopened
	is.Equal(cur.Round, 0)

	delivery.open()
	is.NoErr(p.tasks.WaitIdle(ctx)) // the task that finished the batch performed its effects
	ans := post(t, p.base+"/batch/"+id+"/retry", `{"confirm":"CONFIRM"}`, nil)
	is.Equal(ans.status, http.StatusAccepted) // now the retry is taken
	is.Equal(ans.doc["round"], 1.0)
	readToDone(t, openStream(t, ans.str("progressUrl"), ""))
	is.NoErr(p.tasks.WaitIdle(ctx))
	s, r = spent(t, p)
	is.Equal(micros(s), 39000.0) // the prompt is blocked again: nothing more charged
	is.Equal(r, 0.0)
}

// Two retries of one finished batch both pass their checks; the one whose
// round's state lands second loses the race to open the round: it answers
// 409 BATCH_NOT_FINISHED and releases the budget it reserved, so the
// account holds only the winning round's reservation. The winner runs its
// round as if alone.
func TestRetryThatLosesTheRaceReleasesItsReservation(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	p := startPartial(t, map[string]string{"DAILY_BUDGET_USD": "1"})
	id := interrupted(t, p)
	ctx := deadline(t, time.Minute)

	// The loser's write of the round's state is held before it reaches
	// storage, and the winner's round is held at its first task, with its
	// state written and its rows reset.
	held, release := p.storage.HoldWrites(ledger.StateObject(id), 1)
	t.Cleanup(release)
	queueing := newGate(t)
	p.queue.Before(func(ctx context.Context, _ int, _ *cloudtaskspb.Task) error {
		queueing.wait(ctx)
		return nil
	})
	loser := retryAsync(ctx, p.base, id)
	wait(t, ctx, held, "the first retry never wrote its round")
	winner := retryAsync(ctx, p.base, id)
	wait(t, ctx, queueing.reached, "the second retry never queued its round")
	release()

	lost := wait(t, ctx, loser, "the losing retry never answered")
	var pe *client.ProblemError
	is.True(errors.As(lost.err, &pe)) // the loser is refused
	is.Equal(pe.Status, http.StatusConflict)
	is.Equal(string(pe.Doc.Code), "BATCH_NOT_FINISHED") // the batch is running the other round
	s, r := spent(t, p)
	is.Equal(micros(s), 117000.0) // nothing more charged
	is.Equal(micros(r), 351000.0) // only the winner's nine images are reserved: the loser's reservation is released

	queueing.open()
	won := wait(t, ctx, winner, "the winning retry never answered")
	is.NoErr(won.err)
	is.Equal(won.resp.Round, 1)
	is.Equal(won.resp.Estimate.Images, 9)
	readToDone(t, openStream(t, won.resp.ProgressURL, ""))
	is.NoErr(p.tasks.WaitIdle(ctx))
	s, r = spent(t, p)
	is.Equal(micros(s), 468000.0) // every image, charged once
	is.Equal(r, 0.0)              // nothing stays reserved
	events, _ := snapshots(t, p.app, p.base+"/batch/"+id, id)
	retries := 0
	for _, e := range events {
		if e == "retried" {
			retries++
		}
	}
	is.Equal(retries, 1) // one round was opened
}

// A retry whose rows cannot be reset, and whose round then cannot be
// cancelled either, answers 503 RETRY_INTERRUPTED without claiming the
// round was cancelled: the round stays the batch's, open, its reservation
// held for the images it will make, no task queued, until the housekeeping
// job resumes it. Meanwhile another retry is refused, as for a running batch.
func TestRetryThatCannotResetNorStopItsRound(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	p := startPartial(t, map[string]string{"DAILY_BUDGET_USD": "0.5"})
	id := interrupted(t, p)
	status := p.base + "/batch/" + id
	created := p.tasks.Stats().Created

	// Every write of the batch's rows fails: the reset, then the cancel.
	p.storage.RejectWrites(ledger.RowsPrefix(id), 100, http.StatusForbidden)
	ans := post(t, status+"/retry", `{"confirm":"CONFIRM"}`, nil)
	p.storage.RejectWrites("", 0, 0)
	is.Equal(ans.status, http.StatusServiceUnavailable)
	is.Equal(ans.str("code"), "RETRY_INTERRUPTED")
	is.Equal(ans.str("batchId"), id)
	is.True(strings.HasSuffix(ans.str("statusUrl"), "/batch/"+id))
	is.True(!strings.Contains(ans.str("detail"), "cancelled"))   // the round was not cancelled, and is not said to be
	is.True(strings.Contains(ans.str("detail"), "housekeeping")) // the client is told what finishes it

	is.NoErr(p.tasks.WaitIdle(deadline(t, 30*time.Second)))
	is.Equal(p.tasks.Stats().Created, created) // no task was queued
	s, r := spent(t, p)
	is.Equal(micros(s), 117000.0) // nothing more charged
	is.Equal(micros(r), 351000.0) // the round's reservation is held for what it will make
	cur, err := p.platform.Ledger.Current(context.Background(), id)
	is.NoErr(err)
	is.Equal(cur.Round, 1) // the round is the batch's
	is.True(!cur.Done())   // and open
	events, _ := snapshots(t, p.app, status, id)
	is.Equal(events[len(events)-1], "retried") // the history ends with the round's opening

	again := post(t, status+"/retry", `{"confirm":"CONFIRM"}`, nil)
	is.Equal(again.status, http.StatusConflict)
	is.Equal(again.str("code"), "BATCH_NOT_FINISHED") // the open round is not retried over

	// The owner's cancel stops the open round now, rather than leaving it
	// to the housekeeping job: its rows are reset and cancelled, and the
	// answer is true.
	c := post(t, status+"/cancel", "", nil)
	is.Equal(c.status, http.StatusOK)
	cancel := c.doc["cancel"].(map[string]any)
	is.Equal(cancel["finished"], true)
	is.Equal(cancel["releasedUsd"], 0.351)
	s, r = spent(t, p)
	is.Equal(micros(s), 117000.0) // nothing more charged
	is.Equal(micros(r), 0.0)      // and the round's reservation released, as the answer says
	cur, err = p.platform.Ledger.Current(context.Background(), id)
	is.NoErr(err)
	is.True(cur.Done()) // the round finished
	is.Equal(p.tasks.Stats().Created, created)
}
