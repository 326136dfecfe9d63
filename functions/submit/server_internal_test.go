package submit

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	cloudtasks "cloud.google.com/go/cloudtasks/apiv2"
	"github.com/matryer/is"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/cloud"
	"github.com/assetgen/assetgen/shared/completion"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/devstack/stacktest"
	"github.com/assetgen/assetgen/shared/flags"
	"github.com/assetgen/assetgen/shared/idempotency"
	"github.com/assetgen/assetgen/shared/models"
	"github.com/assetgen/assetgen/shared/queue"
)

const testQueue = "projects/test/locations/here/queues/rows"

// testServerOptions shape testServer; zero fields take the defaults.
type testServerOptions struct {
	// wrap sits between the storage client and the emulator.
	wrap func(http.Handler) http.Handler
	// tasks, when set, sees every task the stand-in is asked to create.
	tasks *devstack.TaskFaults
	// userUSD is each user's daily budget (default 1), total the cap.
	userUSD  float64
	total    budget.Total
	patience time.Duration
	now      func() time.Time
}

// testServer is the submit function (submit, cancel, GET /budget) over the
// storage emulator and the Cloud Tasks stand-in, as production wires it. Its
// tasks are acknowledged unrun: the rows stay queued.
func testServer(t *testing.T, o testServerOptions) (http.Handler, *server, *cloud.Clients) {
	t.Helper()
	is := is.New(t)
	if o.userUSD == 0 {
		o.userUSD = 1
	}
	if o.total.LimitUSD == 0 {
		o.total = budget.Total{LimitUSD: 100, Shards: 4}
	}
	if o.patience == 0 {
		o.patience = 10 * time.Second
	}
	if o.now == nil {
		o.now = time.Now
	}
	clients := stacktest.OpenWith(t, o.wrap)
	ack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }))
	t.Cleanup(ack.Close)
	to := devstack.TasksOptions{Addr: "127.0.0.1:0", Queue: testQueue, Log: slog.New(slog.DiscardHandler)}
	if o.tasks != nil {
		to.Intercept = o.tasks.Intercept
	}
	tasks, err := devstack.StartTasks(to)
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
	budgets := budget.NewStore(clients.Bucket, budget.NewLimits(clients.Bucket, o.userUSD, 0), o.total, o.patience)
	s := &server{
		cfg: Config{Rules: batch.Rules{Models: models.Builtin()}, LiveAvailable: true},
		Deps: Deps{
			Store: clients.Ledger, Bucket: clients.Bucket, Queue: queue.New(tc, queue.Config{Queue: testQueue, TargetURL: ack.URL}),
			Signer: clients.Signer, Keys: idempotency.New(clients.Bucket), Budgets: budgets, Flags: fl, Tokens: tokens,
			Finisher: completion.New(clients.Ledger, clients.Bucket, budgets, completion.Notifier{}),
		},
		now: o.now,
	}
	mux := http.NewServeMux()
	mux.Handle("POST /batch/images", s.handleSubmit())
	mux.Handle("POST /batch/{batchId}/cancel", s.handleCancel())
	mux.Handle("GET /budget", s.handleBudget())
	return auth.Require(auth.None{}, mux), s, clients
}
