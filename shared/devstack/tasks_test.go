package devstack_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudtasks "cloud.google.com/go/cloudtasks/apiv2"
	"cloud.google.com/go/cloudtasks/apiv2/cloudtaskspb"
	"github.com/matryer/is"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/queue"
)

const (
	testQueue   = "projects/test-project/locations/europe-west1/queues/rows"
	otherQueue  = "projects/test-project/locations/europe-west1/queues/other"
	targetPath  = "/generate"
	idleTimeout = 10 * time.Second
)

// delivery is one HTTP request the receiving side saw.
type delivery struct {
	method string
	path   string
	query  string
	body   []byte
	header http.Header
}

// receiver is the task handler: it records every delivery and answers with
// whatever respond says for the n-th delivery (0-based, in arrival order).
type receiver struct {
	srv     *httptest.Server
	respond func(n int, r *http.Request) int

	n   atomic.Int64
	mu  sync.Mutex
	got []delivery
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	n := int(rc.n.Add(1) - 1)
	rc.mu.Lock()
	rc.got = append(rc.got, delivery{
		method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, body: body, header: r.Header.Clone(),
	})
	rc.mu.Unlock()
	code := http.StatusOK
	if rc.respond != nil {
		code = rc.respond(n, r)
	}
	w.WriteHeader(code)
}

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

func (rc *receiver) url() string { return rc.srv.URL + targetPath }

type stack struct {
	tasks  *devstack.Tasks
	client *cloudtasks.Client
	rcv    *receiver
}

// startStack serves the stand-in on loopback with tiny backoffs, a receiving
// httptest server, and a real Cloud Tasks client pointed at the stand-in.
func startStack(t *testing.T, o devstack.TasksOptions, respond func(n int, r *http.Request) int) *stack {
	t.Helper()
	is := is.New(t)

	rcv := &receiver{respond: respond}
	rcv.srv = httptest.NewServer(rcv)
	t.Cleanup(rcv.srv.Close)

	o.Addr = "127.0.0.1:0"
	if o.Queue == "" {
		o.Queue = testQueue
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 5 * time.Millisecond
	}
	o.Log = slog.New(slog.DiscardHandler)
	tasks, err := devstack.StartTasks(o)
	is.NoErr(err) // stand-in starts
	t.Cleanup(tasks.Close)

	client, err := cloudtasks.NewClient(context.Background(),
		option.WithEndpoint(tasks.Addr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	)
	is.NoErr(err) // real client connects to the stand-in
	t.Cleanup(func() { _ = client.Close() })

	return &stack{tasks: tasks, client: client, rcv: rcv}
}

func (s *stack) enqueuer() *queue.Enqueuer {
	return queue.New(s.client, queue.Config{Queue: testQueue, TargetURL: s.rcv.url()})
}

// waitIdle blocks until the stand-in has nothing in flight, failing the test
// if that takes too long.
func (s *stack) waitIdle(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), idleTimeout)
	defer cancel()
	is.New(t).NoErr(s.tasks.WaitIdle(ctx)) // stand-in goes idle in time
}

// httpTask builds a raw CreateTask request in the served queue.
func httpTask(parent, name, url string, method cloudtaskspb.HttpMethod, body []byte) *cloudtaskspb.CreateTaskRequest {
	return &cloudtaskspb.CreateTaskRequest{
		Parent: parent,
		Task: &cloudtaskspb.Task{
			Name: name,
			MessageType: &cloudtaskspb.Task_HttpRequest{HttpRequest: &cloudtaskspb.HttpRequest{
				Url: url, HttpMethod: method, Body: body,
			}},
		},
	}
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), idleTimeout)
	t.Cleanup(cancel)
	return ctx
}

