package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/devstack"
)

// One request id finds every log line of a batch: the submit's, each task
// delivery's in generate, and the progress stream's.
func TestRequestIDCrossesThePipeline(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := startAppWith(t, map[string]string{"LOG_LEVEL": "info"}, options{wrapGCS: devstack.NewFaults(1).Wrap})
	sub := post(t, a.base+"/batch/images", `{"runMode":"dry_run","rows":[{"prompt":"a"},{"prompt":"b"}]}`,
		map[string]string{"X-Request-Id": "follow-me-7"})
	is.Equal(sub.status, http.StatusAccepted)
	readToDone(t, openStream(t, sub.str("progressUrl"), ""))
	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))

	functions := map[string]int{}
	for _, l := range logLines(t, a) {
		if l["requestId"] != "follow-me-7" || l["message"] != "request" {
			continue
		}
		functions[l["route"].(string)]++
		is.Equal(l["batchId"], sub.str("batchId")) // every request line names the batch
	}
	is.Equal(functions["POST /batch/images"], 1) // the submit
	is.True(functions["POST /"] >= 2)            // and each row's task delivery in generate
}

func TestMetricsExposeTheNamedSeries(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := startApp(t, nil, devstack.NewFaults(1))
	sub := post(t, a.base+"/batch/images", `{"runMode":"dry_run","rows":[{"prompt":"a","variants":2}]}`, nil)
	readToDone(t, openStream(t, sub.str("progressUrl"), ""))
	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))
	resp, err := http.Get(a.base + "/metrics")
	is.NoErr(err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	is.Equal(resp.StatusCode, http.StatusOK)
	text := string(b)
	for _, series := range []string{
		"assetgen_http_request_duration_seconds_bucket",
		"assetgen_batches_total",
		"assetgen_rows_total",
		"assetgen_variants_total",
		"assetgen_submits_total",
		"assetgen_model_duration_seconds_bucket",
		"assetgen_refs_submitted_total",
		"assetgen_gcs_retries_total",
		"assetgen_ledger_conflicts_total",
		"assetgen_sse_streams",
		"assetgen_sse_tails",
		"assetgen_memory_headroom_ratio",
		"go_goroutines",
	} {
		is.True(strings.Contains(text, series)) // the series is exported
	}
	is.True(strings.Contains(text, `assetgen_submits_total{code="accepted",run_mode="dry_run"}`)) // labelled by outcome
}

func TestReadinessFailsWhenTheBucketRejectsWrites(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	faults := devstack.NewFaults(1)
	a := startApp(t, nil, faults)
	faults.SetFailures(1, http.StatusForbidden)
	ready := get(t, a.base+"/ready", nil)
	is.Equal(ready.status, http.StatusServiceUnavailable) // not ready
	is.Equal(ready.str("code"), "NOT_READY")
	is.Equal(ready.doc["checks"].(map[string]any)["bucket"], "failing") // and says what fails
	live := get(t, a.base+"/health", nil)
	is.Equal(live.status, http.StatusOK) // liveness does not depend on the bucket
}
