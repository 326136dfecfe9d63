package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/client"
	"github.com/assetgen/assetgen/shared/devstack"
)

// The three functions, each in its own process started the way Cloud Functions
// starts it (the Functions Framework with FUNCTION_TARGET), pointed at the
// emulators through the same variables a deployment uses, run a batch to done.
func TestFunctionsThroughTheFramework(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts three processes")
	}
	is := is.New(t)
	bin := filepath.Join(t.TempDir(), "function")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	is.NoErr(build.Run()) // the function binary builds

	const queue = "projects/p/locations/l/queues/q"
	gcs, err := devstack.StartGCS(devstack.GCSOptions{Addr: "127.0.0.1:0", Root: t.TempDir(), Buckets: []string{"fn-test"}})
	is.NoErr(err)
	t.Cleanup(func() { _ = gcs.Close(context.Background()) })
	tasks, err := devstack.StartTasks(devstack.TasksOptions{Addr: "127.0.0.1:0", Queue: queue, MinBackoff: 10 * time.Millisecond})
	is.NoErr(err)
	t.Cleanup(tasks.Close)

	ports := map[string]string{"Submit": freePort(t), "Generate": freePort(t), "Progress": freePort(t)}
	url := func(target string) string { return "http://127.0.0.1:" + ports[target] }
	env := []string{
		"BUCKET=fn-test",
		"TASKS_QUEUE=" + queue,
		"STORAGE_EMULATOR_HOST=" + gcs.Addr,
		"TASKS_EMULATOR_HOST=" + tasks.Addr,
		"GENERATE_URL=" + url("Generate") + "/",
		"PROGRESS_BASE_URL=" + url("Progress"),
		"SIGNING_KEY_FILE=" + filepath.Join(t.TempDir(), "key.pem"),
		"SSE_POLL_MIN=20ms",
		"LOG_LEVEL=warn",
	}
	startFunctions(t, bin, ports, env, func(target string) []string { return []string{"HOST=127.0.0.1"} }, url)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := client.New(url("Submit"))
	two := 2
	sub, err := c.Submit(ctx, batch.Request{RunMode: "dry_run", Rows: []batch.RowRequest{{Prompt: "through the framework", Variants: &two}}}, "")
	is.NoErr(err)                                                    // Submit accepts the batch
	is.True(strings.HasPrefix(sub.ProgressURL, url("Progress")+"/")) // progressUrl points at the progress function
	done := followToDone(ctx, t, c, sub.ProgressURL)
	is.Equal(done.VariantCounts.Done, 2) // Generate made both images
	state, err := c.Batch(ctx, sub.BatchID)
	is.NoErr(err)                                // Submit serves the state
	is.Equal(string(state.Status), "done")       // as done
	is.True(state.Rows[0].Variants[1].URL != "") // with signed URLs

	// Every path reaches the one function: unknown paths are its problem documents.
	resp, err := http.Get(url("Generate") + "/no/such/path")
	is.NoErr(err)
	resp.Body.Close()
	is.Equal(resp.StatusCode, http.StatusMethodNotAllowed) // generate routes every path itself
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// waitHealthy polls /health of a starting process, with a bounded backoff.
func waitHealthy(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for wait := 10 * time.Millisecond; time.Now().Before(deadline); wait = min(wait*2, 500*time.Millisecond) {
		resp, err := http.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(wait)
	}
	t.Fatalf("%s never became healthy", base)
}

// Generate on Cloud Run without the task token check refuses to start: the
// process exits, saying why, instead of serving and refusing every task.
func TestGenerateWithoutTheTaskCheckDoesNotStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts a process")
	}
	is := is.New(t)
	bin := filepath.Join(t.TempDir(), "function")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	is.NoErr(build.Run()) // the function binary builds

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), "FUNCTION_TARGET=Generate", "K_SERVICE=generate", "HOST=127.0.0.1", "PORT="+freePort(t),
		"STORAGE_EMULATOR_HOST=", "TASKS_OIDC_AUDIENCE=", "BUCKET=fn-test")
	out, err := cmd.CombinedOutput()
	is.True(err != nil)                                           // the process ends with an error
	is.True(ctx.Err() == nil)                                     // by itself, not because it was killed
	is.True(strings.Contains(string(out), "TASKS_OIDC_AUDIENCE")) // naming the missing setting
}
