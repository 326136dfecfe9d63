package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/client"
	"github.com/assetgen/assetgen/shared/devstack"
)

// stack is the local stack started through run, exactly as `make run` starts it.
type stack struct {
	base string
	env  map[string]string
	// lines are what the stack printed at start: its address and the emulators'.
	lines []string
}

// startStack runs the local stack on free loopback ports with a fresh data dir.
// overrides are extra environment variables.
func startStack(t *testing.T, overrides map[string]string) *stack {
	t.Helper()
	is := is.New(t)
	env := map[string]string{
		"PORT":             "0",
		"DATA_DIR":         t.TempDir(),
		"LOCAL_GCS_ADDR":   "127.0.0.1:0",
		"LOCAL_TASKS_ADDR": "127.0.0.1:0",
		"SSE_HEARTBEAT":    "200ms",
		"SSE_POLL_MIN":     "20ms",
		"SSE_POLL_MAX":     "100ms",
		"LOG_LEVEL":        "warn",
	}
	for k, v := range overrides {
		env[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	logs := &syncBuffer{}
	go func() {
		errc <- run(ctx, nil, func(k string) string { return env[k] }, pw, logs)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	if !sc.Scan() {
		cancel()
		t.Fatalf("local stack did not start: %v", <-errc)
	}
	first := sc.Text()
	base := first[strings.LastIndex(first, " ")+1:]
	serving(t, base)
	lines := []string{first}
	for range 3 {
		if sc.Scan() {
			lines = append(lines, sc.Text())
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("local stack stopped with %v", err)
		}
		if t.Failed() {
			t.Logf("stack logs:\n%s", logs.String())
		}
	})
	resp, err := http.Get(base + "/health")
	is.NoErr(err) // healthz answers as soon as the stack prints its address
	resp.Body.Close()
	is.Equal(resp.StatusCode, http.StatusOK) // healthz
	return &stack{base: base, env: env, lines: lines}
}

// submit posts a batch and decodes the 202 answer.
func (s *stack) submit(t *testing.T, body string) submitted {
	t.Helper()
	is := is.New(t)
	resp, err := http.Post(s.base+"/batch/images", "application/json", strings.NewReader(body))
	is.NoErr(err) // submit
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	is.Equal(resp.StatusCode, http.StatusAccepted) // submit accepted
	var out submitted
	is.NoErr(json.Unmarshal(b, &out)) // submit answer is JSON
	return out
}

type submitted struct {
	BatchID     string `json:"batchId"`
	Status      string `json:"status"`
	ProgressURL string `json:"progressUrl"`
	StatusURL   string `json:"statusUrl"`
}

// sseStream reads events from a progress stream with the Go client's reader.
type sseStream struct {
	resp   *http.Response
	events *client.EventReader
}

func openStream(t *testing.T, url, lastID string) *sseStream {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return &sseStream{resp: resp, events: client.NewEventReader(resp.Body, lastID)}
}

// next returns the next event; ok is false when the stream ended.
func (s *sseStream) next() (client.Event, bool) {
	ev, err := s.events.Next()
	return ev, err == nil
}

func (s *sseStream) close() { s.resp.Body.Close() }

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// deadline is a per-test context bound, so a hung stream fails instead of
// hanging the suite.
func deadline(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// startApp wires the stack through start (run's own wiring) with the storage
// emulator behind faults, and serves it. It returns the app for its emulators.
func startApp(tb testing.TB, overrides map[string]string, faults *devstack.Faults) *app {
	return startAppWith(tb, overrides, options{wrapGCS: faults.Wrap})
}

// startAppWith is startApp with every option of the wiring.
func startAppWith(tb testing.TB, overrides map[string]string, o options) *app {
	tb.Helper()
	env := map[string]string{
		"PORT": "0", "DATA_DIR": tb.TempDir(), "LOCAL_GCS_ADDR": "127.0.0.1:0", "LOCAL_TASKS_ADDR": "127.0.0.1:0",
		"SSE_HEARTBEAT": "200ms", "SSE_POLL_MIN": "20ms", "SSE_POLL_MAX": "100ms", "LOG_LEVEL": "warn",
	}
	for k, v := range overrides {
		env[k] = v
	}
	logs := &syncBuffer{}
	a, err := start(context.Background(), func(k string) string { return env[k] }, logs, o)
	if err != nil {
		tb.Fatal(err)
	}
	appLogs.Store(a, logs)
	serving(tb, a.base)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = a.srv.Serve(a.ln)
	}()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.srv.Shutdown(ctx)
		<-served
		a.close()
		if tb.Failed() {
			tb.Logf("stack logs:\n%s", logs.String())
		}
	})
	return a
}

// appLogs holds each test stack's log sink, for tests that read the logs.
var appLogs sync.Map

// logLines returns the stack's log lines, decoded.
func logLines(t *testing.T, a *app) []map[string]any {
	t.Helper()
	v, ok := appLogs.Load(a)
	if !ok {
		t.Fatal("no logs for this stack")
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(v.(*syncBuffer).String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}
