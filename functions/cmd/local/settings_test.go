package main

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

// Bad local settings stop the stack at start, naming the setting and the mistake.
func TestBadLocalSettingsStopTheStart(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, value, want string
	}{
		{"LOCAL_STORAGE_FAULTS", "error=2", "LOCAL_STORAGE_FAULTS: error=2: want a share between 0 and 1"},
		{"LOCAL_STORAGE_FAULTS", "errors=0.1", `LOCAL_STORAGE_FAULTS: unknown setting "errors"`},
		{"LOCAL_STORAGE_FAULTS", "latency=soon", "LOCAL_STORAGE_FAULTS: latency=soon: want a duration"},
		{"LOCAL_TASKS_NAME_WINDOW", "soon", `LOCAL_TASKS_NAME_WINDOW: want a positive duration such as 1h, got "soon"`},
		{"LOCAL_TASKS_NAME_WINDOW", "-1m", "LOCAL_TASKS_NAME_WINDOW: want a positive duration"},
	} {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			is := is.New(t)
			env := map[string]string{
				"PORT": "0", "DATA_DIR": t.TempDir(), "LOCAL_GCS_ADDR": "127.0.0.1:0", "LOCAL_TASKS_ADDR": "127.0.0.1:0",
				tt.name: tt.value,
			}
			_, err := start(context.Background(), func(k string) string { return env[k] }, io.Discard, options{})
			is.True(err != nil)                             // refused
			is.True(strings.Contains(err.Error(), tt.want)) // with the reason
		})
	}
}

// LOCAL_STORAGE_FAULTS puts its faults between the storage client and the
// emulator: requests fail before the emulator, answers are lost after it, and
// a batch still completes.
func TestStorageFaultsFromTheEnvironment(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := startAppWith(t, map[string]string{"LOCAL_STORAGE_FAULTS": "error=0.1,lost=0.05,latency=1ms,seed=3"}, options{})
	is.True(a.faults != nil)                                                 // the faults are wired
	is.Equal(a.faultSpec.String(), "error=0.1,lost=0.05,latency=1ms,seed=3") // as given
	// A client retries a 503 with the same Idempotency-Key, as the contract says.
	var sub answer
	for range 5 {
		sub = post(t, a.base+"/batch/images", `{"runMode":"dry_run","rows":[{"prompt":"a","variants":2},{"prompt":"b"}]}`,
			map[string]string{"Idempotency-Key": "faults-from-env"})
		if sub.status != http.StatusServiceUnavailable {
			break
		}
	}
	is.Equal(sub.status, http.StatusAccepted)
	// An earlier attempt's rows may have run already (a stream opened now
	// could find the batch finished): the tasks' end is the batch's.
	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))
	// The reads meet the injected faults too: a client retries them. Reading
	// on until both kinds of fault were seen is bounded.
	var st answer
	for i := 0; i < 50 && (st.status != http.StatusOK || a.faults.Counts().LostAnswers == 0 || a.faults.Counts().Rejected == 0); i++ {
		st = get(t, sub.str("statusUrl"), nil)
	}
	is.Equal(st.status, http.StatusOK)
	is.Equal(st.doc["variantCounts"].(map[string]any)["done"], 3.0) // every image made
	c := a.faults.Counts()
	is.True(c.Rejected > 0)    // requests failed before the emulator
	is.True(c.LostAnswers > 0) // and answers were lost after it
}

// With the fake model on, /metrics counts the images it was asked for, so
// model work can be set against the money charged.
func TestMetricsCountFakeModelImages(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, _ := liveStack(t, nil)
	sub := post(t, a.base+"/batch/images", `{"runMode":"live","confirm":"CONFIRM","rows":[{"prompt":"a red fox","variants":2}]}`, nil)
	is.Equal(sub.status, http.StatusAccepted)
	readToDone(t, openStream(t, sub.str("progressUrl"), ""))
	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))
	is.Equal(a.model.Images(), int64(2)) // this stack's model made two

	resp, err := http.Get(a.base + "/metrics")
	is.NoErr(err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var images float64
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), `assetgen_local_model_images_total{outcome="image"} `); ok {
			images, err = strconv.ParseFloat(v, 64)
			is.NoErr(err)
		}
	}
	is.True(images >= 2) // counted in /metrics (the counter is the process's: other tests' stacks add to it)
}
