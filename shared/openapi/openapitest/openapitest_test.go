package openapitest_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/openapi/openapitest"
)

func TestOperationOfAPattern(t *testing.T) {
	for pattern, want := range map[string]string{
		"POST /batch/images":                    "POST /batch/images",
		"GET /batch/{batchId}":                  "GET /batch/{}",
		"GET /assets/{batchId}/{row}/{variant}": "GET /assets/{}/{}/{}",
		"GET /{$}":                              "GET /",
		"/console/":                             "GET /console/{}",
		"GET /files/{path...}":                  "GET /files/{}",
	} {
		if got := openapitest.Operation(pattern); got != want {
			t.Errorf("Operation(%q) = %q, want %q", pattern, got, want)
		}
	}
}

func TestDocumentedOperationsOfAService(t *testing.T) {
	is := is.New(t)
	c, err := openapitest.Load()
	is.NoErr(err)
	progress := c.Documented("progress")
	is.True(strings.Contains(strings.Join(progress, ","), "GET /progress/{}")) // the stream is the progress service's
	is.True(strings.Contains(strings.Join(progress, ","), "GET /health"))      // probes are both services'
	for _, op := range progress {
		is.True(op != "POST /batch/images") // submit's routes are not the progress service's
	}
}

// answer is a response to GET /budget as a test server would give it.
func answer(status int, contentType, body string, header map[string]string) (*http.Request, *http.Response) {
	req := httptest.NewRequest(http.MethodGet, "http://api.test/budget", nil)
	w := httptest.NewRecorder()
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Request-Id", "r1")
	for k, v := range header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
	return req, w.Result()
}

const budget = `{"day":"2026-01-02","limitUsd":1,"reservedUsd":0,"spentUsd":0,"remainingUsd":1,"total":{"limitUsd":10,"remainingUsd":10}}`

func TestCheckFindsWhatTheDocumentDoesNotAllow(t *testing.T) {
	c, err := openapitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		status      int
		contentType string
		body        string
		header      map[string]string
		ok          bool
	}{
		"the documented answer":        {200, "application/json", budget, nil, true},
		"a documented problem":         {401, "application/problem+json", `{"type":"https://assetgen.dev/errors#UNAUTHENTICATED","title":"t","status":401,"code":"UNAUTHENTICATED","requestId":"r1"}`, nil, true},
		"a missing field":              {200, "application/json", `{"day":"2026-01-02","limitUsd":1}`, nil, false},
		"an undocumented field":        {200, "application/json", strings.Replace(budget, `"day"`, `"extra":1,"day"`, 1), nil, false},
		"an undocumented status":       {418, "application/json", budget, nil, false},
		"another content type":         {200, "text/plain", budget, nil, false},
		"a code of another status":     {401, "application/problem+json", `{"type":"https://assetgen.dev/errors#FORBIDDEN","title":"t","status":401,"code":"FORBIDDEN"}`, nil, false},
		"an unknown problem code":      {401, "application/problem+json", `{"type":"https://assetgen.dev/errors#NOPE","title":"t","status":401,"code":"NOPE"}`, nil, false},
		"an undocumented header":       {200, "application/json", budget, map[string]string{"X-Secret": "1"}, false},
		"a malformed documented value": {503, "application/problem+json", `{"type":"https://assetgen.dev/errors#NOT_READY","title":"t","status":503,"code":"NOT_READY"}`, map[string]string{"Retry-After": "soon"}, false},
	} {
		t.Run(name, func(t *testing.T) {
			is := is.New(t)
			req, resp := answer(tc.status, tc.contentType, tc.body, tc.header)
			err := c.Check(req, resp, nil)
			if tc.ok {
				is.NoErr(err) // the document allows this answer
				b, _ := io.ReadAll(resp.Body)
				is.Equal(string(b), tc.body) // the body is put back for the caller
				return
			}
			is.True(err != nil) // the checker refuses what the document does not allow
			t.Log(err)
		})
	}
}

func TestUndocumentedRequestsAreNotChecked(t *testing.T) {
	is := is.New(t)
	c, err := openapitest.Load()
	is.NoErr(err)
	req := httptest.NewRequest(http.MethodPost, "http://api.test/tasks/generate", nil)
	is.NoErr(c.Check(req, &http.Response{StatusCode: 500, Header: http.Header{}, Body: http.NoBody}, nil)) // not the document's: passed through
}

const row = `{"batchId":"01900000-0000-7000-8000-000000000000","index":0,"prompt":"p","status":"done","version":2,"attempts":1,"variants":[{"index":0,"status":"done","url":"http://x.test/a.png","expiresAt":"2026-01-02T00:00:00Z"}]}`

