package problem_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/problem"
)

// docs/errors.md and the code table must agree: every code documented, with
// its status, and nothing documented that does not exist.
func TestErrorsDocMatchesTable(t *testing.T) {
	is := is.New(t)
	b, err := os.ReadFile("../../docs/errors.md")
	is.NoErr(err) // docs/errors.md exists
	row := regexp.MustCompile("(?m)^\\| `([A-Z_]+)` \\| (\\d{3}) \\|")
	documented := map[problem.Code]int{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		status, _ := strconv.Atoi(m[2])
		documented[problem.Code(m[1])] = status
	}
	for _, c := range problem.Codes() {
		status, ok := documented[c]
		if !ok {
			t.Errorf("code %s is not in docs/errors.md", c)
			continue
		}
		if want := problem.Lookup(c).Status; status != want {
			t.Errorf("docs/errors.md gives %s status %d, the table %d", c, status, want)
		}
		delete(documented, c)
	}
	for c := range documented {
		t.Errorf("docs/errors.md documents %s, which is not a code", c)
	}
	is.True(len(problem.Codes()) >= 20) // the table holds the codes
}

// docs/errors.md documents every field code, and nothing else, in its field
// code table.
func TestFieldCodesDocMatchCode(t *testing.T) {
	is := is.New(t)
	b, err := os.ReadFile("../../docs/errors.md")
	is.NoErr(err) // docs/errors.md exists
	_, fieldsPart, ok := strings.Cut(string(b), "## Field error codes")
	is.True(ok) // the field code table has its section
	row := regexp.MustCompile("(?m)^\\| `([A-Z_]+)` \\|")
	documented := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(fieldsPart, -1) {
		documented[m[1]] = true
	}
	for _, c := range problem.FieldCodes() {
		if !documented[c] {
			t.Errorf("field code %s is not in the field code table of docs/errors.md", c)
		}
		delete(documented, c)
	}
	for c := range documented {
		t.Errorf("docs/errors.md documents field code %s, which is not one", c)
	}
	is.True(len(problem.FieldCodes()) >= 10) // the field codes are listed
}

// An error that carries its own code (as the storage adapter's do) is
// answered with that code and the table's Retry-After, without a handler
// wrapping it; an *Error wrapped around it still wins.
func TestCodedErrorsNeedNoWrapping(t *testing.T) {
	is := is.New(t)
	read := fmt.Errorf("reading the batch: %w", storageErr{problem.StorageUnavailable})
	r := httptest.NewRequest(http.MethodGet, "/batch/x", nil)
	w := httptest.NewRecorder()
	problem.Write(w, r, read)
	is.Equal(w.Code, 503)                                      // storage unavailable
	is.Equal(w.Header().Get("Retry-After"), "1")               // the table's Retry-After
	is.Equal(problem.CodeOf(read), problem.StorageUnavailable) // the code the error carries
	var doc map[string]any
	is.NoErr(json.Unmarshal(w.Body.Bytes(), &doc))
	is.Equal(doc["code"], "STORAGE_UNAVAILABLE") // code member
	is.Equal(doc["detail"], nil)                 // the cause stays in the logs

	write := storageErr{problem.GCSWriteFailed}
	is.Equal(problem.CodeOf(write), problem.GCSWriteFailed) // a failed write keeps its code
	w = httptest.NewRecorder()
	problem.Write(w, r, write)
	is.Equal(w.Header().Get("Retry-After"), "") // no Retry-After for GCS_WRITE_FAILED

	outer := problem.Wrap(problem.NotReady, read, "the key table cannot be read")
	is.Equal(problem.CodeOf(outer), problem.NotReady) // the outermost code wins
}

type storageErr struct{ code problem.Code }

func (e storageErr) Error() string             { return "bucket: " + string(e.code) }
func (e storageErr) ProblemCode() problem.Code { return e.code }

