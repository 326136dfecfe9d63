package devstack

import (
	"context"
	"sync"

	"cloud.google.com/go/cloudtasks/apiv2/cloudtaskspb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TaskFaults scripts how the Tasks stand-in answers CreateTask, for tests of
// what a caller does when the queue fails part-way: install Intercept as
// TasksOptions.Intercept. Calls are numbered from 1 in the order they arrive.
type TaskFaults struct {
	mu      sync.Mutex
	calls   int
	before  func(ctx context.Context, n int, task *cloudtaskspb.Task) error
	after   func(ctx context.Context, n int, task *cloudtaskspb.Task)
	created int
}

// Before runs fn ahead of every CreateTask call. An error from fn is the
// call's answer and the queue never sees the task; fn may also block, as a
// slow network does.
func (f *TaskFaults) Before(fn func(ctx context.Context, n int, task *cloudtaskspb.Task) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.before = fn
}

// After runs fn once a call's task was accepted and scheduled, before the
// caller hears of it; n counts accepted calls.
func (f *TaskFaults) After(fn func(ctx context.Context, n int, task *cloudtaskspb.Task)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.after = fn
}

// FailFrom refuses the nth CreateTask call and every later one with code, as
// a queue that is paused (FailedPrecondition) or out of quota does; n <= 0
// refuses none.
func (f *TaskFaults) FailFrom(n int, code codes.Code) {
	f.Before(func(_ context.Context, call int, _ *cloudtaskspb.Task) error {
		if n > 0 && call >= n {
			return status.Error(code, "injected fault")
		}
		return nil
	})
}

// Calls returns how many CreateTask calls arrived.
func (f *TaskFaults) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// Intercept is the gRPC interceptor: only CreateTask is scripted.
func (f *TaskFaults) Intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	create, ok := req.(*cloudtaskspb.CreateTaskRequest)
	if !ok {
		return handler(ctx, req)
	}
	f.mu.Lock()
	f.calls++
	n, before := f.calls, f.before
	f.mu.Unlock()
	if before != nil {
		if err := before(ctx, n, create.GetTask()); err != nil {
			return nil, err
		}
	}
	resp, err := handler(ctx, req)
	if err != nil {
		return resp, err
	}
	f.mu.Lock()
	f.created++
	n, after := f.created, f.after
	f.mu.Unlock()
	if after != nil {
		after(ctx, n, create.GetTask())
	}
	return resp, nil
}
