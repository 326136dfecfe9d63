package auth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/problem"
)

func TestWithFrom(t *testing.T) {
	is := is.New(t)
	_, ok := auth.From(context.Background())
	is.True(!ok) // nobody in a bare context
	p := auth.Principal{UserID: "alice", Via: "apikey"}
	got, ok := auth.From(auth.With(context.Background(), p))
	is.True(ok)
	is.Equal(got, p)
}

// Require runs next with the principal in the context, or writes the
// authenticator's problem and never runs next.
func TestRequire(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want problem.Code
	}{
		{"authenticated", nil, ""},
		{"unauthenticated", problem.New(problem.Unauthenticated, "who are you"), problem.Unauthenticated},
		{"not ready", problem.New(problem.NotReady, "no key table"), problem.NotReady},
		{"plain error", errors.New("boom"), problem.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			p := auth.Principal{UserID: "bob", Via: "none"}
			a := authFunc(func(*http.Request) (auth.Principal, error) {
				if tt.err != nil {
					return auth.Principal{}, tt.err
				}
				return p, nil
			})
			next := &recorder{}
			rec := httptest.NewRecorder()
			auth.Require(a, next).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/budget", nil))
			if tt.want == "" {
				is.Equal(next.Called(), 1)
				is.True(next.found)
				is.Equal(next.who, p)
				return
			}
			is.Equal(next.Called(), 0)
			wantProblem(t, rec, tt.want)
		})
	}
}

// Admit hands a handler the principal itself and names the user and the
// batch on the request's log line, as Require does; a failed authentication
// is answered with its problem.
func TestAdmit(t *testing.T) {
	for _, fail := range []bool{false, true} {
		is := is.New(t)
		a := authFunc(func(*http.Request) (auth.Principal, error) {
			if fail {
				return auth.Principal{}, problem.New(problem.Unauthenticated, "who are you")
			}
			return auth.Principal{UserID: "carol", Via: "progress-token"}, nil
		})
		var got auth.Principal
		admitted := false
		mux := http.NewServeMux()
		mux.HandleFunc("GET /progress/{batchId}", func(w http.ResponseWriter, r *http.Request) {
			got, admitted = auth.Admit(a, w, r)
		})
		var logs bytes.Buffer
		rec := httptest.NewRecorder()
		obs.Middleware(obs.NewLogger(&logs, slog.LevelInfo), obs.Options{}, mux).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/progress/b-1", nil))
		if fail {
			is.True(!admitted) // refused
			wantProblem(t, rec, problem.Unauthenticated)
			continue
		}
		is.True(admitted)
		is.Equal(got.UserID, "carol") // the principal, handed over
		var line map[string]any
		is.NoErr(json.Unmarshal(logs.Bytes(), &line))
		is.Equal(line["userId"], "carol") // the request line names the user
		is.Equal(line["batchId"], "b-1")  // and the batch
	}
}

// None trusts X-Assetgen-User when it is short printable text, and is "local"
// without it.
func TestNone(t *testing.T) {
	tests := []struct {
		name   string
		header *string
		want   string // "" when refused
	}{
		{"no header", nil, auth.LocalUser},
		{"a user", ptr("alice"), "alice"},
		{"punctuation", ptr("user-1_b.c@example.com"), "user-1_b.c@example.com"},
		{"128 characters", ptr(strings.Repeat("u", 128)), strings.Repeat("u", 128)},
		{"129 characters", ptr(strings.Repeat("u", 129)), ""},
		{"300 characters", ptr(strings.Repeat("u", 300)), ""},
		{"inner space", ptr("alice smith"), ""},
		{"tab", ptr("alice\tsmith"), ""},
		{"control character", ptr("alice\x01"), ""},
		{"DEL", ptr("alice\x7f"), ""},
		{"newline", ptr("alice\nX-Injected: 1"), ""},
		{"quote", ptr(`al"ice`), ""},
		{"backslash", ptr(`al\ice`), ""},
		{"non-ASCII", ptr("alicé"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			r := httptest.NewRequest(http.MethodGet, "/budget", nil)
			if tt.header != nil {
				r.Header[auth.HeaderUser] = []string{*tt.header} // as sent, not sanitised by Set
			}
			p, err := auth.None{}.Authenticate(r)
			next := &recorder{}
			rec := httptest.NewRecorder()
			auth.Require(auth.None{}, next).ServeHTTP(rec, r)
			if tt.want == "" {
				wantCode(t, err, problem.Unauthenticated)
				is.Equal(next.Called(), 0)
				wantProblem(t, rec, problem.Unauthenticated)
				return
			}
			is.NoErr(err)
			is.Equal(p, auth.Principal{UserID: tt.want, Via: "none"})
			is.Equal(next.Called(), 1)
			is.Equal(next.who, p)
		})
	}
}

// An empty X-Assetgen-User is no header at all: the local user.
func TestNoneEmptyHeader(t *testing.T) {
	is := is.New(t)
	r := httptest.NewRequest(http.MethodGet, "/budget", nil)
	r.Header.Set(auth.HeaderUser, "")
	p, err := auth.None{}.Authenticate(r)
	is.NoErr(err)
	is.Equal(p.UserID, auth.LocalUser)
}

func ptr(s string) *string { return &s }
