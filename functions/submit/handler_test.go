package submit_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/functions/submit"
	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/platform/platformtest"
	"github.com/assetgen/assetgen/shared/problem"
	"github.com/assetgen/assetgen/shared/queue"
)

// harness is the submit handler over a platform on the in-process emulators:
// the real storage and tasks clients, nothing mocked.
type harness struct {
	*platformtest.Stack
	h http.Handler
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWith(t, nil, nil)
}

// newHarnessWith is newHarness over a platform opened with env (nil for the
// defaults), its submit settings changed by tune (nil for none).
func newHarnessWith(t *testing.T, env map[string]string, tune func(*submit.Config)) *harness {
	t.Helper()
	s := platformtest.Open(t, env)
	q, err := s.Queue()
	if err != nil {
		t.Fatal(err)
	}
	callers, err := s.Callers()
	if err != nil {
		t.Fatal(err)
	}
	finisher, err := s.Finisher()
	if err != nil {
		t.Fatal(err)
	}
	cfg := submit.Config{Rules: s.Rules(), SubmitsPerMinute: 100, ConfigTTL: time.Minute, AssetLinkTTL: time.Hour}
	if tune != nil {
		tune(&cfg)
	}
	h := submit.New(cfg, submit.Deps{
		Store: s.Ledger, Bucket: s.Bucket, Queue: q, Signer: s.Signer, Keys: s.Keys, Budgets: s.Budgets,
		Flags: s.Flags, Refs: s.Refs(), Auth: callers, Tokens: s.Tokens, Finisher: finisher,
		Ready: s.Readiness(s.BucketWritable(), s.QueueReachable()), Log: s.Log,
	})
	return &harness{Stack: s, h: h}
}

// do serves one request as user (the local stack's X-Assetgen-User).
func (hs *harness) do(method, path, user, body string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://submit.test"+path, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	if user != "" {
		r.Header.Set(auth.HeaderUser, user)
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	hs.h.ServeHTTP(w, r)
	return w
}

// submit posts body as user and decodes the 202 answer.
func (hs *harness) submit(t *testing.T, user, body string, header ...string) api.SubmitResponse {
	t.Helper()
	w := hs.do(http.MethodPost, "/batch/images", user, body, header...)
	if w.Code != http.StatusAccepted {
		t.Fatalf("submit answered %d: %s", w.Code, w.Body)
	}
	var resp api.SubmitResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	return resp
}