func TestEventsAreCheckedAgainstTheirSchemas(t *testing.T) {
	c, err := openapitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	totals := `{"status":"done","rowCounts":{"queued":0,"running":0,"done":1,"failed":0,"cancelled":0},"variantCounts":{"queued":0,"running":0,"done":1,"failed":0,"cancelled":0},"costUsd":0}`
	for _, tc := range []struct {
		event, id, data string
		ok              bool
	}{
		{"row", "a1b2c3-3", row, true},
		{"batch", "a1b2c3-3~sxk2h0", totals, true},
		{"done", "a1b2c3-3", totals, true},
		{"ping", "", `{}`, true},
		{"reconnect", "", `{}`, true},
		{"row", "", row, false},                   // row events carry an id
		{"row", "a1b2c3-3", `{"index":0}`, false}, // a row snapshot is whole
		{"row", "a1b2c3-3", strings.Replace(row, `"prompt"`, `"secret":1,"prompt"`, 1), false}, // undocumented field
		{"done", "a1b2c3-3", `{"status":"finished"}`, false},                                   // not a status
		{"ping", "", `{"x":1}`, false},                                                         // ping data is empty
		{"message", "", `{}`, false},                                                           // not an event of the stream
		{"batch", "not an id", totals, false},                                                  // ids have their format
	} {
		err := c.CheckEvent(tc.event, tc.id, tc.data)
		if (err == nil) != tc.ok {
			t.Errorf("event %s id %q data %s: got %v, want ok=%v", tc.event, tc.id, tc.data, err, tc.ok)
		}
	}
}

func TestStreamsAreCheckedAsTheyAreRead(t *testing.T) {
	is := is.New(t)
	c, err := openapitest.Load()
	is.NoErr(err)
	stream := func(body string) (*http.Request, *http.Response) {
		req := httptest.NewRequest(http.MethodGet, "http://api.test/progress/01900000-0000-7000-8000-000000000000?token=t", nil)
		w := httptest.NewRecorder()
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Accel-Buffering", "no")
		w.Header().Set("X-Request-Id", "r1")
		_, _ = io.WriteString(w, body)
		return req, w.Result()
	}
	good := "retry: 2000\n\nid: a1b2c3-3\nevent: row\ndata: " + row + "\n\nevent: ping\ndata: {}\n\n"
	req, resp := stream(good)
	is.NoErr(c.Check(req, resp, nil))
	b, err := io.ReadAll(resp.Body)
	is.NoErr(err)             // a stream the document allows reads to its end
	is.Equal(string(b), good) // unchanged

	var reported []error
	req, resp = stream("event: ping\ndata: {}\n\nevent: row\ndata: {}\n\n")
	is.NoErr(c.Check(req, resp, func(err error) { reported = append(reported, err) }))
	_, err = io.ReadAll(resp.Body)
	is.True(err != nil)        // a bad event fails the read
	is.Equal(len(reported), 1) // and is reported
}

func TestMapsTakeAnyKey(t *testing.T) {
	is := is.New(t)
	c, err := openapitest.Load()
	is.NoErr(err)
	req := httptest.NewRequest(http.MethodGet, "http://api.test/ready", nil)
	w := httptest.NewRecorder()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Request-Id", "r1")
	_, _ = io.WriteString(w, `{"status":"ready","checks":{"bucket":"ok","config/flags.json":"ok"}}`)
	is.NoErr(c.Check(req, w.Result(), nil)) // readiness checks are named by their keys

	w = httptest.NewRecorder()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Request-Id", "r1")
	_, _ = io.WriteString(w, `{"status":"ready","checks":{"bucket":"fine"}}`)
	is.True(c.Check(req, w.Result(), nil) != nil) // but their values are still checked
}

func TestRefusalsOutsideTheOperationsAreChecked(t *testing.T) {
	c, err := openapitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	const notAllowed = `{"type":"https://assetgen.dev/errors#METHOD_NOT_ALLOWED","title":"t","status":405,"code":"METHOD_NOT_ALLOWED"}`
	for name, tc := range map[string]struct {
		status int
		allow  string
		body   string
		ok     bool
	}{
		"a 405 with Allow":           {405, "GET", notAllowed, true},
		"a 405 without Allow":        {405, "", notAllowed, false},
		"a 405 with another code":    {405, "GET", strings.ReplaceAll(notAllowed, "METHOD_NOT_ALLOWED", "NOT_FOUND"), false},
		"a 404 problem":              {404, "", `{"type":"https://assetgen.dev/errors#NOT_FOUND","title":"t","status":404,"code":"NOT_FOUND"}`, true},
		"a 404 with an undocumented": {404, "", `{"type":"https://assetgen.dev/errors#NOT_FOUND","title":"t","status":404,"code":"NOT_FOUND","x":1}`, false},
		"another answer":             {200, "", `anything`, true},
	} {
		t.Run(name, func(t *testing.T) {
			is := is.New(t)
			req := httptest.NewRequest(http.MethodDelete, "http://api.test/batch/01900000-0000-7000-8000-000000000000", nil)
			w := httptest.NewRecorder()
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("X-Request-Id", "r1")
			if tc.allow != "" {
				w.Header().Set("Allow", tc.allow)
			}
			w.WriteHeader(tc.status)
			_, _ = io.WriteString(w, tc.body)
			err := c.Check(req, w.Result(), nil)
			is.Equal(err == nil, tc.ok) // refusals are held to the document's components
		})
	}
}
