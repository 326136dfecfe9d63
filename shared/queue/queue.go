// Package queue enqueues row tasks on Cloud Tasks through the official client.
// A submit's task names are deterministic per (batch, row), so enqueuing twice
// is harmless: Cloud Tasks answers AlreadyExists and the row still runs once
// per delivery. Cloud Tasks keeps a name taken for up to about an hour after
// its task ran or was deleted, so a row that must run again is requeued under
// a fresh name; the row's lease in the ledger, not the name, keeps two tasks
// of one row from both doing its work.
//
// Dry-run rows may go to a queue of their own (Config.DryRunQueue), with its
// own rate limits: free dry runs then never wait in front of paid live rows.
// For picks the queue by a batch's run mode.
package queue

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	cloudtasks "cloud.google.com/go/cloudtasks/apiv2"
	"cloud.google.com/go/cloudtasks/apiv2/cloudtaskspb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/obs"
)

// Task is the body of a row task: which row of which batch to generate, and
// in which of the batch's retry rounds (0: the submit's).
type Task struct {
	BatchID string `json:"batchId"`
	Row     int    `json:"row"`
	Round   int    `json:"round,omitempty"`
}

// ID is the task's deterministic id: the row's TaskID, and the round for a
// retry (a retried row's first task ran under the row's own name, which
// Cloud Tasks may keep taken for an hour).
func (t Task) ID() string {
	if t.Round == 0 {
		return TaskID(t.BatchID, t.Row)
	}
	return fmt.Sprintf("%s-n%d", TaskID(t.BatchID, t.Row), t.Round)
}

// Config says where tasks go and how they authenticate.
type Config struct {
	// Queue is the full queue name: projects/P/locations/L/queues/Q.
	Queue string
	// DryRunQueue is the queue of dry-run rows; empty means Queue.
	DryRunQueue string
	// TargetURL is the generate endpoint the tasks are POSTed to.
	TargetURL string
	// ServiceAccount, when set, makes Cloud Tasks attach an OIDC token for it.
	ServiceAccount string
	// Audience of that token; Cloud Tasks uses TargetURL when empty.
	Audience string
	// DispatchDeadline bounds one delivery attempt (Cloud Tasks allows 15 s–30 min).
	DispatchDeadline time.Duration
}

// Enqueuer creates row tasks in one queue.
type Enqueuer struct {
	client *cloudtasks.Client
	cfg    Config
	// queue is where this enqueuer's tasks go: cfg.Queue, or the dry-run
	// queue for an enqueuer For returned.
	queue string
}

// New returns an enqueuer over a client built once per instance; its tasks
// go to cfg.Queue until For picks another.
func New(client *cloudtasks.Client, cfg Config) *Enqueuer {
	if cfg.DryRunQueue == "" {
		cfg.DryRunQueue = cfg.Queue
	}
	return &Enqueuer{client: client, cfg: cfg, queue: cfg.Queue}
}

// For returns the enqueuer of a batch's rows: the dry-run queue for dry
// runs, the main queue for live ones.
func (e *Enqueuer) For(mode ledger.RunMode) *Enqueuer {
	q := e.cfg.Queue
	if mode == ledger.DryRun {
		q = e.cfg.DryRunQueue
	}
	return &Enqueuer{client: e.client, cfg: e.cfg, queue: q}
}

// TaskID is the deterministic task id of a row. It starts with a hash so that
// names spread over Cloud Tasks' key space instead of sorting by time.
func TaskID(batchID string, row int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d", batchID, row))
	return fmt.Sprintf("%s-%s-r%02d", hex.EncodeToString(sum[:4]), batchID, row)
}

// retry covers transient gRPC failures: a deterministic name makes Enqueue's
// CreateTask idempotent, and Requeue takes a fresh name on every attempt.
var retry = []gax.CallOption{gax.WithRetry(func() gax.Retryer {
	return gax.OnCodes([]codes.Code{codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Internal},
		gax.Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2})
})}

// Enqueue creates the task for one row under its deterministic name (Task.ID).
// A task that already exists counts as enqueued.
func (e *Enqueuer) Enqueue(ctx context.Context, t Task) error {
	task, err := e.task(ctx, t, t.ID())
	if err != nil {
		return err
	}
	_, err = e.client.CreateTask(ctx, &cloudtaskspb.CreateTaskRequest{Parent: e.queue, Task: task}, retry...)
	if status.Code(err) == codes.AlreadyExists {
		return nil
	}
	if err != nil {
		return fmt.Errorf("queue: create task %s row %d: %w", t.BatchID, t.Row, err)
	}
	return nil
}

// Requeue creates another task for a row whose task ran, was dropped or was
// deleted, and returns its id: the row's deterministic id plus a random
// suffix, fresh on every attempt. The deterministic name may stay taken for an
// hour although nothing will run under it, so AlreadyExists is an error here,
// never success. A retry after a lost answer can leave two tasks for the row;
// the row's lease makes the second one a no-op.
func (e *Enqueuer) Requeue(ctx context.Context, t Task) (string, error) {
	var id string
	err := gax.Invoke(ctx, func(ctx context.Context, _ gax.CallSettings) error {
		id = RequeueID(t.BatchID, t.Row, rand.Text())
		task, err := e.task(ctx, t, id)
		if err != nil {
			return err
		}
		_, err = e.client.CreateTask(ctx, &cloudtaskspb.CreateTaskRequest{Parent: e.queue, Task: task})
		return err
	}, retry...)
	if err != nil {
		return "", fmt.Errorf("queue: requeue %s row %d: %w", t.BatchID, t.Row, err)
	}
	return id, nil
}

// RequeueID is the id of a requeued row task: the row's TaskID and suffix
// (letters and digits).
func RequeueID(batchID string, row int, suffix string) string {
	return TaskID(batchID, row) + "-" + suffix
}

// task builds the HTTP task for t under id.
func (e *Enqueuer) task(ctx context.Context, t Task, id string) (*cloudtaskspb.Task, error) {
	body, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("queue: encode task: %w", err)
	}
	headers := map[string]string{"Content-Type": "application/json"}
	if rid := obs.RequestID(ctx); rid != "" {
		headers[obs.HeaderRequestID] = rid
	}
	hr := &cloudtaskspb.HttpRequest{
		Url:        e.cfg.TargetURL,
		HttpMethod: cloudtaskspb.HttpMethod_POST,
		Headers:    headers,
		Body:       body,
	}
	if e.cfg.ServiceAccount != "" {
		hr.AuthorizationHeader = &cloudtaskspb.HttpRequest_OidcToken{OidcToken: &cloudtaskspb.OidcToken{
			ServiceAccountEmail: e.cfg.ServiceAccount,
			Audience:            e.cfg.Audience,
		}}
	}
	task := &cloudtaskspb.Task{
		Name:        e.queue + "/tasks/" + id,
		MessageType: &cloudtaskspb.Task_HttpRequest{HttpRequest: hr},
	}
	if e.cfg.DispatchDeadline > 0 {
		task.DispatchDeadline = durationpb.New(e.cfg.DispatchDeadline)
	}
	return task, nil
}

// Ping checks that the queues exist and are reachable (readiness).
func (e *Enqueuer) Ping(ctx context.Context) error {
	queues := []string{e.cfg.Queue}
	if e.cfg.DryRunQueue != e.cfg.Queue {
		queues = append(queues, e.cfg.DryRunQueue)
	}
	for _, q := range queues {
		if _, err := e.client.GetQueue(ctx, &cloudtaskspb.GetQueueRequest{Name: q}); err != nil {
			return fmt.Errorf("queue: get %s: %w", q, err)
		}
	}
	return nil
}