// problemOf decodes a problem document, checking its media type.
func problemOf(t *testing.T, w *httptest.ResponseRecorder) problem.Document {
	t.Helper()
	is := is.New(t)
	is.Equal(w.Header().Get("Content-Type"), problem.ContentType) // an RFC 9457 problem document
	var doc problem.Document
	is.NoErr(json.Unmarshal(w.Body.Bytes(), &doc)) // the problem is JSON
	is.Equal(doc.Status, w.Code)                   // its status is the answer's
	return doc
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestInvalidBatchListsEveryField(t *testing.T) {
	is := is.New(t)
	hs := newHarness(t)
	w := hs.do(http.MethodPost, "/batch/images", "", `{"runMode":"fast","colour":"red",
		"rows":[{"prompt":"","variants":5},{"prompt":"ok","aspectRatio":"2:7"}]}`)
	is.Equal(w.Code, http.StatusBadRequest)
	doc := problemOf(t, w)
	is.Equal(doc.Code, problem.ValidationFailed) // one code for every invalid field
	got := map[string]string{}
	for _, f := range doc.Errors {
		got[f.Field] = f.Code
	}
	want := map[string]string{
		"/colour":             problem.FieldUnknown,
		"/runMode":            problem.FieldUnknownValue,
		"/rows/0/prompt":      problem.FieldRequired,
		"/rows/0/variants":    problem.FieldOutOfRange,
		"/rows/1/aspectRatio": problem.FieldUnknownValue,
	}
	is.Equal(got, want)                          // every offending field, each with its code
	is.Equal(hs.Tasks.Stats().Created, int64(0)) // nothing queued
}

func TestAcceptedBatchAnswersTheDocumentedFields(t *testing.T) {
	is := is.New(t)
	hs := newHarness(t)
	w := hs.do(http.MethodPost, "/batch/images", "", `{"runMode":"dry_run","rows":[
		{"prompt":"a lighthouse at dawn","variants":3},
		{"prompt":"a red bicycle","variants":2,"aspectRatio":"16:9","id":"bike"}]}`)
	is.Equal(w.Code, http.StatusAccepted)
	var resp api.SubmitResponse
	is.NoErr(json.Unmarshal(w.Body.Bytes(), &resp))
	id := resp.BatchID
	is.True(id != "")                                                                         // batchId
	is.Equal(resp.RunMode, "dry_run")                                                         // runMode
	is.Equal(resp.Status, ledger.Queued)                                                      // status
	is.Equal(resp.StatusURL, "http://submit.test/batch/"+id)                                  // statusUrl on the request's origin
	is.Equal(w.Header().Get("Location"), resp.StatusURL)                                      // Location names it too
	is.True(strings.HasPrefix(resp.ProgressURL, "http://submit.test/progress/"+id+"?token=")) // progressUrl carries a token
	is.True(resp.ProgressTokenExpiresAt.After(time.Now()))                                    // which has not expired
	is.Equal(resp.Estimate.Images, 5)                                                         // 3 + 2 images
	is.Equal(resp.Estimate.Model, "gemini-2.5-flash-image")                                   // the default model
	is.Equal(resp.Estimate.Charged, false)                                                    // dry runs cost nothing
	is.True(resp.Budget != nil)                                                               // the caller's budget
	is.Equal(len(resp.Rows), 2)
	is.Equal(resp.Rows[1].ID, "bike") // the client's row id echoed

	m, err := hs.Ledger.Manifest(ctx(t), id)
	is.NoErr(err)                           // the manifest is in the ledger
	is.Equal(m.Owner, auth.LocalUser)       // owned by the caller
	is.Equal(m.Rows[1].AspectRatio, "16:9") // as submitted
	tasks, err := hs.Delivered(ctx(t))
	is.NoErr(err)
	slices.SortFunc(tasks, func(a, b queue.Task) int { return a.Row - b.Row })
	is.Equal(tasks, []queue.Task{{BatchID: id, Row: 0}, {BatchID: id, Row: 1}}) // one task per row
}

func TestIdempotencyKey(t *testing.T) {
	is := is.New(t)
	hs := newHarness(t)
	body := `{"runMode":"dry_run","rows":[{"prompt":"once"},{"prompt":"twice"}]}`
	first := hs.submit(t, "", body, submit.HeaderIdempotencyKey, "key-1")
	again := hs.submit(t, "", body, submit.HeaderIdempotencyKey, "key-1")
	is.Equal(again.BatchID, first.BatchID)       // the same key and body answer the same batch
	is.Equal(hs.Tasks.Stats().Created, int64(2)) // queued once

	w := hs.do(http.MethodPost, "/batch/images", "", `{"runMode":"dry_run","rows":[{"prompt":"other"}]}`, submit.HeaderIdempotencyKey, "key-1")
	is.Equal(w.Code, http.StatusConflict)
	is.Equal(problemOf(t, w).Code, problem.IdempotencyConflict) // the same key with another body
	is.Equal(hs.Tasks.Stats().Created, int64(2))                // nothing more queued

	other := hs.submit(t, "someone-else", body, submit.HeaderIdempotencyKey, "key-1")
	is.True(other.BatchID != first.BatchID) // keys belong to their user
}

func TestBatchesBelongToTheirSubmitter(t *testing.T) {
	is := is.New(t)
	hs := newHarness(t)
	sub := hs.submit(t, "alice", `{"runMode":"dry_run","rows":[{"prompt":"mine","variants":2},{"prompt":"also mine"}]}`)
	path := "/batch/" + sub.BatchID

	for _, req := range []struct{ method, path string }{
		{http.MethodGet, path},
		{http.MethodPost, path + "/cancel"},
		{http.MethodGet, path + "/history"},
		{http.MethodGet, path + "/progress-token"},
	} {
		w := hs.do(req.method, req.path, "bob", "")
		is.Equal(w.Code, http.StatusNotFound)                 // another user's batch is no batch
		is.Equal(problemOf(t, w).Code, problem.BatchNotFound) // exactly like a missing one
	}
	m, err := hs.Ledger.Manifest(ctx(t), sub.BatchID)
	is.NoErr(err)
	rows, err := hs.Ledger.Rows(ctx(t), m)
	is.NoErr(err)
	for _, r := range rows {
		is.Equal(r.Status, ledger.Queued) // bob's cancel changed nothing
	}

	w := hs.do(http.MethodGet, path, "alice", "")
	is.Equal(w.Code, http.StatusOK)
	var b api.Batch
	is.NoErr(json.Unmarshal(w.Body.Bytes(), &b))
	is.Equal(b.BatchID, sub.BatchID)
	is.Equal(b.Status, ledger.Queued)
	is.Equal(len(b.Rows), 2)
	is.Equal(len(b.Rows[0].Variants), 2)
	is.Equal(b.Rows[0].Prompt, "mine")

	w = hs.do(http.MethodPost, path+"/cancel", "alice", "")
	is.Equal(w.Code, http.StatusOK)
	is.NoErr(json.Unmarshal(w.Body.Bytes(), &b))
	is.Equal(b.Status, ledger.Cancelled) // her own rows, none started, are cancelled
	is.Equal(b.Rows[1].Status, ledger.Cancelled)
}

func TestUnknownBatchIsNotFound(t *testing.T) {
	is := is.New(t)
	hs := newHarness(t)
	for _, id := range []string{"not-an-id", "0190e0a4-7b0c-7d4e-8f00-000000000000"} {
		w := hs.do(http.MethodGet, "/batch/"+id, "", "")
		is.Equal(w.Code, http.StatusNotFound)
		is.Equal(problemOf(t, w).Code, problem.BatchNotFound)
	}
}

func TestMissingDependencyPanicsAtConstruction(t *testing.T) {
	is := is.New(t)
	defer func() {
		msg, _ := recover().(string)
		is.True(strings.HasPrefix(msg, "submit.New: missing Deps.Store")) // names the constructor and the field
	}()
	submit.New(submit.Config{}, submit.Deps{})
	t.Fatal("New returned without its dependencies")
}
