package generate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/functions/generate"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/imagegen"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/platform/platformtest"
	"github.com/assetgen/assetgen/shared/problem"
	"github.com/assetgen/assetgen/shared/queue"
)

const maxAttempts = 3

// harness is the generate handler over a platform on the in-process Cloud
// Storage emulator, with live runs served by the fake Gemini API through the
// real SDK: nothing between the handler and the clients is mocked.
type harness struct {
	*platformtest.Stack
	model *devstack.FakeModel
	h     http.Handler
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	model, err := devstack.StartFakeModel("127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = model.Close(context.Background()) })
	s := platformtest.Open(t, map[string]string{
		"LIVE_BACKEND": "gemini", "GEMINI_API_KEY": "test-key", "GEMINI_BASE_URL": model.URL,
	})
	finisher, err := s.Finisher()
	if err != nil {
		t.Fatal(err)
	}
	gens, err := s.Generators()
	if err != nil {
		t.Fatal(err)
	}
	h := generate.New(generate.Config{
		Lease: time.Minute, MaxAttempts: maxAttempts, AttemptTimeout: 30 * time.Second,
		// Writes to one row object may come faster than in production: the
		// emulator has no per-object write limit.
		MinWriteGap: 10 * time.Millisecond,
		Tasks:       auth.TaskAuth{Queues: []string{"generate"}},
	}, generate.Deps{
		Store: s.Ledger, Generators: gens, Finisher: finisher, Ready: s.Readiness(s.BucketWritable()), Log: s.Log,
	})
	return &harness{Stack: s, model: model, h: h}
}

// batch records a one-row batch of variants images with prompt.
func (hs *harness) batch(t *testing.T, mode ledger.RunMode, prompt string, variants int) *ledger.Manifest {
	t.Helper()
	m := &ledger.Manifest{Schema: 1, BatchID: batch.NewID(), Owner: "alice", RunMode: mode, Model: "gemini-2.5-flash-image",
		CreatedAt: time.Now().UTC(), PriceUSD: 0.039,
		Rows: []ledger.ManifestRow{{Index: 0, Prompt: prompt, Variants: variants, AspectRatio: "1:1"}}}
	if err := hs.Ledger.CreateManifest(ctx(t), m); err != nil {
		t.Fatal(err)
	}
	return m
}

// deliver posts row 0's task as Cloud Tasks does; retries is the delivery's
// X-CloudTasks-TaskRetryCount, and header "" leaves out the queue's name.
func (hs *harness) deliver(m *ledger.Manifest, retries int, queueName string) *httptest.ResponseRecorder {
	body, _ := json.Marshal(queue.Task{BatchID: m.BatchID, Row: 0})
	r := httptest.NewRequest(http.MethodPost, "http://generate.test/tasks/generate", strings.NewReader(string(body)))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-CloudTasks-TaskName", queue.TaskID(m.BatchID, 0))
	r.Header.Set("X-CloudTasks-TaskRetryCount", strconv.Itoa(retries))
	if queueName != "" {
		r.Header.Set("X-CloudTasks-QueueName", queueName)
	}
	w := httptest.NewRecorder()
	hs.h.ServeHTTP(w, r)
	return w
}

func (hs *harness) row(t *testing.T, m *ledger.Manifest) ledger.Row {
	t.Helper()
	r, _, err := hs.Ledger.ReadRow(ctx(t), m, 0)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// images counts the row's stored image objects.
func (hs *harness) images(t *testing.T, m *ledger.Manifest) int {
	t.Helper()
	n := 0
	for _, err := range hs.Bucket.List(ctx(t), bucket.Query{Prefix: ledger.ImagePrefix(m.BatchID, 0)}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

func outcome(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var out struct{ Outcome string }
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatalf("answer %d is not an outcome: %s", w.Code, w.Body)
	}
	return out.Outcome
}

func problemCode(t *testing.T, w *httptest.ResponseRecorder) problem.Code {
	t.Helper()
	is := is.New(t)
	is.Equal(w.Header().Get("Content-Type"), problem.ContentType) // an RFC 9457 problem document
	var doc problem.Document
	is.NoErr(json.Unmarshal(w.Body.Bytes(), &doc))
	return doc.Code
}

func finishes(r ledger.Row) int {
	n := 0
	for _, c := range r.History {
		if c.Action == "finished" {
			n++
		}
	}
	return n
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestTaskRunsTheRowToDone(t *testing.T) {
	is := is.New(t)
	hs := newHarness(t)
	m := hs.batch(t, ledger.DryRun, "a lighthouse at dawn", 3)
	w := hs.deliver(m, 0, "generate")
	is.Equal(w.Code, http.StatusOK)
	is.Equal(outcome(t, w), "finished: done")

	r := hs.row(t, m)
	is.Equal(r.Status, ledger.Done)
	is.Equal(r.Attempts, 1)
	for i, v := range r.Variants {
		is.Equal(v.Status, ledger.Done)
		is.Equal(v.Object, ledger.ImageObject(m.BatchID, 0, i, ".png")) // stored at its deterministic name
	}
	is.Equal(hs.images(t, m), 3)
	final, err := hs.Ledger.State(ctx(t), m.BatchID)
	is.NoErr(err)                               // the last row completed the batch
	is.Equal(final.Summary.Status, ledger.Done) // as done
	is.Equal(hs.model.Calls(), int64(0))        // dry runs never reach the model
}

func TestDuplicateDeliveryIsANoOp(t *testing.T) {
	is := is.New(t)
	hs := newHarness(t)
	m := hs.batch(t, ledger.Live, "a red bicycle", 2)
	w := hs.deliver(m, 0, "generate")
	is.Equal(w.Code, http.StatusOK)
	done := hs.row(t, m)
	is.Equal(done.Status, ledger.Done)

	again := hs.deliver(m, 0, "generate")
	is.Equal(again.Code, http.StatusOK)                      // acknowledged, so Cloud Tasks forgets it
	is.Equal(outcome(t, again), "skipped: row already done") // and nothing was done
	r := hs.row(t, m)
	is.Equal(r.Version, done.Version)    // no ledger write
	is.Equal(finishes(r), 1)             // one "finished"
	is.Equal(hs.images(t, m), 2)         // no second image
	is.Equal(hs.model.Calls(), int64(2)) // the model was paid once per image
}

func TestConcurrentDeliveriesMakeEachImageOnce(t *testing.T) {
	is := is.New(t)
	hs := newHarness(t)
	m := hs.batch(t, ledger.Live, "a watercolour fox", 3)
	var wg sync.WaitGroup
	answers := make([]*httptest.ResponseRecorder, 2)
	for i := range answers {
		wg.Go(func() { answers[i] = hs.deliver(m, 0, "generate") })
	}
	wg.Wait()
	ok := 0
	for _, w := range answers {
		switch w.Code {
		case http.StatusOK:
			ok++
		default:
			is.Equal(problemCode(t, w), problem.RowLeased) // the other attempt holds the row; Cloud Tasks retries
		}
	}
	is.True(ok >= 1) // one delivery did the work
	r := hs.row(t, m)
	is.Equal(r.Status, ledger.Done)
	is.Equal(finishes(r), 1)
	is.Equal(hs.images(t, m), 3)
	is.Equal(hs.model.Calls(), int64(3)) // each image made once
}

func TestDeliveryWithoutTheQueueIsRefused(t *testing.T) {
	hs := newHarness(t)
	m := hs.batch(t, ledger.DryRun, "not from the queue", 1)
	for _, name := range []string{"", "another-queue"} {
		t.Run("queue "+strconv.Quote(name), func(t *testing.T) {
			is := is.New(t)
			w := hs.deliver(m, 0, name)
			is.Equal(w.Code, http.StatusForbidden)
			is.Equal(problemCode(t, w), problem.Forbidden)
			is.Equal(hs.row(t, m).Version, 0) // the row was not touched
			is.Equal(hs.images(t, m), 0)
		})
	}
}

// A failure no retry can mend answers 2xx, so Cloud Tasks does not retry it;
// the row records it.
func TestPermanentModelFailureIsAcknowledged(t *testing.T) {
	tests := []struct {
		marker string
		code   problem.Code
		billed bool
	}{
		{"[blocked]", problem.ModelSafetyBlocked, false},
		{"[blocked-output]", problem.ModelSafetyBlocked, false},
		{"[no-image]", problem.ModelFailed, false},
		{"[svg]", problem.ModelFailed, true}, // never stored (only PNG, JPEG or WebP), but the model made it
	}
	hs := newHarness(t)
	for _, tt := range tests {
		t.Run(tt.marker, func(t *testing.T) {
			is := is.New(t)
			m := hs.batch(t, ledger.Live, "a castle "+tt.marker, 1)
			w := hs.deliver(m, 0, "generate")
			is.Equal(w.Code, http.StatusOK) // acknowledged: no retry
			is.Equal(outcome(t, w), "finished: failed")
			r := hs.row(t, m)
			is.Equal(r.Status, ledger.Failed)
			is.Equal(r.Variants[0].Error.Code, string(tt.code)) // the variant says why
			is.Equal(hs.images(t, m), 0)
			is.Equal(r.Variants[0].CostUSD > 0, tt.billed) // charged only when the model answered an image
		})
	}
}

// A failure a retry can mend answers non-2xx, so Cloud Tasks retries it, and
// hands the row back; on the last attempt the row fails and the task is
// acknowledged.
func TestTransientModelFailureAsksForARetry(t *testing.T) {
	is := is.New(t)
	hs := newHarness(t)
	m := hs.batch(t, ledger.Live, "a harbour [unavailable]", 1)

	w := hs.deliver(m, 0, "generate")
	is.True(w.Code >= 500)                           // non-2xx: Cloud Tasks retries
	is.Equal(problemCode(t, w), problem.ModelFailed) // the model is unavailable
	r := hs.row(t, m)
	is.Equal(r.Status, ledger.Running)                  // not final
	is.Equal(r.Lease, nil)                              // handed back: the retry need not wait for the lease
	is.Equal(r.Error.Code, string(problem.ModelFailed)) // showing why while it retries
	is.True(strings.HasSuffix(r.Error.Message, "; retrying"))

	w = hs.deliver(m, maxAttempts-1, "generate")
	is.Equal(w.Code, http.StatusOK) // the last attempt is acknowledged
	r = hs.row(t, m)
	is.Equal(r.Status, ledger.Failed)
	is.Equal(r.Attempts, 2)
	msg := r.Variants[0].Error.Message
	is.True(!strings.Contains(msg, "retrying"))                   // a row that gave up does not say it retries
	is.True(strings.HasSuffix(msg, "; gave up after 2 attempts")) // it says it gave up
}

func TestRateLimitedModelAsksForARetry(t *testing.T) {
	is := is.New(t)
	hs := newHarness(t)
	m := hs.batch(t, ledger.Live, "a meadow [rate-limit-once]", 1)
	w := hs.deliver(m, 0, "generate")
	is.Equal(w.Code, http.StatusTooManyRequests)
	is.Equal(problemCode(t, w), problem.ModelRateLimit)
	w = hs.deliver(m, 1, "generate")
	is.Equal(w.Code, http.StatusOK) // the retry succeeds
	is.Equal(hs.row(t, m).Status, ledger.Done)
}

func TestMissingDependencyPanicsAtConstruction(t *testing.T) {
	is := is.New(t)
	defer func() {
		msg, _ := recover().(string)
		is.True(strings.HasPrefix(msg, "generate.New: missing Deps.Store")) // names the constructor and the field
	}()
	generate.New(generate.Config{}, generate.Deps{})
	t.Fatal("New returned without its dependencies")
}

// blockingGen makes placeholder-like images, holding its first call until
// released: a model call in flight while the test cancels the row.
type blockingGen struct {
	started chan struct{}
	release chan struct{}
	calls   atomic.Int64
}

func (g *blockingGen) Generate(ctx context.Context, req imagegen.Request) (imagegen.Image, error) {
	if g.calls.Add(1) == 1 {
		close(g.started)
		select {
		case <-g.release:
		case <-ctx.Done():
			return imagegen.Image{}, ctx.Err()
		}
	}
	return imagegen.Image{MIMEType: "image/png", Data: tinyPNG}, nil
}

// A cancel recorded while a row's first variant is being made stops the
// variants not yet asked for: each later model call reads the row first.
func TestCancelStopsVariantsNotYetAskedFor(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := platformtest.Open(t, nil)
	finisher, err := s.Finisher()
	is.NoErr(err)
	gen := &blockingGen{started: make(chan struct{}), release: make(chan struct{})}
	h := generate.New(generate.Config{
		Lease: time.Minute, MaxAttempts: maxAttempts, AttemptTimeout: 30 * time.Second,
		MinWriteGap: 10 * time.Millisecond, VariantConcurrency: 1,
		Tasks: auth.TaskAuth{Queues: []string{"generate"}},
	}, generate.Deps{
		Store: s.Ledger, Generators: map[ledger.RunMode]imagegen.Generator{ledger.DryRun: gen},
		Finisher: finisher, Ready: s.Readiness(s.BucketWritable()), Log: s.Log,
	})
	hs := &harness{Stack: s, h: h}
	m := hs.batch(t, ledger.DryRun, "three, one at a time", 3)

	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- hs.deliver(m, 0, "generate") }()
	<-gen.started
	_, err = s.Ledger.UpdateRow(ctx(t), m, 0, func(r ledger.Row) (ledger.Row, error) {
		return ledger.Cancel(r, ledger.Op{Actor: "test", Now: time.Now().UTC()})
	})
	is.NoErr(err)
	close(gen.release)
	w := <-done
	is.Equal(w.Code, http.StatusOK)
	is.Equal(gen.calls.Load(), int64(1)) // the two variants not yet asked for never reached the model
	r := hs.row(t, m)
	is.Equal(r.Status, ledger.Cancelled)
	is.Equal(r.Variants[0].Status, ledger.Done) // the image being made is kept
	is.Equal(r.Variants[1].Status, ledger.Cancelled)
	is.Equal(r.Variants[2].Status, ledger.Cancelled)
}

var tinyPNG = func() []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		panic(err)
	}
	return b.Bytes()
}()