func TestWriteProblemDocument(t *testing.T) {
	cases := []struct {
		name       string
		err        error
		status     int
		code       problem.Code
		detail     string
		retryAfter string
	}{
		{"coded error", problem.New(problem.BatchNotFound, "no batch %q", "x"), 404, problem.BatchNotFound, `no batch "x"`, ""},
		{"wrapped coded error", fmt.Errorf("outer: %w", problem.New(problem.RateLimited, "slow down")), 429, problem.RateLimited, "slow down", ""},
		{"retry after", &problem.Error{Code: problem.Overloaded, Detail: "busy", RetryAfter: 7}, 503, problem.Overloaded, "busy", "7"},
		{"foreign error hides its cause", errors.New("dial tcp 10.0.0.7:5432: secret"), 500, problem.Internal, "", ""},
		{"internal with detail hides it", problem.Wrap(problem.Internal, errors.New("boom"), "stack here"), 500, problem.Internal, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			r := httptest.NewRequest(http.MethodGet, "/batch/x", nil)
			r = r.WithContext(obs.WithRequestID(r.Context(), "req-1"))
			w := httptest.NewRecorder()
			problem.Write(w, r, c.err)
			is.Equal(w.Code, c.status)                                    // status
			is.Equal(w.Header().Get("Content-Type"), problem.ContentType) // problem+json
			is.Equal(w.Header().Get("Retry-After"), c.retryAfter)         // Retry-After
			var doc map[string]any
			is.NoErr(json.Unmarshal(w.Body.Bytes(), &doc))
			is.Equal(doc["code"], string(c.code))      // code
			is.Equal(doc["status"], float64(c.status)) // status member
			is.Equal(doc["requestId"], "req-1")        // request id
			is.Equal(doc["instance"], "/batch/x")      // instance
			got, _ := doc["detail"].(string)
			is.Equal(got, c.detail) // detail, never a cause
		})
	}
}

func TestExtraMembersAreFlattened(t *testing.T) {
	is := is.New(t)
	r := httptest.NewRequest(http.MethodPost, "/batch/images", nil)
	w := httptest.NewRecorder()
	problem.Write(w, r, &problem.Error{Code: problem.BudgetExceeded, Detail: "over", Extra: map[string]any{"remainingUsd": 1.5, "code": "FORGED"}})
	var doc map[string]any
	is.NoErr(json.Unmarshal(w.Body.Bytes(), &doc))
	is.Equal(doc["remainingUsd"], 1.5)                    // extension member at the top level
	is.Equal(doc["code"], string(problem.BudgetExceeded)) // extensions cannot override standard members
}

// A body of thousands of unknown, long field names must not be echoed back at
// several times its size: errors[] keeps 50 entries, says how many it left
// out, and clips each pointer and detail.
func TestFieldErrorsAreCapped(t *testing.T) {
	cases := []struct {
		name    string
		n       int
		nameLen int
		listed  int
		omitted float64
	}{
		{"few short", 3, 5, 3, 0},
		{"exactly the cap", problem.MaxFieldErrors, 5, problem.MaxFieldErrors, 0},
		{"many", 5000, 5, problem.MaxFieldErrors, 5000 - problem.MaxFieldErrors},
		{"long names", 2, 100_000, 2, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			fields := make([]problem.FieldError, c.n)
			for i := range fields {
				name := strings.Repeat("é", c.nameLen/2) + strconv.Itoa(i)
				fields[i] = problem.FieldError{Field: "/" + name, Code: problem.FieldUnknown, Detail: fmt.Sprintf("unknown field %q", name)}
			}
			err := &problem.Error{Code: problem.ValidationFailed, Detail: "bad", Fields: fields}
			w := httptest.NewRecorder()
			problem.Write(w, httptest.NewRequest(http.MethodPost, "/batch", nil), err)
			is.True(w.Body.Len() < 64<<10) // the document stays small
			var doc struct {
				Errors []struct {
					Field, Code, Detail string
				}
				ErrorsOmitted float64 `json:"errorsOmitted"`
			}
			is.NoErr(json.Unmarshal(w.Body.Bytes(), &doc)) // valid JSON, valid UTF-8 after clipping
			is.Equal(len(doc.Errors), c.listed)            // entries listed
			is.Equal(doc.ErrorsOmitted, c.omitted)         // entries left out are counted
			for _, e := range doc.Errors {
				is.True(len(e.Field) <= problem.MaxFieldText)  // pointer clipped
				is.True(len(e.Detail) <= problem.MaxFieldText) // detail clipped
				is.True(utf8.ValidString(e.Detail))            // clipped on a rune boundary
			}
			is.Equal(len(fields), c.n) // the caller's slice is not modified
		})
	}
}

// The request's log line names the problem's code, which the log-based
// metrics of a deployment count (budget refusals, rate limits).
func TestRequestLogCarriesTheCode(t *testing.T) {
	is := is.New(t)
	var logs bytes.Buffer
	h := obs.Middleware(obs.NewLogger(&logs, slog.LevelInfo), obs.Options{Function: "submit"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, r, problem.New(problem.BudgetExceeded, "over"))
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/batch/images", nil))
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		is.NoErr(json.Unmarshal([]byte(l), &m)) // JSON log lines
		if m["message"] == "request" {
			line = m
		}
	}
	is.True(line != nil)                                   // a request line
	is.Equal(line["code"], string(problem.BudgetExceeded)) // carrying the code
}
