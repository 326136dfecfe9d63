// Package queue enqueues row tasks on Cloud Tasks through the official client.
// Task names are deterministic per (batch, row), so enqueuing twice is harmless:
// Cloud Tasks answers AlreadyExists and the row still runs once per delivery.
package queue

import (
	"context"
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

	"github.com/assetgen/assetgen/shared/obs"
)

// Task is the body of a row task: which row of which batch to generate.
type Task struct {
	BatchID string `json:"batchId"`
	Row     int    `json:"row"`
}

// Config says where tasks go and how they authenticate.
type Config struct {
	// Queue is the full queue name: projects/P/locations/L/queues/Q.
	Queue string
	// TargetURL is the generate endpoint the tasks are POSTed to.
	TargetURL string
	// ServiceAccount, when set, makes Cloud Tasks attach an OIDC token for it.
	ServiceAccount string
	// Audience of that token; Cloud Tasks uses TargetURL when empty.
	Audience string
	// DispatchDeadline bounds one delivery attempt (Cloud Tasks allows 15 s–30 min).
	DispatchDeadline time.Duration
}

// Enqueuer creates row tasks.
type Enqueuer struct {
	client *cloudtasks.Client
	cfg    Config
}

// New returns an enqueuer over a client built once per instance.
func New(client *cloudtasks.Client, cfg Config) *Enqueuer {
	return &Enqueuer{client: client, cfg: cfg}
}

// TaskID is the deterministic task id of a row. It starts with a hash so that
// names spread over Cloud Tasks' key space instead of sorting by time.
func TaskID(batchID string, row int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d", batchID, row))
	return fmt.Sprintf("%s-%s-r%02d", hex.EncodeToString(sum[:4]), batchID, row)
}

// retry covers transient gRPC failures; named tasks make CreateTask idempotent.
var retry = []gax.CallOption{gax.WithRetry(func() gax.Retryer {
	return gax.OnCodes([]codes.Code{codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Internal},
		gax.Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2})
})}

// Enqueue creates the task for one row. A task that already exists counts as
// enqueued.
func (e *Enqueuer) Enqueue(ctx context.Context, t Task) error {
	body, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("queue: encode task: %w", err)
	}
	headers := map[string]string{"Content-Type": "application/json"}
	if id := obs.RequestID(ctx); id != "" {
		headers[obs.HeaderRequestID] = id
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
		Name:        e.cfg.Queue + "/tasks/" + TaskID(t.BatchID, t.Row),
		MessageType: &cloudtaskspb.Task_HttpRequest{HttpRequest: hr},
	}
	if e.cfg.DispatchDeadline > 0 {
		task.DispatchDeadline = durationpb.New(e.cfg.DispatchDeadline)
	}
	_, err = e.client.CreateTask(ctx, &cloudtaskspb.CreateTaskRequest{Parent: e.cfg.Queue, Task: task}, retry...)
	if status.Code(err) == codes.AlreadyExists {
		return nil
	}
	if err != nil {
		return fmt.Errorf("queue: create task %s row %d: %w", t.BatchID, t.Row, err)
	}
	return nil
}

// Ping checks that the queue exists and is reachable (readiness).
func (e *Enqueuer) Ping(ctx context.Context) error {
	if _, err := e.client.GetQueue(ctx, &cloudtaskspb.GetQueueRequest{Name: e.cfg.Queue}); err != nil {
		return fmt.Errorf("queue: get %s: %w", e.cfg.Queue, err)
	}
	return nil
}
