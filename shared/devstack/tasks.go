package devstack

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/cloudtasks/apiv2/cloudtaskspb"
	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TasksOptions shape the stand-in's queue the way a Cloud Tasks queue's retry
// and rate settings do.
type TasksOptions struct {
	// Addr to listen on (gRPC); "127.0.0.1:0" picks a free port.
	Addr string
	// Queue is the one queue served: projects/P/locations/L/queues/Q.
	Queue string
	// MaxAttempts per task, first delivery included (default 8).
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the delay between attempts (defaults 100ms, 10s).
	MinBackoff, MaxBackoff time.Duration
	// MaxConcurrent dispatches at once (default 100).
	MaxConcurrent int64
	// DuplicateDelivery delivers every task twice, concurrently: Cloud Tasks'
	// at-least-once delivery, made certain.
	DuplicateDelivery bool
	// Client makes the deliveries (default: a plain client).
	Client *http.Client
	// Log receives one line per failed delivery.
	Log *slog.Logger
	// Latency is added to every API call (CreateTask, GetQueue), to measure how
	// a caller's critical path grows with a real network between it and the queue.
	Latency time.Duration
}

// TaskStats count what the stand-in did.
type TaskStats struct {
	Created    int64 // tasks accepted
	Duplicates int64 // CreateTask calls refused as AlreadyExists
	Deliveries int64 // HTTP requests made
	Failures   int64 // deliveries answered non-2xx or not answered
	Succeeded  int64 // tasks that got a 2xx
	Dropped    int64 // tasks abandoned after MaxAttempts
}

// Tasks is a Cloud Tasks stand-in: the real gRPC API over loopback, HTTP delivery
// with the X-CloudTasks-* headers, dedup by task name, retries with exponential
// backoff, at-least-once delivery.
type Tasks struct {
	cloudtaskspb.UnimplementedCloudTasksServer

	// Addr is host:port, the value of TASKS_EMULATOR_HOST.
	Addr string

	opts   TasksOptions
	grpc   *grpc.Server
	sem    *semaphore.Weighted
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	names    map[string]bool
	inflight int
	idle     chan struct{} // closed while nothing is in flight

	created, duplicates, deliveries, failures, succeeded, dropped atomic.Int64
}

// StartTasks serves the stand-in.
func StartTasks(o TasksOptions) (*Tasks, error) {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 8
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(10*time.Second, o.MinBackoff)
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 100
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("devstack: tasks listen %s: %w", o.Addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Tasks{
		Addr: ln.Addr().String(), opts: o, grpc: grpc.NewServer(),
		sem: semaphore.NewWeighted(o.MaxConcurrent), ctx: ctx, cancel: cancel,
		names: map[string]bool{}, idle: make(chan struct{}),
	}
	close(t.idle)
	cloudtaskspb.RegisterCloudTasksServer(t.grpc, t)
	go func() {
		if err := t.grpc.Serve(ln); err != nil {
			o.Log.Error("devstack: tasks stand-in stopped", "error", err)
		}
	}()
	return t, nil
}

// Close stops serving and abandons deliveries in flight.
func (t *Tasks) Close() {
	t.cancel()
	t.grpc.Stop()
}

// Stats returns the counters.
func (t *Tasks) Stats() TaskStats {
	return TaskStats{
		Created: t.created.Load(), Duplicates: t.duplicates.Load(), Deliveries: t.deliveries.Load(),
		Failures: t.failures.Load(), Succeeded: t.succeeded.Load(), Dropped: t.dropped.Load(),
	}
}

// WaitIdle blocks until no task is waiting or being delivered.
func (t *Tasks) WaitIdle(ctx context.Context) error {
	for {
		t.mu.Lock()
		idle := t.idle
		t.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-idle:
		}
		t.mu.Lock()
		done := t.inflight == 0
		t.mu.Unlock()
		if done {
			return nil
		}
	}
}

func (t *Tasks) track(delta int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.inflight == 0 && delta > 0 {
		t.idle = make(chan struct{})
	}
	t.inflight += delta
	if t.inflight == 0 {
		close(t.idle)
	}
}

// GetQueue answers for the one queue served (readiness probes use it).
func (t *Tasks) GetQueue(ctx context.Context, req *cloudtaskspb.GetQueueRequest) (*cloudtaskspb.Queue, error) {
	if err := t.delay(ctx); err != nil {
		return nil, err
	}
	if req.GetName() != t.opts.Queue {
		return nil, status.Errorf(codes.NotFound, "queue %q does not exist", req.GetName())
	}
	return &cloudtaskspb.Queue{Name: t.opts.Queue, State: cloudtaskspb.Queue_RUNNING}, nil
}

