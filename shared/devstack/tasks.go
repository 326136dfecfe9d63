package devstack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
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
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TasksOptions shape the stand-in's queue the way a Cloud Tasks queue's retry
// and rate settings do.
type TasksOptions struct {
	// Addr to listen on (gRPC); "127.0.0.1:0" picks a free port.
	Addr string
	// Queue is the queue served: projects/P/locations/L/queues/Q.
	Queue string
	// More are further queues served beside Queue (the dry-run queue), each
	// dispatching on its own limit, as Cloud Tasks applies rate limits per
	// queue.
	More []QueueOptions
	// MaxAttempts per task, first delivery included (default 8).
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the delay between attempts (defaults 100ms, 10s).
	MinBackoff, MaxBackoff time.Duration
	// MaxConcurrent dispatches of Queue at once (default 100).
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
	// Dir keeps every task not yet finished, one JSON file per task, the way
	// the real queue keeps them: a stand-in started on the same Dir delivers
	// them again (queued, in flight or waiting for a retry when the last one
	// stopped). Empty keeps tasks in memory only.
	Dir string
	// IDTokens signs the OIDC tokens of tasks that ask for one (a key is made
	// on the first such task when nil).
	IDTokens *IDTokens
	// NameWindow is how long the name of a task that was executed (succeeded
	// or dropped) or deleted stays taken: Cloud Tasks answers AlreadyExists
	// for it for up to about an hour although nothing will run (default 1h).
	// With Dir set the names are kept there too, so a restart remembers them.
	NameWindow time.Duration
	// Now is the clock of NameWindow (default time.Now).
	Now func() time.Time
	// Intercept, when set, sees every API call first (TaskFaults.Intercept).
	Intercept grpc.UnaryServerInterceptor
}

// QueueOptions are one more queue's name and limit.
type QueueOptions struct {
	// Name is the full queue name.
	Name string
	// MaxConcurrent dispatches of this queue at once (default 100).
	MaxConcurrent int64
}

// TaskStats count what the stand-in did.
type TaskStats struct {
	Created    int64 // tasks accepted
	Duplicates int64 // CreateTask calls refused as AlreadyExists
	Deliveries int64 // HTTP requests made
	Failures   int64 // deliveries answered non-2xx or not answered
	Succeeded  int64 // tasks that got a 2xx
	Dropped    int64 // tasks abandoned after MaxAttempts
	Deleted    int64 // tasks removed by DeleteTask
	Restored   int64 // unfinished tasks read back from Dir at start
}

// Tasks is a Cloud Tasks stand-in: the real gRPC API over loopback, HTTP delivery
// with the X-CloudTasks-* headers, OIDC tokens, dedup by task name (names of
// finished and deleted tasks stay taken for NameWindow), retries with
// exponential backoff, at-least-once delivery, and tasks that outlive the
// process when Dir is set.
type Tasks struct {
	cloudtaskspb.UnimplementedCloudTasksServer

	// Addr is host:port, the value of TASKS_EMULATOR_HOST.
	Addr string

	opts TasksOptions
	grpc *grpc.Server
	// queues maps each served queue's name to its dispatch limit.
	queues map[string]*semaphore.Weighted
	ctx    context.Context
	cancel context.CancelFunc

	mu sync.Mutex
	// names holds every taken task name: the zero time while its task is
	// queued, else when the name is free again.
	names     map[string]time.Time
	live      map[string]*queued
	lastSweep time.Time
	inflight  int
	idle      chan struct{} // closed while nothing is in flight
	running   sync.WaitGroup

	tokensOnce sync.Once
	tokens     *IDTokens
	tokensErr  error

	created, duplicates, deliveries, failures, succeeded, dropped, deleted, restored atomic.Int64
}

// queued is one task the stand-in has not finished: its stored form (the
// Task message, whose dispatch and response counts grow with each attempt)
// and how many delivery sequences still run it. ctx ends when the stand-in
// closes or the task is deleted.
type queued struct {
	mu     sync.Mutex
	task   *cloudtaskspb.Task
	copies int
	done   bool
	ctx    context.Context
	cancel context.CancelFunc
}

