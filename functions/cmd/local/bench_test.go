package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/assetgen/assetgen/shared/client"
	"github.com/assetgen/assetgen/shared/devstack"
)

// networked is the latency put on every Cloud Storage and Cloud Tasks call in
// the "networked" benchmarks, with the one-write-per-second-per-object limit
// enforced, to see the pipeline as it behaves over a real network.
const networked = 50 * time.Millisecond

type benchCase struct {
	name   string
	faults func(*devstack.Faults)
	tasks  time.Duration
}

var benchCases = []benchCase{
	{"plain", func(*devstack.Faults) {}, 0},
	{"networked-50ms+write-limit", func(f *devstack.Faults) {
		f.SetLatency(networked)
		f.SetWriteLimit(time.Second)
	}, networked},
}

// benchApp starts the stack with production poll settings, so progress reads
// are counted as deployed.
func benchApp(b *testing.B, bc benchCase, env map[string]string) (*app, *devstack.Faults) {
	faults := devstack.NewFaults(1)
	// One client submits every batch, back to back: the per-user queued-row
	// cap is not what is measured.
	all := map[string]string{"LOG_LEVEL": "error", "SSE_POLL_MIN": "250ms", "SSE_POLL_MAX": "2s", "MAX_QUEUED_ROWS_PER_USER": "1000000"}
	for k, v := range env {
		all[k] = v
	}
	a := startAppWith(b, all, options{wrapGCS: faults.Wrap, tasksLatency: bc.tasks})
	bc.faults(faults)
	faults.Reset()
	return a, faults
}

// BenchmarkHundredRows is scripts/test-100-rows.sh in process: 10 batches of
// 10 rows × 3 variants, followed over SSE to done, every image fetched. Besides
// the wall time it reports Cloud Storage operations per generated image, counted
// between the storage client and the emulator.
//
// The emulator keeps its objects in memory-backed files where the machine has
// them: its filesystem store syncs every object to disk twice under one lock
// for all requests, a cost of the emulator's disk (Cloud Storage's, in the
// cloud) that made the platform's time depend on other disk traffic.
func BenchmarkHundredRows(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			a, faults := benchApp(b, bc, map[string]string{"DATA_DIR": emulatorDir(b)})
			c := client.New(a.base)
			plan := client.Plan{Batches: 10, Rows: 10, Variants: 3}
			var images int64
			for b.Loop() {
				rep, err := c.Exercise(context.Background(), plan)
				if err != nil {
					b.Fatal(err)
				}
				images += rep.Verified
			}
			// Completion's writes (the final state, the effects) may land after
			// the stream said done: they count once every delivery has ended.
			if err := a.tasks.WaitIdle(context.Background()); err != nil {
				b.Fatal(err)
			}
			n := faults.Counts()
			b.ReportMetric(float64(n.Writes)/float64(images), "writes/image")
			b.ReportMetric(float64(n.ClassA())/float64(images), "classA/image")
			b.ReportMetric(float64(n.Reads)/float64(images), "reads/image")
			b.ReportMetric(float64(n.Status429)/float64(images), "429s/image")
		})
	}
}

// emulatorDir is a fresh directory for the local stack's data, on a
// memory-backed filesystem when there is one (/dev/shm), else a temporary
// directory; it is removed when the benchmark ends.
func emulatorDir(b *testing.B) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "assetgen-bench-"); err == nil {
			b.Cleanup(func() { _ = os.RemoveAll(dir) })
			return dir
		}
	}
	return b.TempDir()
}

// BenchmarkSubmit measures the latency of accepting a 10×3 dry-run batch. In
// the networked case, ns/op divided by the injected latency is how many
// sequential round trips deep the submit's critical path is.
func BenchmarkSubmit(b *testing.B) {
	var rows []string
	for i := range 10 {
		rows = append(rows, fmt.Sprintf(`{"prompt":"bench %d","variants":3}`, i))
	}
	body := `{"runMode":"dry_run","rows":[` + strings.Join(rows, ",") + `]}`
	// The tasks are acknowledged without running, so the benchmark measures
	// submit alone: an earlier batch's tasks claiming their rows would write
	// through the same emulator, which takes one write at a time (Cloud
	// Storage does not serialise writes to different objects).
	acknowledged := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: r}, nil
	})}
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			faults := devstack.NewFaults(1)
			// One client submits every batch, back to back: the per-user
			// queued-row cap is not what is measured.
			a := startAppWith(b, map[string]string{"LOG_LEVEL": "error", "MAX_QUEUED_ROWS_PER_USER": "1000000"},
				options{wrapGCS: faults.Wrap, tasksLatency: bc.tasks, deliveries: acknowledged})
			bc.faults(faults)
			for b.Loop() {
				resp, err := http.Post(a.base+"/batch/images", "application/json", strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					b.Fatalf("submit answered %d", resp.StatusCode)
				}
			}
			if bc.tasks > 0 {
				b.ReportMetric(float64(b.Elapsed())/float64(b.N)/float64(networked), "round-trips")
			}
		})
	}
}

// BenchmarkLiveBatch is a 10 × 3 live batch against a fake model that takes 1 s
// per image: the wall time from submit to event: done, next to the model's own
// second, shows what the pipeline adds.
func BenchmarkLiveBatch(b *testing.B) {
	a, _ := benchApp(b, benchCases[0], map[string]string{
		"LOCAL_FAKE_MODEL": "true", "LOCAL_FAKE_MODEL_DELAY": "1s", "DAILY_BUDGET_USD": "1000000",
	})
	var rows []string
	for i := range 10 {
		rows = append(rows, fmt.Sprintf(`{"prompt":"live bench %d","variants":3}`, i))
	}
	body := `{"runMode":"live","confirm":"CONFIRM","rows":[` + strings.Join(rows, ",") + `]}`
	c := client.New(a.base)
	for b.Loop() {
		resp, err := http.Post(a.base+"/batch/images", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		var sub struct {
			ProgressURL string `json:"progressUrl"`
		}
		err = json.NewDecoder(resp.Body).Decode(&sub)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusAccepted {
			b.Fatalf("submit answered %d: %v", resp.StatusCode, err)
		}
		if _, err := c.Follow(context.Background(), sub.ProgressURL, "", func(client.Event) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed())/float64(b.N)/float64(time.Second), "x-model-time")
}