// (a) The production enqueuer's task arrives once, as Cloud Tasks would send it.
func TestTasksDeliversEnqueuedTaskOnce(t *testing.T) {
	is := is.New(t)
	s := startStack(t, devstack.TasksOptions{}, nil)

	batchID := batch.NewID()
	ctx := obs.WithRequestID(ctxTimeout(t), "req-123")
	is.NoErr(s.enqueuer().Enqueue(ctx, queue.Task{BatchID: batchID, Row: 7})) // enqueue succeeds
	s.waitIdle(t)

	got := s.rcv.deliveries()
	is.Equal(len(got), 1) // delivered exactly once
	d := got[0]
	is.Equal(d.method, http.MethodPost) // enqueuer asks for POST
	is.Equal(d.path, targetPath)        // delivered to the target URL's path

	var task queue.Task
	is.NoErr(json.Unmarshal(d.body, &task))                                   // body is the JSON task
	is.Equal(task, queue.Task{BatchID: batchID, Row: 7})                      // body round-trips
	is.Equal(d.header.Get("Content-Type"), "application/json")                // task header forwarded
	is.Equal(d.header.Get(obs.HeaderRequestID), "req-123")                    // request id propagated
	is.Equal(d.header.Get("X-CloudTasks-QueueName"), "rows")                  // queue short name
	is.Equal(d.header.Get("X-CloudTasks-TaskName"), queue.TaskID(batchID, 7)) // task short name
	is.Equal(d.header.Get("X-CloudTasks-TaskRetryCount"), "0")                // first attempt
	is.Equal(d.header.Get("X-CloudTasks-TaskExecutionCount"), "0")            // no earlier response
	is.Equal(d.header.Get("User-Agent"), "Google-Cloud-Tasks")                // Cloud Tasks user agent
	is.True(d.header.Get("X-CloudTasks-TaskETA") != "")                       // ETA header present

	st := s.tasks.Stats()
	is.Equal(st, devstack.TaskStats{Created: 1, Deliveries: 1, Succeeded: 1}) // counters match one clean delivery
}

// (a) A raw task keeps its own method, path, query, body and headers.
func TestTasksDeliversRawTask(t *testing.T) {
	is := is.New(t)
	s := startStack(t, devstack.TasksOptions{}, nil)

	req := httpTask(testQueue, testQueue+"/tasks/raw-task_1", s.rcv.srv.URL+"/hooks/x?a=b", cloudtaskspb.HttpMethod_PUT, []byte("payload"))
	req.Task.GetHttpRequest().Headers = map[string]string{"X-Custom": "v"}
	created, err := s.client.CreateTask(ctxTimeout(t), req)
	is.NoErr(err)                                              // CreateTask accepted
	is.Equal(created.GetName(), testQueue+"/tasks/raw-task_1") // name echoed back
	s.waitIdle(t)

	got := s.rcv.deliveries()
	is.Equal(len(got), 1)                                              // delivered once
	is.Equal(got[0].method, http.MethodPut)                            // method honoured
	is.Equal(got[0].path, "/hooks/x")                                  // path honoured
	is.Equal(got[0].query, "a=b")                                      // query kept
	is.Equal(string(got[0].body), "payload")                           // body verbatim
	is.Equal(got[0].header.Get("X-Custom"), "v")                       // custom header forwarded
	is.Equal(got[0].header.Get("X-CloudTasks-TaskName"), "raw-task_1") // short task name
}

// An unnamed task gets a generated name, and its deliveries carry that name.
func TestTasksGeneratesNameForUnnamedTask(t *testing.T) {
	is := is.New(t)
	s := startStack(t, devstack.TasksOptions{}, nil)

	created, err := s.client.CreateTask(ctxTimeout(t), httpTask(testQueue, "", s.rcv.url(), cloudtaskspb.HttpMethod_POST, nil))
	is.NoErr(err)                                                      // CreateTask accepted
	is.True(strings.HasPrefix(created.GetName(), testQueue+"/tasks/")) // generated name is in the queue
	short := created.GetName()[strings.LastIndex(created.GetName(), "/")+1:]
	is.True(short != "") // generated short name not empty
	s.waitIdle(t)

	got := s.rcv.deliveries()
	is.Equal(len(got), 1)                                       // delivered once
	is.Equal(got[0].header.Get("X-CloudTasks-TaskName"), short) // header matches generated name
}

