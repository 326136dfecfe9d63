package devstack_test

import (
	"context"
	"testing"

	"cloud.google.com/go/cloudtasks/apiv2/cloudtaskspb"
	"github.com/matryer/is"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/queue"
)

// The scripted queue refuses from the nth call on, unseen by the queue, and
// tells a test when a call was accepted, before its caller hears of it.
func TestTaskFaultsScriptCreateTask(t *testing.T) {
	is := is.New(t)
	faults := &devstack.TaskFaults{}
	s := startStack(t, devstack.TasksOptions{Intercept: faults.Intercept}, nil)
	faults.FailFrom(2, codes.FailedPrecondition)
	var createdWhenTold int64
	faults.After(func(_ context.Context, n int, _ *cloudtaskspb.Task) {
		createdWhenTold = s.tasks.Stats().Created
	})
	id := batch.NewID()
	is.NoErr(s.enqueuer().Enqueue(ctxTimeout(t), queue.Task{BatchID: id, Row: 0})) // the first call is accepted
	err := s.enqueuer().Enqueue(ctxTimeout(t), queue.Task{BatchID: id, Row: 1})
	is.Equal(status.Code(err), codes.FailedPrecondition) // the second is refused
	s.waitIdle(t)
	is.Equal(faults.Calls(), 2)
	is.Equal(createdWhenTold, int64(1))         // After ran once the task existed
	is.Equal(s.tasks.Stats().Created, int64(1)) // the refused task never reached the queue
	is.Equal(len(s.rcv.deliveries()), 1)        // nor was delivered
}
