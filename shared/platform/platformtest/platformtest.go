// Package platformtest opens a platform over the in-process emulators for
// handler tests: the Cloud Storage emulator and the Cloud Tasks stand-in, with
// the production clients pointed at them exactly as the local stack does.
package platformtest

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/platform"
	"github.com/assetgen/assetgen/shared/queue"
)

// Queue and DryRunQueue are the queues the stand-in serves; their short ids
// are "generate" and "generate-dry-run".
const (
	Queue       = "projects/assetgen-test/locations/local/queues/generate"
	DryRunQueue = Queue + "-dry-run"
)

// Stack is a platform over fresh emulators, and what the tasks it enqueues
// were delivered as.
type Stack struct {
	*platform.Platform
	GCS   *devstack.GCS
	Tasks *devstack.Tasks
	// Env is the environment the platform was opened with.
	Env map[string]string

	mu        sync.Mutex
	delivered []queue.Task
}

// Open starts the emulators on free loopback ports with fresh directories
// and opens a platform over them; env adds or overrides settings. Tasks are
// delivered to a recorder that acknowledges them (Delivered). Everything
// stops when the test ends.
func Open(tb testing.TB, env map[string]string) *Stack {
	tb.Helper()
	s := &Stack{}
	const bucket = "assetgen-test"
	g, err := devstack.StartGCS(devstack.GCSOptions{Addr: "127.0.0.1:0", Root: tb.TempDir(), Buckets: []string{bucket}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Close(ctx)
	})
	s.GCS = g
	target := httptest.NewServer(http.HandlerFunc(s.record))
	tb.Cleanup(target.Close)
	log := slog.New(slog.DiscardHandler)
	if s.Tasks, err = devstack.StartTasks(devstack.TasksOptions{Addr: "127.0.0.1:0", Queue: Queue, More: []devstack.QueueOptions{{Name: DryRunQueue}}, MinBackoff: 10 * time.Millisecond, Log: log}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Tasks.Close)

	s.Env = map[string]string{
		"BUCKET":                bucket,
		"TASKS_QUEUE":           Queue,
		"TASKS_DRY_RUN_QUEUE":   DryRunQueue,
		"GENERATE_URL":          target.URL + "/tasks/generate",
		"STORAGE_EMULATOR_HOST": g.Addr,
		"TASKS_EMULATOR_HOST":   s.Tasks.Addr,
		"SIGNING_KEY_FILE":      tb.TempDir() + "/key.pem",
	}
	for k, v := range env {
		s.Env[k] = v
	}
	getenv := func(k string) string { return s.Env[k] }
	cfg, err := config.Load(getenv)
	if err != nil {
		tb.Fatal(err)
	}
	if s.Platform, err = platform.Open(context.Background(), cfg, platform.Options{Getenv: getenv, Log: log}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Platform.Close() })
	return s
}

func (s *Stack) record(w http.ResponseWriter, r *http.Request) {
	var t queue.Task
	body, _ := io.ReadAll(r.Body)
	if json.Unmarshal(body, &t) == nil {
		s.mu.Lock()
		s.delivered = append(s.delivered, t)
		s.mu.Unlock()
	}
	w.WriteHeader(http.StatusOK)
}

// Delivered waits until the queue is idle and returns the tasks delivered
// so far, in delivery order.
func (s *Stack) Delivered(ctx context.Context) ([]queue.Task, error) {
	if err := s.Tasks.WaitIdle(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]queue.Task(nil), s.delivered...), nil
}