// CreateTask accepts an HTTP task and schedules its delivery.
func (t *Tasks) CreateTask(ctx context.Context, req *cloudtaskspb.CreateTaskRequest) (*cloudtaskspb.Task, error) {
	if err := t.delay(ctx); err != nil {
		return nil, err
	}
	if req.GetParent() != t.opts.Queue {
		return nil, status.Errorf(codes.NotFound, "queue %q does not exist", req.GetParent())
	}
	task := req.GetTask()
	hr := task.GetHttpRequest()
	if hr == nil || hr.GetUrl() == "" {
		return nil, status.Error(codes.InvalidArgument, "only HTTP tasks with a URL are supported")
	}
	name := task.GetName()
	if name == "" {
		name = fmt.Sprintf("%s/tasks/%d", t.opts.Queue, time.Now().UnixNano())
	} else if !strings.HasPrefix(name, t.opts.Queue+"/tasks/") {
		return nil, status.Errorf(codes.InvalidArgument, "task name %q is not in queue %q", name, t.opts.Queue)
	}
	t.mu.Lock()
	if t.names[name] {
		t.mu.Unlock()
		t.duplicates.Add(1)
		return nil, status.Errorf(codes.AlreadyExists, "task %q already exists", name)
	}
	t.names[name] = true
	t.mu.Unlock()
	t.created.Add(1)

	now := time.Now()
	out := &cloudtaskspb.Task{
		Name: name, MessageType: task.GetMessageType(), CreateTime: timestamppb.New(now),
		ScheduleTime: task.GetScheduleTime(), DispatchDeadline: task.GetDispatchDeadline(),
	}
	if out.ScheduleTime == nil {
		out.ScheduleTime = timestamppb.New(now)
	}
	if out.DispatchDeadline == nil {
		out.DispatchDeadline = durationpb.New(10 * time.Minute)
	}
	copies := 1
	if t.opts.DuplicateDelivery {
		copies = 2
	}
	for range copies {
		t.track(1)
		go func() {
			defer t.track(-1)
			t.deliver(out)
		}()
	}
	return out, nil
}

// deliver runs one delivery sequence: attempts with backoff until a 2xx or the
// attempt budget is spent.
func (t *Tasks) deliver(task *cloudtaskspb.Task) {
	if !t.wait(time.Until(task.GetScheduleTime().AsTime())) {
		return
	}
	queueID := t.opts.Queue[strings.LastIndex(t.opts.Queue, "/")+1:]
	taskID := task.GetName()[strings.LastIndex(task.GetName(), "/")+1:]
	backoff := t.opts.MinBackoff
	executions := 0
	for attempt := 0; attempt < t.opts.MaxAttempts; attempt++ {
		if attempt > 0 {
			if !t.wait(backoff) {
				return
			}
			backoff = min(backoff*2, t.opts.MaxBackoff)
		}
		code, err := t.attempt(task, queueID, taskID, attempt, executions)
		// Cloud Tasks counts executions that got a response, 5xx excepted.
		if err == nil && (code < 500 || code > 599) {
			executions++
		}
		if err == nil && code >= 200 && code < 300 {
			t.succeeded.Add(1)
			return
		}
		t.failures.Add(1)
		t.opts.Log.Debug("devstack: task delivery failed", "task", taskID, "attempt", attempt+1, "status", code, "error", err)
	}
	t.dropped.Add(1)
	t.opts.Log.Warn("devstack: task dropped after max attempts", "task", taskID, "attempts", t.opts.MaxAttempts)
}

func (t *Tasks) attempt(task *cloudtaskspb.Task, queueID, taskID string, retries, executions int) (int, error) {
	if err := t.sem.Acquire(t.ctx, 1); err != nil {
		return 0, err
	}
	defer t.sem.Release(1)
	t.deliveries.Add(1)
	hr := task.GetHttpRequest()
	ctx, cancel := context.WithTimeout(t.ctx, task.GetDispatchDeadline().AsDuration())
	defer cancel()
	method := hr.GetHttpMethod()
	if method == cloudtaskspb.HttpMethod_HTTP_METHOD_UNSPECIFIED {
		method = cloudtaskspb.HttpMethod_POST // the API's default
	}
	req, err := http.NewRequestWithContext(ctx, method.String(), hr.GetUrl(), bytes.NewReader(hr.GetBody()))
	if err != nil {
		return 0, err
	}
	for k, v := range hr.GetHeaders() {
		req.Header.Set(k, v)
	}
	req.Header.Set("User-Agent", "Google-Cloud-Tasks")
	req.Header.Set("X-CloudTasks-QueueName", queueID)
	req.Header.Set("X-CloudTasks-TaskName", taskID)
	req.Header.Set("X-CloudTasks-TaskRetryCount", strconv.Itoa(retries))
	req.Header.Set("X-CloudTasks-TaskExecutionCount", strconv.Itoa(executions))
	req.Header.Set("X-CloudTasks-TaskETA", strconv.FormatFloat(float64(task.GetScheduleTime().AsTime().UnixNano())/1e9, 'f', 6, 64))
	resp, err := t.opts.Client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// delay models the network between a caller and the queue.
func (t *Tasks) delay(ctx context.Context) error {
	if t.opts.Latency <= 0 {
		return nil
	}
	timer := time.NewTimer(t.opts.Latency)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case <-timer.C:
		return nil
	}
}

// wait sleeps for d unless the stand-in is closed first.
func (t *Tasks) wait(d time.Duration) bool {
	if d <= 0 {
		return t.ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-t.ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
