package main

import (
	"bytes"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/devstack"
)

type rowEvent struct {
	Index    int    `json:"index"`
	Version  int    `json:"version"`
	Status   string `json:"status"`
	Variants []struct {
		Status string `json:"status"`
		URL    string `json:"url"`
	} `json:"variants"`
}

type batchEvent struct {
	Status        string `json:"status"`
	VariantCounts struct {
		Done int `json:"done"`
	} `json:"variantCounts"`
}

// readToDone reads a stream until event: done and returns the row events and
// the id of the last event.
func readToDone(t *testing.T, s *sseStream) (rows []rowEvent, lastID string, done batchEvent) {
	t.Helper()
	is := is.New(t)
	for {
		ev, ok := s.next()
		is.True(ok) // the stream ends only after event: done
		switch ev.Type {
		case "row":
			is.True(ev.ID != "") // row events carry an id
			var r rowEvent
			is.NoErr(json.Unmarshal([]byte(ev.Data), &r)) // row event data is JSON
			rows = append(rows, r)
			lastID = ev.ID
		case "batch":
			is.True(ev.ID != "") // batch events carry an id
			lastID = ev.ID
		case "done":
			is.NoErr(json.Unmarshal([]byte(ev.Data), &done)) // done carries the totals
			_, more := s.next()
			is.True(!more) // the server ends the stream after done
			return rows, lastID, done
		case "ping":
		default:
			t.Fatalf("unexpected event %q", ev.Type)
		}
	}
}

func TestBatchEndToEnd(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	st := startStack(t, map[string]string{"DRY_RUN_DELAY": "50ms"})
	sub := st.submit(t, `{"runMode":"dry_run","rows":[
		{"prompt":"a lighthouse at dawn","variants":2},
		{"prompt":"a cat in a hat","variants":2,"id":"cat"},
		{"prompt":"a red bicycle","variants":2,"aspectRatio":"16:9"}]}`)
	is.Equal(sub.Status, "queued")                                                 // a new batch is queued
	is.True(strings.Contains(sub.ProgressURL, "/progress/"+sub.BatchID+"?token=")) // progressUrl names the batch and carries a token

	s := openStream(t, sub.ProgressURL, "")
	is.Equal(s.resp.StatusCode, http.StatusOK)                       // stream opens
	is.Equal(s.resp.Header.Get("Content-Type"), "text/event-stream") // SSE content type
	rows, lastID, done := readToDone(t, s)
	is.Equal(done.Status, "done")        // the batch finished
	is.Equal(done.VariantCounts.Done, 6) // six images
	final := map[int]rowEvent{}
	for _, r := range rows {
		if prev, ok := final[r.Index]; ok {
			is.True(r.Version > prev.Version) // versions only grow within a stream
		}
		final[r.Index] = r
	}
	is.Equal(len(final), 3) // every row reported
	for _, r := range final {
		is.Equal(r.Status, "done") // every row done
		is.Equal(len(r.Variants), 2)
		for _, v := range r.Variants {
			is.Equal(v.Status, "done") // every variant done
			resp, err := http.Get(v.URL)
			is.NoErr(err) // signed URL reachable
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			is.Equal(resp.StatusCode, http.StatusOK) // signed URL serves the image
			cfg, err := png.DecodeConfig(bytes.NewReader(b))
			is.NoErr(err)                              // the image is a PNG
			is.True(max(cfg.Width, cfg.Height) >= 256) // at least 256 px on the long side
		}
	}
	wide := final[2].Variants[0].URL
	resp, _ := http.Get(wide)
	cfg, err := png.DecodeConfig(resp.Body)
	resp.Body.Close()
	is.NoErr(err)
	is.True(cfg.Width > cfg.Height) // 16:9 rows draw landscape images

	// The batch is finished: a reconnect, with or without the last id, gets 204.
	for _, id := range []string{lastID, ""} {
		again := openStream(t, sub.ProgressURL, id)
		is.Equal(again.resp.StatusCode, http.StatusNoContent) // finished batch answers 204
		again.close()
	}

	// The state endpoint agrees, with fresh signed URLs.
	resp, err = http.Get(sub.StatusURL)
	is.NoErr(err)
	var state struct {
		Status string `json:"status"`
		Rows   []struct {
			ID       string `json:"id"`
			Variants []struct {
				URL string `json:"url"`
			} `json:"variants"`
		} `json:"rows"`
	}
	is.NoErr(json.NewDecoder(resp.Body).Decode(&state))
	resp.Body.Close()
	is.Equal(state.Status, "done")               // state says done
	is.Equal(state.Rows[1].ID, "cat")            // client ids are echoed
	is.True(state.Rows[0].Variants[1].URL != "") // state carries URLs
}