// taskID is what Cloud Tasks allows as the last element of a task name.
var taskID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,500}$`)

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
	queues := map[string]*semaphore.Weighted{o.Queue: semaphore.NewWeighted(o.MaxConcurrent)}
	for _, q := range o.More {
		if _, dup := queues[q.Name]; dup || q.Name == "" {
			return nil, fmt.Errorf("devstack: tasks: queue %q is served twice or has no name", q.Name)
		}
		n := q.MaxConcurrent
		if n <= 0 {
			n = 100
		}
		queues[q.Name] = semaphore.NewWeighted(n)
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.NameWindow <= 0 {
		o.NameWindow = time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	var (
		stored []*cloudtaskspb.Task
		gone   map[string]time.Time
	)
	if o.Dir != "" {
		var err error
		if stored, gone, err = loadTasks(o.Dir, queues, o.Now(), o.Log); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("devstack: tasks listen %s: %w", o.Addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var serverOpts []grpc.ServerOption
	if o.Intercept != nil {
		serverOpts = append(serverOpts, grpc.UnaryInterceptor(o.Intercept))
	}
	t := &Tasks{
		Addr: ln.Addr().String(), opts: o, grpc: grpc.NewServer(serverOpts...),
		queues: queues, ctx: ctx, cancel: cancel,
		names: map[string]time.Time{}, live: map[string]*queued{}, idle: make(chan struct{}), tokens: o.IDTokens,
	}
	close(t.idle)
	for name, until := range gone {
		t.names[name] = until
	}
	restored := make([]*queued, 0, len(stored))
	for _, task := range stored {
		q := t.newQueued(task)
		t.names[task.GetName()] = time.Time{}
		t.live[task.GetName()] = q
		restored = append(restored, q)
	}
	for _, q := range restored {
		t.restored.Add(1)
		t.schedule(q)
	}
	cloudtaskspb.RegisterCloudTasksServer(t.grpc, t)
	go func() {
		if err := t.grpc.Serve(ln); err != nil {
			o.Log.Error("devstack: tasks stand-in stopped", "error", err)
		}
	}()
	return t, nil
}

// Close stops serving and abandons deliveries in flight, as a process that
// dies does: with Dir set, their tasks stay there for the next start.
func (t *Tasks) Close() {
	t.cancel()
	t.grpc.Stop()
	t.running.Wait()
}

// Stats returns the counters.
func (t *Tasks) Stats() TaskStats {
	return TaskStats{
		Created: t.created.Load(), Duplicates: t.duplicates.Load(), Deliveries: t.deliveries.Load(),
		Failures: t.failures.Load(), Succeeded: t.succeeded.Load(), Dropped: t.dropped.Load(),
		Deleted: t.deleted.Load(), Restored: t.restored.Load(),
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

// GetQueue answers for the queues served (readiness probes use it).
func (t *Tasks) GetQueue(ctx context.Context, req *cloudtaskspb.GetQueueRequest) (*cloudtaskspb.Queue, error) {
	if err := t.delay(ctx); err != nil {
		return nil, err
	}
	if t.queues[req.GetName()] == nil {
		return nil, status.Errorf(codes.NotFound, "queue %q does not exist", req.GetName())
	}
	return &cloudtaskspb.Queue{Name: req.GetName(), State: cloudtaskspb.Queue_RUNNING}, nil
}

// CreateTask accepts an HTTP task and schedules its delivery.
func (t *Tasks) CreateTask(ctx context.Context, req *cloudtaskspb.CreateTaskRequest) (*cloudtaskspb.Task, error) {
	if err := t.delay(ctx); err != nil {
		return nil, err
	}
	parent := req.GetParent()
	if t.queues[parent] == nil {
		return nil, status.Errorf(codes.NotFound, "queue %q does not exist", parent)
	}
	task := req.GetTask()
	hr := task.GetHttpRequest()
	if hr == nil || hr.GetUrl() == "" {
		return nil, status.Error(codes.InvalidArgument, "only HTTP tasks with a URL are supported")
	}
	name := task.GetName()
	if name == "" {
		name = fmt.Sprintf("%s/tasks/%d", parent, time.Now().UnixNano())
	} else if id, ok := strings.CutPrefix(name, parent+"/tasks/"); !ok {
		return nil, status.Errorf(codes.InvalidArgument, "task name %q is not in queue %q", name, parent)
	} else if !taskID.MatchString(id) {
		return nil, status.Errorf(codes.InvalidArgument, "task id %q: only letters, digits, - and _, at most 500", id)
	}
	t.mu.Lock()
	clock := t.opts.Now()
	if until, taken := t.names[name]; taken && (until.IsZero() || clock.Before(until)) {
		t.mu.Unlock()
		t.duplicates.Add(1)
		return nil, status.Errorf(codes.AlreadyExists, "task %q already exists", name)
	}
	t.names[name] = time.Time{}
	expired := t.sweep(clock)
	t.mu.Unlock()
	t.unlink(expired...)

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
	q := t.newQueued(out)
	// Stored before CreateTask answers: an accepted task survives a restart.
	if err := t.store(q); err != nil {
		t.mu.Lock()
		delete(t.names, name)
		t.mu.Unlock()
		return nil, status.Errorf(codes.Internal, "storing task %q: %v", name, err)
	}
	t.mu.Lock()
	t.live[name] = q
	t.mu.Unlock()
	t.created.Add(1)
	answer := proto.Clone(out).(*cloudtaskspb.Task)
	t.schedule(q)
	return answer, nil
}

// DeleteTask removes a task that has not finished yet; its name stays taken
// for NameWindow. A delivery in flight is abandoned, as Cloud Tasks does not
// stop a request it already sent either, and its answer no longer counts.
func (t *Tasks) DeleteTask(ctx context.Context, req *cloudtaskspb.DeleteTaskRequest) (*emptypb.Empty, error) {
	if err := t.delay(ctx); err != nil {
		return nil, err
	}
	name := req.GetName()
	t.mu.Lock()
	q := t.live[name]
	t.mu.Unlock()
	if q == nil || !t.end(q) {
		return nil, status.Errorf(codes.NotFound, "task %q does not exist", name)
	}
	q.cancel()
	t.deleted.Add(1)
	return &emptypb.Empty{}, nil
}

func (t *Tasks) newQueued(task *cloudtaskspb.Task) *queued {
	ctx, cancel := context.WithCancel(t.ctx)
	return &queued{task: task, ctx: ctx, cancel: cancel}
}

// sweep forgets the names whose window has passed, at most once a minute,
// and returns them so their files can go (outside the lock).
func (t *Tasks) sweep(now time.Time) []string {
	if now.Sub(t.lastSweep) < time.Minute {
		return nil
	}
	t.lastSweep = now
	var expired []string
	for name, until := range t.names {
		if !until.IsZero() && !now.Before(until) {
			delete(t.names, name)
			expired = append(expired, name)
		}
	}
	return expired
}

// unlink removes the stored names of tasks whose window has passed.
func (t *Tasks) unlink(names ...string) {
	if t.opts.Dir == "" {
		return
	}
	for _, name := range names {
		if err := os.Remove(goneFile(t.opts.Dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.opts.Log.Warn("devstack: forgetting a task name", "task", name, "error", err)
		}
	}
}

// schedule starts q's delivery sequences: one, or two concurrent ones with
// DuplicateDelivery.
func (t *Tasks) schedule(q *queued) {
	copies := 1
	if t.opts.DuplicateDelivery {
		copies = 2
	}
	q.copies = copies
	first, executions := int(q.task.GetDispatchCount()), int(q.task.GetResponseCount())
	for range copies {
		t.track(1)
		t.running.Add(1)
		go func() {
			defer t.running.Done()
			defer t.track(-1)
			t.deliver(q, first, executions)
		}()
	}
}

// deliver runs one delivery sequence: attempts with backoff until a 2xx or the
// attempt budget is spent. A task read back after a restart starts from the
// attempts it had already been dispatched.
func (t *Tasks) deliver(q *queued, first, executions int) {
	task := q.task
	name := task.GetName()
	if !wait(q.ctx, time.Until(task.GetScheduleTime().AsTime())) {
		return
	}
	queue := queueOf(name)
	queueID := queue[strings.LastIndex(queue, "/")+1:]
	taskID := name[strings.LastIndex(name, "/")+1:]
	backoff := t.opts.MinBackoff
	for attempt := first; attempt < t.opts.MaxAttempts; attempt++ {
		if attempt > first {
			if !wait(q.ctx, backoff) {
				return
			}
			backoff = min(backoff*2, t.opts.MaxBackoff)
		}
		code, err := t.attempt(q, t.queues[queue], queueID, taskID, attempt, executions)
		if q.ctx.Err() != nil {
			// Closed mid-attempt (the task stays stored, as after a crash), or
			// deleted (its name is already remembered).
			return
		}
		if err == nil && code >= 200 && code < 300 {
			t.succeeded.Add(1)
			t.finish(q, true)
			return
		}
		// Cloud Tasks counts executions that got a response, 5xx excepted.
		if err == nil && (code < 500 || code > 599) {
			executions++
			t.record(q, func(s *cloudtaskspb.Task) { s.ResponseCount = max(s.ResponseCount, int32(executions)) })
		}
		t.failures.Add(1)
		t.opts.Log.Debug("devstack: task delivery failed", "task", taskID, "attempt", attempt+1, "status", code, "error", err)
	}
	t.dropped.Add(1)
	t.finish(q, false)
	t.opts.Log.Warn("devstack: task dropped after max attempts", "task", taskID, "attempts", t.opts.MaxAttempts)
}

// attempt makes one delivery of q within its queue's dispatch limit, sem.
func (t *Tasks) attempt(q *queued, sem *semaphore.Weighted, queueID, taskID string, retries, executions int) (int, error) {
	if err := sem.Acquire(q.ctx, 1); err != nil {
		return 0, err
	}
	defer sem.Release(1)
	task := q.task
	// Cloud Tasks counts an attempt as dispatched before it is answered.
	t.record(q, func(s *cloudtaskspb.Task) { s.DispatchCount = max(s.DispatchCount, int32(retries+1)) })
	t.deliveries.Add(1)
	hr := task.GetHttpRequest()
	ctx, cancel := context.WithTimeout(q.ctx, task.GetDispatchDeadline().AsDuration())
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
	if oidc := hr.GetOidcToken(); oidc != nil {
		// Cloud Tasks mints the token at dispatch; its audience defaults to
		// the task's URL.
		aud := oidc.GetAudience()
		if aud == "" {
			aud = hr.GetUrl()
		}
		tokens, err := t.idTokens()
		if err != nil {
			return 0, err
		}
		raw, err := tokens.Mint(oidc.GetServiceAccountEmail(), aud)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+raw)
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

// queueOf is the queue a task name belongs to.
func queueOf(name string) string {
	queue, _, _ := strings.Cut(name, "/tasks/")
	return queue
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

// wait sleeps for d unless ctx (the stand-in, or the task) ends first.
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// IDTokens returns the signer of the tasks' OIDC tokens, whose key verifies them.
func (t *Tasks) IDTokens() (*IDTokens, error) { return t.idTokens() }

func (t *Tasks) idTokens() (*IDTokens, error) {
	t.tokensOnce.Do(func() {
		if t.tokens == nil {
			t.tokens, t.tokensErr = NewIDTokens()
		}
	})
	return t.tokens, t.tokensErr
}

// record changes q's stored counts and writes them back.
func (t *Tasks) record(q *queued, change func(*cloudtaskspb.Task)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.done {
		return
	}
	change(q.task)
	if err := t.write(q.task); err != nil {
		t.opts.Log.Warn("devstack: storing task", "task", q.task.GetName(), "error", err)
	}
}

// store writes a new task.
func (t *Tasks) store(q *queued) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return t.write(q.task)
}

// finish ends one delivery sequence of q: the task ends once it succeeds, or
// once every sequence has given up; its context goes with the last sequence
// (another copy may still be in flight when one succeeds).
func (t *Tasks) finish(q *queued, succeeded bool) {
	q.mu.Lock()
	q.copies--
	last := succeeded || q.copies == 0
	release := q.copies == 0
	q.mu.Unlock()
	if last {
		t.end(q)
	}
	if release {
		q.cancel()
	}
}

// end marks q done and its name taken for NameWindow, stored before the task
// itself is forgotten (a crash in between delivers it again: at least once).
// It reports false when q had ended already.
func (t *Tasks) end(q *queued) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.done {
		return false
	}
	q.done = true
	name := q.task.GetName()
	until := t.opts.Now().Add(t.opts.NameWindow)
	t.mu.Lock()
	t.names[name] = until
	delete(t.live, name)
	t.mu.Unlock()
	if t.opts.Dir == "" {
		return true
	}
	if err := writeFile(t.opts.Dir, goneFile(t.opts.Dir, name), gone{Name: name, Until: until}); err != nil {
		t.opts.Log.Warn("devstack: remembering a task name", "task", name, "error", err)
	}
	if err := os.Remove(taskFile(t.opts.Dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.opts.Log.Warn("devstack: forgetting task", "task", name, "error", err)
	}
	return true
}

// gone is the stored form of a finished or deleted task's name.
type gone struct {
	Name  string    `json:"name"`
	Until time.Time `json:"until"`
}

// write stores task.
func (t *Tasks) write(task *cloudtaskspb.Task) error {
	if t.opts.Dir == "" {
		return nil
	}
	b, err := protojson.Marshal(task)
	if err != nil {
		return err
	}
	return writeBytes(t.opts.Dir, taskFile(t.opts.Dir, task.GetName()), b)
}

// writeFile stores v as JSON at path.
func writeFile(dir, path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeBytes(dir, path, b)
}

// writeBytes writes atomically (a temporary file in dir renamed over path),
// so a crash leaves the old version or the new one, never half of either.
func writeBytes(dir, path string, b []byte) error {
	f, err := os.CreateTemp(dir, ".task-*")
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

func taskFile(dir, name string) string {
	return filepath.Join(dir, name[strings.LastIndex(name, "/")+1:]+".json")
}

// goneFile is where a finished task's name is remembered; task ids hold no
// dots, so it never meets a task file.
func goneFile(dir, name string) string {
	return filepath.Join(dir, name[strings.LastIndex(name, "/")+1:]+".gone")
}

// loadTasks reads back the unfinished tasks of the queues served from dir
// (creating dir) and the names still taken at now, and removes temporary
// files a crash left behind and names whose window has passed. The tasks and
// names of a queue not served stay where they are.
func loadTasks(dir string, queues map[string]*semaphore.Weighted, now time.Time, log *slog.Logger) ([]*cloudtaskspb.Task, map[string]time.Time, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("devstack: tasks dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("devstack: tasks dir: %w", err)
	}
	var out []*cloudtaskspb.Task
	taken := map[string]time.Time{}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		switch {
		case strings.HasPrefix(e.Name(), ".task-"):
			_ = os.Remove(path)
			continue
		case e.IsDir():
			continue
		case strings.HasSuffix(e.Name(), ".gone"):
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, nil, fmt.Errorf("devstack: read task name: %w", err)
			}
			var g gone
			if err := json.Unmarshal(b, &g); err != nil {
				return nil, nil, fmt.Errorf("devstack: read task name %s: %w", path, err)
			}
			switch {
			case queues[queueOf(g.Name)] == nil:
			case now.Before(g.Until):
				taken[g.Name] = g.Until
			default:
				_ = os.Remove(path)
			}
			continue
		case !strings.HasSuffix(e.Name(), ".json"):
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, fmt.Errorf("devstack: read task: %w", err)
		}
		task := &cloudtaskspb.Task{}
		if err := protojson.Unmarshal(b, task); err != nil {
			return nil, nil, fmt.Errorf("devstack: read task %s: %w", path, err)
		}
		if queues[queueOf(task.GetName())] == nil || task.GetHttpRequest() == nil {
			log.Warn("devstack: task of another queue left undelivered", "file", path, "task", task.GetName())
			continue
		}
		out = append(out, task)
	}
	return out, taken, nil
}
