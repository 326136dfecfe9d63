package auth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/problem"
)

// checkCode asserts err is a problem with code.
func checkCode(t *testing.T, err error, code problem.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("want a %s error, got none", code)
	}
	if got := problem.CodeOf(err); got != code {
		t.Fatalf("want a %s error, got %s (%v)", code, got, err)
	}
}

// checkProblem asserts rec holds a problem+json answer with code.
func checkProblem(t *testing.T, rec *httptest.ResponseRecorder, code problem.Code) {
	t.Helper()
	is := is.New(t)
	is.Helper()
	status := problem.Lookup(code).Status
	is.Equal(rec.Code, status)
	is.Equal(rec.Header().Get("Content-Type"), problem.ContentType)
	var doc struct {
		Status int          `json:"status"`
		Code   problem.Code `json:"code"`
	}
	is.NoErr(json.Unmarshal(rec.Body.Bytes(), &doc))
	is.Equal(doc.Code, code)
	is.Equal(doc.Status, status)
}

// whoHandler is a next handler that records the principal it ran for.
type whoHandler struct {
	mu    sync.Mutex
	calls int
	who   Principal
}

func (h *whoHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	h.who, _ = From(r.Context())
	w.WriteHeader(http.StatusNoContent)
}

// funcAuth is an Authenticator made of a function.
type funcAuth func(r *http.Request) (Principal, error)

func (f funcAuth) Authenticate(r *http.Request) (Principal, error) { return f(r) }
