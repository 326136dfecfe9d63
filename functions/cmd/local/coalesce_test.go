package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/ledger"
)

// stateWrites records the outcome of every write of state.json, and how many
// task deliveries were in flight when the batch's final state was written.
type stateWrites struct {
	faults   *devstack.Faults
	inflight atomic.Int32
	mu       sync.Mutex
	statuses []int
	// atFinal is the deliveries in flight when each write of state.json came.
	atFinal []int32
}

// RoundTrip makes a task delivery, counting it while it is in flight.
func (s *stateWrites) RoundTrip(r *http.Request) (*http.Response, error) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	// The delivery is over once its answer is read.
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, err
}

func (s *stateWrites) wrap(next http.Handler) http.Handler {
	inner := s.faults.Wrap(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		state := strings.HasPrefix(r.URL.Path, "/upload/") && strings.HasSuffix(multipartObject(r), "/state.json")
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		inner.ServeHTTP(rec, r)
		if state {
			s.mu.Lock()
			s.statuses = append(s.statuses, rec.status)
			s.atFinal = append(s.atFinal, s.inflight.Load())
			s.mu.Unlock()
		}
	})
}

var uploadNamePattern = regexp.MustCompile(`"name":"([^"]+)"`)

// multipartObject is the object an upload names: in the query of a
// resumable one, else in its metadata part (the body is put back).
func multipartObject(r *http.Request) string {
	if name := r.URL.Query().Get("name"); name != "" {
		return name
	}
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	m := uploadNamePattern.FindSubmatch(body)
	if err != nil || m == nil {
		return ""
	}
	return string(m[1])
}

// The rows of a batch that run in one instance and finish together leave
// the batch-level updates to one of them: one row records that the batch
// started and one writes its final state, instead of every row waiting for
// state.json's turn and racing the others for it. The batch completes once.
func TestRowsFinishingTogetherShareTheBatchUpdates(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := &stateWrites{faults: devstack.NewFaults(1)}
	env := map[string]string{"LOCAL_FAKE_MODEL": "true", "LOCAL_FAKE_MODEL_DELAY": "10ms", "DAILY_BUDGET_USD": "1", "CONFIG_TTL": "0"}
	a := startAppWith(t, env, options{wrapGCS: s.wrap, deliveries: &http.Client{Transport: s}})
	var rows []string
	for i := range 8 {
		rows = append(rows, fmt.Sprintf(`{"prompt":"together %d","variants":1}`, i))
	}
	sub := post(t, a.base+"/batch/images", `{"runMode":"live","confirm":"CONFIRM","rows":[`+strings.Join(rows, ",")+`]}`, nil)
	is.Equal(sub.status, http.StatusAccepted)
	_, _, done := readToDone(t, streamWithin(t, sub.str("progressUrl"), time.Minute))
	is.Equal(done.VariantCounts.Done, 8)
	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))

	st, err := a.platform.Ledger.Current(context.Background(), sub.str("batchId"))
	is.NoErr(err)
	is.Equal(st.Event, ledger.Finished) // the batch completed
	s.mu.Lock()
	defer s.mu.Unlock()
	is.Equal(s.statuses, []int{http.StatusOK, http.StatusOK, http.StatusOK}) // accepted, started, finished: one write each, none raced
	is.Equal(s.atFinal[2], int32(1))                                         // when the final state was written, the other rows' tasks had ended
	b := get(t, a.base+"/budget", nil)
	is.Equal(b.doc["spentUsd"], 0.312)  // eight images charged once
	is.Equal(b.doc["reservedUsd"], 0.0) // and the reservation settled
}
