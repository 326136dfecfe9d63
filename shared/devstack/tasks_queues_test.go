package devstack_test

import (
	"net/http"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/queue"
)

// Two queues served by one stand-in dispatch on their own limits, as Cloud
// Tasks' per-queue rate limits do: with the dry-run queue's only slot held by
// a delivery that does not return, a task of the main queue is still
// delivered at once. Each delivery names its own queue, and readiness checks
// both.
func TestTasksQueuesDispatchOnTheirOwnLimits(t *testing.T) {
	is := is.New(t)
	ctx := ctxTimeout(t)
	held, release, liveRan := make(chan struct{}, 1), make(chan struct{}), make(chan struct{}, 1)
	defer close(release)
	s := startStack(t, devstack.TasksOptions{
		MaxConcurrent: 1, More: []devstack.QueueOptions{{Name: otherQueue, MaxConcurrent: 1}},
	}, func(_ int, r *http.Request) int {
		if r.Header.Get("X-CloudTasks-QueueName") == "other" {
			held <- struct{}{}
			<-release // the dry-run queue's slot stays taken
			return http.StatusOK
		}
		liveRan <- struct{}{}
		return http.StatusOK
	})
	e := queue.New(s.client, queue.Config{Queue: testQueue, DryRunQueue: otherQueue, TargetURL: s.rcv.url()})
	is.NoErr(e.Ping(ctx)) // both queues answer

	dry, live := batch.NewID(), batch.NewID()
	is.NoErr(e.For(ledger.DryRun).Enqueue(ctx, queue.Task{BatchID: dry, Row: 0}))
	<-held // the dry-run delivery holds its queue's only slot
	is.NoErr(e.For(ledger.DryRun).Enqueue(ctx, queue.Task{BatchID: dry, Row: 1}))
	is.NoErr(e.For(ledger.Live).Enqueue(ctx, queue.Task{BatchID: live, Row: 0}))

	select {
	case <-liveRan: // the live task is delivered while the dry-run queue is full
	case <-ctx.Done():
		t.Fatal("the live task waited behind the dry-run queue")
	}
	queues := map[string]int{}
	for _, d := range s.rcv.deliveries() {
		queues[d.header.Get("X-CloudTasks-QueueName")]++
	}
	is.Equal(queues, map[string]int{"other": 1, "rows": 1}) // the live task ran; the second dry-run task still waits
}
