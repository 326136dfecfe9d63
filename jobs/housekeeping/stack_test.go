package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/batchindex"
	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/cloud"
	"github.com/assetgen/assetgen/shared/completion"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/idempotency"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/ledgerstore"
	"github.com/assetgen/assetgen/shared/queue"
)

const (
	testBucket  = "assetgen-housekeeping-test"
	testQueue   = "projects/p/locations/l/queues/generate"
	maxAttempts = 3
	price       = 0.039
)

// stack is the emulator with the production clients, a Tasks stand-in, and an
// httptest server standing in for generate that counts the deliveries.
type stack struct {
	env     map[string]string
	store   *ledgerstore.Store
	bucket  *bucket.Bucket
	budgets *budget.Store
	faults  *devstack.Faults
	tasks   *devstack.Tasks
	queue   *queue.Enqueuer

	mu         sync.Mutex
	deliveries map[queue.Task]int // by the row the task names
	names      map[string]bool    // X-CloudTasks-TaskName of every delivery
	// work, when set, is what generate does with a delivery: the status it
	// answers. Unset, it answers 200 and does nothing.
	work func(context.Context, queue.Task) int
}

func newStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{faults: devstack.NewFaults(1), deliveries: map[queue.Task]int{}, names: map[string]bool{}}
	g, err := devstack.StartGCS(devstack.GCSOptions{Addr: "127.0.0.1:0", Root: t.TempDir(), Buckets: []string{testBucket}, Wrap: s.faults.Wrap})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Close(ctx)
	})
	gen := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var task queue.Task
		_ = json.NewDecoder(r.Body).Decode(&task)
		s.mu.Lock()
		s.deliveries[task]++
		s.names[r.Header.Get("X-CloudTasks-TaskName")] = true
		work := s.work
		s.mu.Unlock()
		code := http.StatusOK
		if work != nil {
			code = work(r.Context(), task)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(gen.Close)
	s.tasks, err = devstack.StartTasks(devstack.TasksOptions{
		Addr: "127.0.0.1:0", Queue: testQueue, MinBackoff: 10 * time.Millisecond, MaxAttempts: maxAttempts,
		Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.tasks.Close)
	s.env = map[string]string{
		"BUCKET":                testBucket,
		"TASKS_QUEUE":           testQueue,
		"GENERATE_URL":          gen.URL + "/tasks/generate",
		"STORAGE_EMULATOR_HOST": g.Addr,
		"TASKS_EMULATOR_HOST":   s.tasks.Addr,
		"SIGNING_KEY_FILE":      t.TempDir() + "/key.pem",
		"TASKS_MAX_ATTEMPTS":    fmt.Sprint(maxAttempts),
	}
	cfg, err := config.Load(s.getenv)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cloud.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.OpenTasks(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	s.store, s.bucket, s.queue = c.Ledger, c.Bucket, c.Enqueuer(cfg)
	s.budgets = budget.NewStore(c.Bucket, budget.NewLimits(c.Bucket, 10, time.Hour), budget.Total{LimitUSD: 1000, Shards: 4}, 30*time.Second)
	return s
}

func (s *stack) getenv(k string) string { return s.env[k] }

// run runs the job as main does and returns its summary line and all output.
func (s *stack) run(t *testing.T, args ...string) (summary, out string, err error) {
	t.Helper()
	var buf bytes.Buffer
	err = run(context.Background(), args, s.getenv, &buf)
	out = buf.String()
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(line, "housekeeping: ") {
			if summary != "" {
				t.Errorf("more than one summary line:\n%s", out)
			}
			summary = line
		}
	}
	return summary, out, err
}

// settle waits until the Tasks stand-in has delivered everything.
func (s *stack) settle(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.tasks.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
}

// delivered counts the deliveries of each row's tasks.
func (s *stack) delivered() map[queue.Task]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[queue.Task]int{}
	for k, v := range s.deliveries {
		out[k] = v
	}
	return out
}

// taskNames are the names of the tasks delivered.
func (s *stack) taskNames() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]bool{}
	for k := range s.names {
		out[k] = true
	}
	return out
}

func (s *stack) setWork(work func(context.Context, queue.Task) int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.work = work
}

// rowTask is the task of row i of m.
func rowTask(m *ledger.Manifest, i int) queue.Task { return queue.Task{BatchID: m.BatchID, Row: i} }