func TestResumeMidBatch(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	st := startStack(t, map[string]string{"DRY_RUN_DELAY": "300ms"})
	sub := st.submit(t, `{"runMode":"dry_run","rows":[
		{"prompt":"one","variants":3},{"prompt":"two","variants":3},{"prompt":"three","variants":1}]}`)

	type state struct{ row, version int }
	first := map[state]bool{}
	s := openStream(t, sub.ProgressURL, "")
	var resumeID string
	for resumeID == "" {
		ev, ok := s.next()
		is.True(ok) // the first connection sees the batch start
		if ev.Type != "row" {
			continue
		}
		var r rowEvent
		is.NoErr(json.Unmarshal([]byte(ev.Data), &r))
		first[state{r.Index, r.Version}] = true
		if r.Status == "running" {
			resumeID = ev.ID // drop the connection mid-batch
		}
	}
	s.close()

	again := openStream(t, sub.ProgressURL, resumeID)
	is.Equal(again.resp.StatusCode, http.StatusOK) // an unfinished batch streams on
	rows, _, done := readToDone(t, again)
	is.Equal(done.Status, "done") // the resumed stream reaches done
	latest := map[int]rowEvent{}
	for _, r := range rows {
		is.True(!first[state{r.Index, r.Version}]) // no state is sent twice across the reconnect
		latest[r.Index] = r
	}
	// The two connections together end with every row's final state.
	resp, err := http.Get(sub.StatusURL)
	is.NoErr(err)
	var final struct {
		Rows []rowEvent `json:"rows"`
	}
	is.NoErr(json.NewDecoder(resp.Body).Decode(&final))
	resp.Body.Close()
	for _, want := range final.Rows {
		got, ok := latest[want.Index]
		if !ok {
			is.True(first[state{want.Index, want.Version}]) // a row absent after the reconnect was final before it
			continue
		}
		is.Equal(got.Version, want.Version) // the resumed stream ends at the row's final version
		is.Equal(got.Status, "done")
	}
}

// Every task delivered twice, concurrently: one attempt per row, one write per
// image, every row done.
func TestDuplicateDeliveryIsHarmless(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	faults := devstack.NewFaults(1)
	a := startApp(t, map[string]string{"TASKS_DUPLICATE_DELIVERY": "true"}, faults)
	st := &stack{base: a.base}
	sub := st.submit(t, `{"runMode":"dry_run","rows":[{"prompt":"a","variants":3},{"prompt":"b","variants":3},{"prompt":"c","variants":3}]}`)
	_, _, done := readToDone(t, openStream(t, sub.ProgressURL, ""))
	is.Equal(done.VariantCounts.Done, 9) // every image made
	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))
	is.Equal(a.tasks.Stats().Deliveries >= 6, true) // every task was delivered at least twice

	images := faults.WritesOf("batches/" + sub.BatchID + "/images/")
	is.Equal(len(images), 9) // nine image objects
	for name, n := range images {
		if n != 1 {
			t.Errorf("%s written %d times, want once", name, n)
		}
	}
	resp, err := http.Get(sub.StatusURL)
	is.NoErr(err)
	var state struct {
		Rows []struct {
			Status   string `json:"status"`
			Attempts int    `json:"attempts"`
		} `json:"rows"`
	}
	is.NoErr(json.NewDecoder(resp.Body).Decode(&state))
	resp.Body.Close()
	for _, r := range state.Rows {
		is.Equal(r.Status, "done") // every row done
		is.Equal(r.Attempts, 1)    // the duplicate never started a second attempt
	}
}

