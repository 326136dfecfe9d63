package problem_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"testing"

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