// (b) The same task name twice: one task, one delivery.
func TestTasksDedupsByName(t *testing.T) {
	is := is.New(t)
	s := startStack(t, devstack.TasksOptions{}, nil)
	ctx := ctxTimeout(t)

	e := s.enqueuer()
	task := queue.Task{BatchID: batch.NewID(), Row: 3}
	is.NoErr(e.Enqueue(ctx, task)) // first enqueue succeeds
	is.NoErr(e.Enqueue(ctx, task)) // second enqueue treats AlreadyExists as success

	name := testQueue + "/tasks/" + queue.TaskID(task.BatchID, task.Row)
	_, err := s.client.CreateTask(ctx, httpTask(testQueue, name, s.rcv.url(), cloudtaskspb.HttpMethod_POST, nil))
	is.Equal(status.Code(err), codes.AlreadyExists) // raw duplicate CreateTask refused
	s.waitIdle(t)

	is.Equal(len(s.rcv.deliveries()), 1) // only one delivery despite three creates
	st := s.tasks.Stats()
	is.Equal(st.Created, int64(1))    // one task accepted
	is.Equal(st.Duplicates, int64(2)) // two refused as duplicates
	is.Equal(st.Deliveries, int64(1)) // one HTTP request
}

// (c) 503, 503, 200: three attempts with retry counts 0, 1, 2, then success.
func TestTasksRetriesUntilSuccess(t *testing.T) {
	is := is.New(t)
	s := startStack(t, devstack.TasksOptions{MaxAttempts: 5}, func(n int, _ *http.Request) int {
		if n < 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})

	is.NoErr(s.enqueuer().Enqueue(ctxTimeout(t), queue.Task{BatchID: batch.NewID(), Row: 0})) // enqueue succeeds
	s.waitIdle(t)

	got := s.rcv.deliveries()
	is.Equal(len(got), 3) // two failures then one success
	var retries []string
	for _, d := range got {
		retries = append(retries, d.header.Get("X-CloudTasks-TaskRetryCount"))
	}
	is.Equal(retries, []string{"0", "1", "2"}) // retry count grows per attempt
	st := s.tasks.Stats()
	is.Equal(st.Succeeded, int64(1))  // task eventually succeeded
	is.Equal(st.Failures, int64(2))   // two failed attempts
	is.Equal(st.Deliveries, int64(3)) // three HTTP requests
	is.Equal(st.Dropped, int64(0))    // nothing dropped
}