func TestEveryRejectionIsAProblem(t *testing.T) {
	st := startStack(t, nil)
	big := `{"runMode":"dry_run","rows":[{"prompt":"` + strings.Repeat("x", 1<<20) + `"}]}`
	cases := []struct {
		name, method, path, ctype, body string
		status                          int
		code                            string
	}{
		{"malformed json", "POST", "/batch/images", "application/json", `{"runMode":`, 400, "MALFORMED_JSON"},
		{"wrong content type", "POST", "/batch/images", "text/plain", `{}`, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"body too large", "POST", "/batch/images", "application/json", big, 413, "PAYLOAD_TOO_LARGE"},
		{"no rows", "POST", "/batch/images", "application/json", `{"runMode":"dry_run","rows":[]}`, 400, "VALIDATION_FAILED"},
		{"too many variants", "POST", "/batch/images", "application/json", `{"runMode":"dry_run","rows":[{"prompt":"a","variants":4}]}`, 400, "VALIDATION_FAILED"},
		{"unknown field", "POST", "/batch/images", "application/json", `{"runMode":"dry_run","rows":[{"prompt":"a"}],"colour":"red"}`, 400, "VALIDATION_FAILED"},
		{"live without confirm", "POST", "/batch/images", "application/json", `{"runMode":"live","rows":[{"prompt":"a"}]}`, 400, "CONFIRMATION_REQUIRED"},
		{"live with wrong-case confirm", "POST", "/batch/images", "application/json", `{"runMode":"live","confirm":"confirm","rows":[{"prompt":"a"}]}`, 400, "CONFIRMATION_REQUIRED"},
		{"unknown batch", "GET", "/batch/0190b6a4-7c3e-7d2a-8b1e-3f5a6c7d8e9f", "", "", 404, "BATCH_NOT_FOUND"},
		{"malformed batch id", "GET", "/batch/..%2F..%2Fetc", "", "", 404, "BATCH_NOT_FOUND"},
		{"unknown progress", "GET", "/progress/0190b6a4-7c3e-7d2a-8b1e-3f5a6c7d8e9f", "", "", 404, "BATCH_NOT_FOUND"},
		{"wrong method", "DELETE", "/batch/images", "", "", 405, "METHOD_NOT_ALLOWED"},
		{"unknown path", "GET", "/nope", "", "", 404, "NOT_FOUND"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			req, err := http.NewRequest(c.method, st.base+c.path, strings.NewReader(c.body))
			is.NoErr(err)
			if c.ctype != "" {
				req.Header.Set("Content-Type", c.ctype)
			}
			resp, err := http.DefaultClient.Do(req)
			is.NoErr(err)
			defer resp.Body.Close()
			is.Equal(resp.StatusCode, c.status)                                   // status
			is.Equal(resp.Header.Get("Content-Type"), "application/problem+json") // problem document
			var doc struct {
				Code      string `json:"code"`
				Status    int    `json:"status"`
				Title     string `json:"title"`
				RequestID string `json:"requestId"`
				Errors    []struct {
					Field string `json:"field"`
				} `json:"errors"`
			}
			is.NoErr(json.NewDecoder(resp.Body).Decode(&doc))
			is.Equal(doc.Code, c.code)                               // stable code
			is.Equal(doc.Status, c.status)                           // status in the body
			is.True(doc.Title != "")                                 // a title
			is.Equal(doc.RequestID, resp.Header.Get("X-Request-Id")) // request id in body and header
			if c.code == "VALIDATION_FAILED" {
				is.True(len(doc.Errors) > 0) // offending fields listed
			}
		})
	}
}
