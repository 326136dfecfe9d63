package submit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	cloudtasks "cloud.google.com/go/cloudtasks/apiv2"
	"cloud.google.com/go/cloudtasks/apiv2/cloudtaskspb"
	"github.com/matryer/is"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/completion"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/devstack/stacktest"
	"github.com/assetgen/assetgen/shared/flags"
	"github.com/assetgen/assetgen/shared/idempotency"
	"github.com/assetgen/assetgen/shared/models"
	"github.com/assetgen/assetgen/shared/queue"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time)         { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }
func (c *clock) day() string             { return budget.Day(c.now()) }
func (c *clock) advance(d time.Duration) { c.set(c.now().Add(d)) }

const testQueue = "projects/test/locations/here/queues/rows"

// clockedServer is the submit function over the emulator and the Cloud Tasks
// stand-in, as production wires it, with its clock under the test's control.
// Its tasks are acknowledged unrun: the rows stay queued.
func clockedServer(t *testing.T, c *clock, tf *devstack.TaskFaults) (http.Handler, *server) {
	t.Helper()
	is := is.New(t)
	clients := stacktest.Open(t, nil)
	ack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }))
	t.Cleanup(ack.Close)
	tasks, err := devstack.StartTasks(devstack.TasksOptions{Addr: "127.0.0.1:0", Queue: testQueue, Intercept: tf.Intercept, Log: slog.New(slog.DiscardHandler)})
	is.NoErr(err) // the stand-in starts
	t.Cleanup(tasks.Close)
	tc, err := cloudtasks.NewClient(context.Background(), option.WithEndpoint(tasks.Addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	is.NoErr(err)
	t.Cleanup(func() { _ = tc.Close() })
	fl, err := flags.New(func(string) string { return "" }, func(context.Context) (map[string]string, error) { return nil, flags.ErrNoObject }, time.Minute)
	is.NoErr(err)
	tokens, err := auth.NewTokens("k1:"+base64.StdEncoding.EncodeToString([]byte(strings.Repeat("s", 32))), time.Hour)
	is.NoErr(err)
	budgets := budget.NewStore(clients.Bucket, budget.NewLimits(clients.Bucket, 1, 0), budget.Total{LimitUSD: 100, Shards: 4}, 10*time.Second)
	s := &server{
		cfg: Config{Rules: batch.Rules{Models: models.Builtin()}, LiveAvailable: true},
		Deps: Deps{
			Store: clients.Ledger, Bucket: clients.Bucket, Queue: queue.New(tc, queue.Config{Queue: testQueue, TargetURL: ack.URL}),
			Signer: clients.Signer, Keys: idempotency.New(clients.Bucket), Budgets: budgets, Flags: fl, Tokens: tokens,
			Finisher: completion.New(clients.Ledger, clients.Bucket, budgets, completion.Notifier{}),
		},
		now: c.now,
	}
	mux := http.NewServeMux()
	mux.Handle("POST /batch/images", s.handleSubmit())
	mux.Handle("POST /batch/{batchId}/cancel", s.handleCancel())
	return auth.Require(auth.None{}, mux), s
}

func serve(h http.Handler, method, path, body, key string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set(HeaderIdempotencyKey, key)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// A submit whose first attempt began at 23:59:59 and whose retry comes after
// UTC midnight reserves on the first attempt's day — the day in the manifest,
// which settlement charges — and never on the new day, where a reservation
// would never be settled.
func TestRetryAcrossMidnightReservesOnTheFirstDay(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	c := &clock{}
	c.set(time.Date(2030, 3, 1, 23, 59, 59, 0, time.UTC))
	tf := &devstack.TaskFaults{}
	h, s := clockedServer(t, c, tf)
	// The first attempt stalls in its first CreateTask (a slow queue, a
	// frozen instance) until the retry is done.
	stalled, thaw := make(chan struct{}), make(chan struct{})
	tf.Before(func(ctx context.Context, n int, _ *cloudtaskspb.Task) error {
		if n == 1 {
			close(stalled)
			select {
			case <-thaw:
			case <-ctx.Done():
			}
		}
		return nil
	})
	body := `{"runMode":"live","confirm":"CONFIRM","rows":[{"prompt":"late night","variants":2}]}`
	first := make(chan *httptest.ResponseRecorder, 1)
	go func() { first <- serve(h, http.MethodPost, "/batch/images", body, "midnight") }()
	select {
	case <-stalled:
	case <-time.After(30 * time.Second):
		t.Fatal("the first attempt never reached the queue")
	}
	firstDay := c.day()
	c.advance(2 * time.Second) // 00:00:01, the next UTC day
	nextDay := c.day()
	is.True(firstDay != nextDay)

	retry := serve(h, http.MethodPost, "/batch/images", body, "midnight")
	close(thaw)
	is.Equal(retry.Code, http.StatusAccepted)
	var again api.SubmitResponse
	is.NoErr(json.Unmarshal(retry.Body.Bytes(), &again))
	done := <-first
	is.Equal(done.Code, http.StatusAccepted)
	var orig api.SubmitResponse
	is.NoErr(json.Unmarshal(done.Body.Bytes(), &orig))
	is.Equal(orig.BatchID, again.BatchID) // one batch

	ctx := context.Background()
	m, err := s.Store.Manifest(ctx, orig.BatchID)
	is.NoErr(err)
	is.Equal(m.BudgetDay, firstDay) // the batch settles on the first day
	old, err := s.Budgets.Get(ctx, auth.LocalUser, firstDay)
	is.NoErr(err)
	is.Equal(old.Reserved[orig.BatchID], budget.FromUSD(0.078)) // reserved there, once
	next, err := s.Budgets.Get(ctx, auth.LocalUser, nextDay)
	is.NoErr(err)
	is.Equal(len(next.Reserved), 0)      // and not on the new day
	is.Equal(again.Budget.Day, firstDay) // whose budget the retry answers

	// Cancelled after midnight, the batch settles on the day it reserved on.
	cancel := serve(h, http.MethodPost, "/batch/"+orig.BatchID+"/cancel", "", "")
	is.Equal(cancel.Code, http.StatusOK)
	old, err = s.Budgets.Get(ctx, auth.LocalUser, firstDay)
	is.NoErr(err)
	is.Equal(len(old.Reserved), 0) // released
	_, settled := old.Spent[orig.BatchID]
	is.True(settled) // by settlement, on the first day
	next, err = s.Budgets.Get(ctx, auth.LocalUser, nextDay)
	is.NoErr(err)
	is.Equal(len(next.Reserved)+len(next.Spent), 0) // the new day was never touched
}