// Non-5xx failures (here 429) are responses from the handler, so they count as
// executions as well as retries.
func TestTasksExecutionCountCountsNon5xxResponses(t *testing.T) {
	is := is.New(t)
	s := startStack(t, devstack.TasksOptions{}, func(n int, _ *http.Request) int {
		if n < 2 {
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})

	is.NoErr(s.enqueuer().Enqueue(ctxTimeout(t), queue.Task{BatchID: batch.NewID(), Row: 1})) // enqueue succeeds
	s.waitIdle(t)

	got := s.rcv.deliveries()
	is.Equal(len(got), 3) // two 429s then success
	var retries, execs []string
	for _, d := range got {
		retries = append(retries, d.header.Get("X-CloudTasks-TaskRetryCount"))
		execs = append(execs, d.header.Get("X-CloudTasks-TaskExecutionCount"))
	}
	is.Equal(retries, []string{"0", "1", "2"}) // every attempt counts as a retry
	is.Equal(execs, []string{"0", "1", "2"})   // 4xx responses count as executions
}

// Cloud Tasks documents X-CloudTasks-TaskExecutionCount as "the total number of
// times that the task has received a response from the handler ... This number
// does not include failures due to 5XX error codes."
func TestTasksExecutionCountExcludes5xx(t *testing.T) {
	is := is.New(t)
	s := startStack(t, devstack.TasksOptions{}, func(n int, _ *http.Request) int {
		if n < 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})

	is.NoErr(s.enqueuer().Enqueue(ctxTimeout(t), queue.Task{BatchID: batch.NewID(), Row: 2})) // enqueue succeeds
	s.waitIdle(t)

	var execs []string
	for _, d := range s.rcv.deliveries() {
		execs = append(execs, d.header.Get("X-CloudTasks-TaskExecutionCount"))
	}
	is.Equal(execs, []string{"0", "0", "0"}) // 503s are not executions
}

// (d) Always 500 with MaxAttempts 3: three attempts, then the task is dropped.
func TestTasksDropsAfterMaxAttempts(t *testing.T) {
	is := is.New(t)
	s := startStack(t, devstack.TasksOptions{MaxAttempts: 3}, func(int, *http.Request) int {
		return http.StatusInternalServerError
	})

	is.NoErr(s.enqueuer().Enqueue(ctxTimeout(t), queue.Task{BatchID: batch.NewID(), Row: 4})) // enqueue succeeds
	s.waitIdle(t)

	got := s.rcv.deliveries()
	is.Equal(len(got), 3)                                           // exactly MaxAttempts deliveries
	is.Equal(got[2].header.Get("X-CloudTasks-TaskRetryCount"), "2") // last attempt is the second retry
	st := s.tasks.Stats()
	is.Equal(st, devstack.TaskStats{Created: 1, Deliveries: 3, Failures: 3, Dropped: 1}) // dropped, never succeeded
}

// (e) DuplicateDelivery: every task reaches the handler twice, concurrently.
func TestTasksDuplicateDelivery(t *testing.T) {
	is := is.New(t)

	// Each task's first copy waits in the handler until its second copy has
	// arrived, which only happens if the two are delivered concurrently. A
	// copy that gives up answers 500, which would show up as extra deliveries.
	var mu sync.Mutex
	arrived := map[string]int{}
	both := map[string]chan struct{}{}
	s := startStack(t, devstack.TasksOptions{DuplicateDelivery: true, MaxAttempts: 3}, func(_ int, r *http.Request) int {
		name := r.Header.Get("X-CloudTasks-TaskName")
		mu.Lock()
		ch, ok := both[name]
		if !ok {
			ch = make(chan struct{})
			both[name] = ch
		}
		arrived[name]++
		if arrived[name] == 2 {
			close(ch)
		}
		mu.Unlock()
		select {
		case <-ch:
			return http.StatusOK
		case <-r.Context().Done():
			return http.StatusInternalServerError
		case <-time.After(idleTimeout / 2):
			return http.StatusInternalServerError
		}
	})

	e := s.enqueuer()
	ctx := ctxTimeout(t)
	batchID := batch.NewID()
	const rows = 3
	for row := range rows {
		is.NoErr(e.Enqueue(ctx, queue.Task{BatchID: batchID, Row: row})) // enqueue succeeds
	}
	s.waitIdle(t)

	perTask := map[string]int{}
	for _, d := range s.rcv.deliveries() {
		perTask[d.header.Get("X-CloudTasks-TaskName")]++
	}
	is.Equal(len(perTask), rows) // every task delivered
	for row := range rows {
		is.Equal(perTask[queue.TaskID(batchID, row)], 2) // each task delivered exactly twice
	}
	st := s.tasks.Stats()
	is.Equal(st.Created, int64(rows))      // each task created once
	is.Equal(st.Deliveries, int64(2*rows)) // two deliveries per task
	is.Equal(st.Succeeded, int64(2*rows))  // both copies succeed
	is.Equal(st.Failures, int64(0))        // both copies were in the handler together
}

// MaxConcurrent bounds how many deliveries the handler sees at once.
func TestTasksMaxConcurrent(t *testing.T) {
	is := is.New(t)
	var cur, peak atomic.Int64
	s := startStack(t, devstack.TasksOptions{MaxConcurrent: 1}, func(int, *http.Request) int {
		n := cur.Add(1)
		defer cur.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		return http.StatusOK
	})

	e := s.enqueuer()
	ctx := ctxTimeout(t)
	batchID := batch.NewID()
	const rows = 8
	for row := range rows {
		is.NoErr(e.Enqueue(ctx, queue.Task{BatchID: batchID, Row: row})) // enqueue succeeds
	}
	s.waitIdle(t)

	is.Equal(len(s.rcv.deliveries()), rows) // all tasks delivered
	is.Equal(peak.Load(), int64(1))         // never more than one delivery at once
}

// (f) GetQueue answers for the served queue only.
func TestTasksGetQueue(t *testing.T) {
	is := is.New(t)
	s := startStack(t, devstack.TasksOptions{}, nil)
	ctx := ctxTimeout(t)

	q, err := s.client.GetQueue(ctx, &cloudtaskspb.GetQueueRequest{Name: testQueue})
	is.NoErr(err)                                      // served queue exists
	is.Equal(q.GetName(), testQueue)                   // its full name
	is.Equal(q.GetState(), cloudtaskspb.Queue_RUNNING) // and it is running

	_, err = s.client.GetQueue(ctx, &cloudtaskspb.GetQueueRequest{Name: otherQueue})
	is.Equal(status.Code(err), codes.NotFound) // another queue does not exist

	is.NoErr(s.enqueuer().Ping(ctx)) // production readiness probe passes
	other := queue.New(s.client, queue.Config{Queue: otherQueue, TargetURL: s.rcv.url()})
	is.True(other.Ping(ctx) != nil) // probe of an unknown queue fails
}

// (g) CreateTask requests the stand-in must refuse, and nothing is delivered.
func TestTasksCreateTaskRejections(t *testing.T) {
	s := startStack(t, devstack.TasksOptions{}, nil)

	cases := []struct {
		name string
		req  func(url string) *cloudtaskspb.CreateTaskRequest
		code codes.Code
	}{
		{"wrong parent", func(url string) *cloudtaskspb.CreateTaskRequest {
			return httpTask(otherQueue, "", url, cloudtaskspb.HttpMethod_POST, nil)
		}, codes.NotFound},
		{"wrong parent with name in it", func(url string) *cloudtaskspb.CreateTaskRequest {
			return httpTask(otherQueue, otherQueue+"/tasks/t1", url, cloudtaskspb.HttpMethod_POST, nil)
		}, codes.NotFound},
		{"task name in another queue", func(url string) *cloudtaskspb.CreateTaskRequest {
			return httpTask(testQueue, otherQueue+"/tasks/t1", url, cloudtaskspb.HttpMethod_POST, nil)
		}, codes.InvalidArgument},
		{"no URL", func(string) *cloudtaskspb.CreateTaskRequest {
			return httpTask(testQueue, "", "", cloudtaskspb.HttpMethod_POST, nil)
		}, codes.InvalidArgument},
		{"task id with a slash", func(url string) *cloudtaskspb.CreateTaskRequest {
			return httpTask(testQueue, testQueue+"/tasks/a/../b", url, cloudtaskspb.HttpMethod_POST, nil)
		}, codes.InvalidArgument},
		{"not an HTTP task", func(string) *cloudtaskspb.CreateTaskRequest {
			return &cloudtaskspb.CreateTaskRequest{Parent: testQueue, Task: &cloudtaskspb.Task{}}
		}, codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			_, err := s.client.CreateTask(ctxTimeout(t), tc.req(s.rcv.url()))
			is.Equal(status.Code(err), tc.code) // refused with the right code
		})
	}

	t.Run("enqueuer with wrong queue", func(t *testing.T) {
		is := is.New(t)
		e := queue.New(s.client, queue.Config{Queue: otherQueue, TargetURL: s.rcv.url()})
		err := e.Enqueue(ctxTimeout(t), queue.Task{BatchID: batch.NewID(), Row: 0})
		is.Equal(status.Code(err), codes.NotFound) // NotFound surfaces through Enqueue
	})

	is := is.New(t)
	s.waitIdle(t)
	is.Equal(len(s.rcv.deliveries()), 0)            // nothing delivered
	is.Equal(s.tasks.Stats(), devstack.TaskStats{}) // nothing created, nothing counted
}