// idAt issues a batch id as batch.NewID would have at t.
func idAt(t time.Time) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	ms := uint64(t.UnixMilli())
	binary.BigEndian.PutUint16(b[4:], uint16(ms))
	binary.BigEndian.PutUint32(b[0:], uint32(ms>>16))
	b[6] = 0x70 | b[6]&0x0f
	b[8] = 0x80 | b[8]&0x3f
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// manifest records a batch issued at created with rows of one variant each.
func (s *stack) manifest(t *testing.T, created time.Time, mode ledger.RunMode, rows int) *ledger.Manifest {
	t.Helper()
	id := idAt(created)
	if !batch.ValidID(id) {
		t.Fatalf("bad test id %s", id)
	}
	m := &ledger.Manifest{Schema: 1, BatchID: id, Owner: "user-" + id[:8], RunMode: mode, Model: "gemini-2.5-flash-image",
		CreatedAt: created.UTC(), PriceUSD: price}
	for i := range rows {
		m.Rows = append(m.Rows, ledger.ManifestRow{Index: i, Prompt: fmt.Sprint("prompt ", i), Variants: 1, AspectRatio: "1:1"})
	}
	m.EstimateUSD = float64(m.Images()) * price
	if mode == ledger.Live {
		m.BudgetDay = budget.Day(created)
	}
	if err := s.store.CreateManifest(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	// The owner's index entry, the accepted state and its snapshot, as the
	// submit wrote them then.
	if _, err := batchindex.New(s.bucket).Add(context.Background(), batchindex.FromManifest(m)); err != nil {
		t.Fatal(err)
	}
	st, err := ledger.AcceptBatch(nil, m, ledger.Op{Actor: "test", Now: created})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := bucket.Update(context.Background(), s.bucket, ledger.StateObject(id), func(ledger.State, bool) (ledger.State, error) { return st, nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.store.KeepSnapshot(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	return m
}

// setRow writes a row's state directly, as a crashed attempt left it.
func (s *stack) setRow(t *testing.T, m *ledger.Manifest, row int, edit func(*ledger.Row)) ledger.Row {
	t.Helper()
	r, err := s.store.UpdateRow(context.Background(), m, row, func(r ledger.Row) (ledger.Row, error) {
		r = r.Clone()
		edit(&r)
		return r, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// running makes a row one an attempt claimed at claimed, with a lease until until.
func running(claimed, until time.Time, attempts int) func(*ledger.Row) {
	return func(r *ledger.Row) {
		r.Status, r.Attempts, r.UpdatedAt, r.Version = ledger.Running, attempts, claimed.UTC(), attempts
		r.Lease = &ledger.Lease{Holder: "dead-attempt", Until: until.UTC()}
		for i := range r.Variants {
			r.Variants[i].Status = ledger.Running
		}
		r.History = append(r.History, ledger.Change{Version: attempts, At: claimed.UTC(), Actor: "generate/dead-attempt", Action: "started"})
	}
}

// finishRow runs a row the way generate does: start, record, finish; made
// tells whether its image was made.
func (s *stack) finishRow(t *testing.T, m *ledger.Manifest, row int, made bool) {
	t.Helper()
	op := ledger.Op{Actor: "test", Now: time.Now().UTC()}
	res := ledger.VariantResult{Index: 0, Object: ledger.ImageObject(m.BatchID, row, 0, ".png"), CostUSD: price}
	if !made {
		res = ledger.VariantResult{Index: 0, Failure: &ledger.Failure{Code: "IMAGE_BLOCKED", Message: "blocked"}}
	}
	for _, step := range []func(ledger.Row) (ledger.Row, error){
		func(r ledger.Row) (ledger.Row, error) { return ledger.Start(r, op, "a1", time.Minute) },
		func(r ledger.Row) (ledger.Row, error) {
			return ledger.RecordVariants(r, op, "a1", []ledger.VariantResult{res})
		},
		func(r ledger.Row) (ledger.Row, error) { return ledger.Finish(r, op, "a1", nil) },
	} {
		if _, err := s.store.UpdateRow(context.Background(), m, row, step); err != nil {
			t.Fatal(err)
		}
	}
}

// complete finishes m's batch as its last row's finisher does (every row
// must be final): the final state, then the effects, which write the final
// snapshot.
func (s *stack) complete(t *testing.T, m *ledger.Manifest) {
	t.Helper()
	done, err := completion.New(s.store, s.bucket, s.budgets, completion.Notifier{}).Finish(context.Background(), m)
	if err != nil || !done {
		t.Fatalf("completing %s: %v (complete %v)", m.BatchID, err, done)
	}
}

func (s *stack) put(t *testing.T, name string) {
	t.Helper()
	if _, err := s.bucket.Create(context.Background(), name, []byte("x"), bucket.Meta{ContentType: "application/octet-stream"}); err != nil {
		t.Fatal(err)
	}
}

func (s *stack) putKey(t *testing.T, user, key string, created time.Time) string {
	t.Helper()
	name := idempotency.Object(user, key)
	_, _, err := bucket.Update(context.Background(), s.bucket, name, func(idempotency.Record, bool) (idempotency.Record, error) {
		return idempotency.Record{BodySHA256: "h", BatchID: idAt(created), CreatedAt: created.UTC(), Committed: true}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

func (s *stack) exists(t *testing.T, name string) bool {
	t.Helper()
	ok, err := s.bucket.Exists(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// objects lists the object names under prefix.
func (s *stack) objects(t *testing.T, prefix string) []string {
	t.Helper()
	var out []string
	for a, err := range s.bucket.List(context.Background(), bucket.Query{Prefix: prefix}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a.Name)
	}
	return out
}

func (s *stack) row(t *testing.T, m *ledger.Manifest, i int) (ledger.Row, int64) {
	t.Helper()
	r, gen, err := s.store.ReadRow(context.Background(), m, i)
	if err != nil {
		t.Fatal(err)
	}
	return r, gen
}

func (s *stack) account(t *testing.T, m *ledger.Manifest) budget.Account {
	t.Helper()
	a, err := s.budgets.Get(context.Background(), m.Owner, m.BudgetDay)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