// Cloud Tasks documents HttpRequest.http_method as "The HTTP method to use for
// the request. The default is POST."
func TestTasksUnspecifiedMethodDefaultsToPost(t *testing.T) {
	is := is.New(t)
	s := startStack(t, devstack.TasksOptions{}, nil)

	_, err := s.client.CreateTask(ctxTimeout(t), httpTask(testQueue, "", s.rcv.url(), cloudtaskspb.HttpMethod_HTTP_METHOD_UNSPECIFIED, []byte("x")))
	is.NoErr(err) // CreateTask accepted
	s.waitIdle(t)

	got := s.rcv.deliveries()
	is.Equal(len(got), 1)                    // delivered once
	is.Equal(got[0].method, http.MethodPost) // unspecified method means POST
}

// Tasks outlive the stand-in: one delivery in flight and one waiting when it
// stops are both delivered by the next stand-in on the same Dir, the first as
// a retry (it had been dispatched), and nothing is left stored once they
// succeed.
func TestTasksRedeliveredAfterRestart(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()

	// Before the restart the handler holds each delivery until the stand-in
	// goes away; after it, it answers at once. One delivery at a time.
	var restarted atomic.Bool
	inFlight := make(chan string, 1)
	first := startStack(t, devstack.TasksOptions{Dir: dir, MaxConcurrent: 1}, func(_ int, r *http.Request) int {
		if restarted.Load() {
			return http.StatusOK
		}
		inFlight <- r.Header.Get("X-CloudTasks-TaskName")
		<-r.Context().Done()
		return http.StatusServiceUnavailable
	})
	batchID := batch.NewID()
	ctx := ctxTimeout(t)
	is.NoErr(first.enqueuer().Enqueue(ctx, queue.Task{BatchID: batchID, Row: 0})) // first task
	held := <-inFlight                                                            // its delivery is in flight
	is.NoErr(first.enqueuer().Enqueue(ctx, queue.Task{BatchID: batchID, Row: 1})) // second task waits
	first.tasks.Close()

	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	is.NoErr(err)
	is.Equal(len(files), 2) // both tasks are stored

	restarted.Store(true)
	// The stored tasks keep the URL they were created with: the first receiver's.
	second := startStack(t, devstack.TasksOptions{Dir: dir}, nil)
	second.waitIdle(t)

	st := second.tasks.Stats()
	is.Equal(st.Restored, int64(2))  // both read back
	is.Equal(st.Succeeded, int64(2)) // both delivered
	is.Equal(st.Created, int64(0))   // none created anew
	got := first.rcv.deliveries()
	is.Equal(len(got), 3) // the interrupted delivery, then both tasks again
	retries := map[string]string{}
	for _, d := range got[1:] {
		retries[d.header.Get("X-CloudTasks-TaskName")] = d.header.Get("X-CloudTasks-TaskRetryCount")
	}
	is.Equal(retries, map[string]string{held: "1", queue.TaskID(batchID, 1): "0"}) // the in-flight one is a retry
	files, err = filepath.Glob(filepath.Join(dir, "*.json"))
	is.NoErr(err)
	is.Equal(len(files), 0) // finished tasks are forgotten
	files, err = filepath.Glob(filepath.Join(dir, "*.gone"))
	is.NoErr(err)
	is.Equal(len(files), 2) // their names are remembered
}

// A restored task's name is still taken: creating it again is AlreadyExists,
// as for any task the queue holds.
func TestTasksRestoredNameIsTaken(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	first := startStack(t, devstack.TasksOptions{Dir: dir}, nil)
	task := httpTask(testQueue, testQueue+"/tasks/later", first.rcv.url(), cloudtaskspb.HttpMethod_POST, nil)
	task.Task.ScheduleTime = timestamppb.New(time.Now().Add(time.Hour))
	_, err := first.client.CreateTask(ctxTimeout(t), task)
	is.NoErr(err) // scheduled an hour from now
	first.tasks.Close()

	second := startStack(t, devstack.TasksOptions{Dir: dir}, nil)
	_, err = second.client.CreateTask(ctxTimeout(t), task)
	is.Equal(status.Code(err), codes.AlreadyExists) // the restored task holds its name
	is.Equal(second.tasks.Stats().Restored, int64(1))
}

// Tasks of another queue in Dir are left alone, and a crash's temporary
// files are cleared.
func TestTasksRestoreSkipsOtherQueues(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	first := startStack(t, devstack.TasksOptions{Dir: dir, Queue: otherQueue}, nil)
	task := httpTask(otherQueue, otherQueue+"/tasks/elsewhere", first.rcv.url(), cloudtaskspb.HttpMethod_POST, nil)
	task.Task.ScheduleTime = timestamppb.New(time.Now().Add(time.Hour))
	_, err := first.client.CreateTask(ctxTimeout(t), task)
	is.NoErr(err)
	first.tasks.Close()
	is.NoErr(os.WriteFile(filepath.Join(dir, ".task-123"), []byte("{"), 0o644))

	second := startStack(t, devstack.TasksOptions{Dir: dir}, nil)
	second.waitIdle(t)
	is.Equal(second.tasks.Stats().Restored, int64(0)) // not this queue's task
	_, err = os.Stat(filepath.Join(dir, "elsewhere.json"))
	is.NoErr(err) // still stored for its own queue
	_, err = os.Stat(filepath.Join(dir, ".task-123"))
	is.True(errors.Is(err, os.ErrNotExist)) // the half-written file is gone
}

// clock is a settable clock for NameWindow.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Like Cloud Tasks, the stand-in keeps the name of a task that ran (succeeded
// or was dropped) taken for NameWindow: CreateTask answers AlreadyExists and
// nothing runs. Once the window has passed the name is free again.
func TestTasksRemembersExecutedNames(t *testing.T) {
	is := is.New(t)
	c := newClock()
	s := startStack(t, devstack.TasksOptions{MaxAttempts: 2, NameWindow: time.Hour, Now: c.Now}, func(_ int, r *http.Request) int {
		if strings.Contains(r.Header.Get("X-CloudTasks-TaskName"), "fails") {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	ctx := ctxTimeout(t)
	ran := httpTask(testQueue, testQueue+"/tasks/ran", s.rcv.url(), cloudtaskspb.HttpMethod_POST, nil)
	fails := httpTask(testQueue, testQueue+"/tasks/fails", s.rcv.url(), cloudtaskspb.HttpMethod_POST, nil)
	for _, req := range []*cloudtaskspb.CreateTaskRequest{ran, fails} {
		_, err := s.client.CreateTask(ctx, req)
		is.NoErr(err) // created
	}
	s.waitIdle(t)
	is.Equal(len(s.rcv.deliveries()), 3) // one success, two failed attempts

	c.Add(59 * time.Minute)
	for _, req := range []*cloudtaskspb.CreateTaskRequest{ran, fails} {
		_, err := s.client.CreateTask(ctx, req)
		is.Equal(status.Code(err), codes.AlreadyExists) // the name is still taken
	}
	s.waitIdle(t)
	is.Equal(len(s.rcv.deliveries()), 3) // and nothing ran

	c.Add(time.Minute)
	_, err := s.client.CreateTask(ctx, ran)
	is.NoErr(err) // the window has passed: the name is free
	s.waitIdle(t)
	is.Equal(len(s.rcv.deliveries()), 4) // and the task runs
	st := s.tasks.Stats()
	is.Equal(st.Created, int64(3))    // ran twice, fails once
	is.Equal(st.Duplicates, int64(2)) // the two refusals
	is.Equal(st.Dropped, int64(1))
}

// DeleteTask removes a waiting task: it never runs, its name stays taken, and
// a second delete finds nothing.
func TestTasksDeleteTask(t *testing.T) {
	is := is.New(t)
	s := startStack(t, devstack.TasksOptions{}, nil)
	ctx := ctxTimeout(t)
	name := testQueue + "/tasks/later"
	req := httpTask(testQueue, name, s.rcv.url(), cloudtaskspb.HttpMethod_POST, nil)
	req.Task.ScheduleTime = timestamppb.New(time.Now().Add(time.Hour))
	_, err := s.client.CreateTask(ctx, req)
	is.NoErr(err) // scheduled an hour from now

	is.NoErr(s.client.DeleteTask(ctx, &cloudtaskspb.DeleteTaskRequest{Name: name})) // deleted
	s.waitIdle(t)                                                                   // its delivery sequence ended
	err = s.client.DeleteTask(ctx, &cloudtaskspb.DeleteTaskRequest{Name: name})
	is.Equal(status.Code(err), codes.NotFound) // gone
	err = s.client.DeleteTask(ctx, &cloudtaskspb.DeleteTaskRequest{Name: testQueue + "/tasks/never"})
	is.Equal(status.Code(err), codes.NotFound) // never existed
	req.Task.ScheduleTime = nil
	_, err = s.client.CreateTask(ctx, req)
	is.Equal(status.Code(err), codes.AlreadyExists) // a deleted task's name stays taken
	s.waitIdle(t)
	is.Equal(len(s.rcv.deliveries()), 0) // nothing ran
	is.Equal(s.tasks.Stats().Deleted, int64(1))
}

// The names are remembered across a restart on the same Dir, until their
// window passes; then their files are cleared.
func TestTasksRemembersNamesAcrossRestart(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	c := newClock()
	first := startStack(t, devstack.TasksOptions{Dir: dir, Now: c.Now}, nil)
	e := first.enqueuer()
	task := queue.Task{BatchID: batch.NewID(), Row: 0}
	is.NoErr(e.Enqueue(ctxTimeout(t), task)) // runs once
	first.waitIdle(t)
	first.tasks.Close()

	second := startStack(t, devstack.TasksOptions{Dir: dir, Now: c.Now}, nil)
	name := testQueue + "/tasks/" + queue.TaskID(task.BatchID, task.Row)
	req := httpTask(testQueue, name, second.rcv.url(), cloudtaskspb.HttpMethod_POST, nil)
	_, err := second.client.CreateTask(ctxTimeout(t), req)
	is.Equal(status.Code(err), codes.AlreadyExists) // remembered after the restart
	second.tasks.Close()

	c.Add(time.Hour)
	third := startStack(t, devstack.TasksOptions{Dir: dir, Now: c.Now}, nil)
	files, err := filepath.Glob(filepath.Join(dir, "*.gone"))
	is.NoErr(err)
	is.Equal(len(files), 0) // the expired name was cleared at start
	req = httpTask(testQueue, name, third.rcv.url(), cloudtaskspb.HttpMethod_POST, nil)
	_, err = third.client.CreateTask(ctxTimeout(t), req)
	is.NoErr(err) // and is free
	third.waitIdle(t)
	is.Equal(len(third.rcv.deliveries()), 1) // the new task ran
}

// A task of a row that already ran cannot be enqueued again under its
// deterministic name (Enqueue reports success, nothing runs); Requeue takes a
// fresh name each time, and its deliveries carry it.
func TestTasksRequeueRunsAgain(t *testing.T) {
	is := is.New(t)
	s := startStack(t, devstack.TasksOptions{}, nil)
	ctx := ctxTimeout(t)
	e := s.enqueuer()
	task := queue.Task{BatchID: batch.NewID(), Row: 2}
	is.NoErr(e.Enqueue(ctx, task))
	s.waitIdle(t)
	is.NoErr(e.Enqueue(ctx, task)) // AlreadyExists, counted as enqueued
	s.waitIdle(t)
	is.Equal(len(s.rcv.deliveries()), 1) // but nothing ran

	a, err := e.Requeue(ctx, task)
	is.NoErr(err) // requeued
	b, err := e.Requeue(ctx, task)
	is.NoErr(err)                                                    // and again
	is.True(a != b)                                                  // under fresh names
	is.True(strings.HasPrefix(a, queue.TaskID(task.BatchID, 2)+"-")) // that name the row
	s.waitIdle(t)
	got := s.rcv.deliveries()
	is.Equal(len(got), 3) // both requeued tasks ran
	names := map[string]bool{}
	for _, d := range got[1:] {
		names[d.header.Get("X-CloudTasks-TaskName")] = true
		var body queue.Task
		is.NoErr(json.Unmarshal(d.body, &body))
		is.Equal(body, task) // the same row
	}
	is.Equal(names, map[string]bool{a: true, b: true})
}
