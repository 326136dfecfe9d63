package api

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/assetgen/assetgen/shared/problem"
)

// Serve wraps a function's routes so that every answer the client can get is
// part of the contract: unknown paths and methods answer problem documents
// (NOT_FOUND, METHOD_NOT_ALLOWED) instead of ServeMux's plain text, and a panic
// becomes INTERNAL instead of a dropped connection.
func Serve(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				problem.Write(w, r, fmt.Errorf("panic: %v", v))
			}
		}()
		if _, pattern := mux.Handler(r); pattern == "" {
			if allow := allowed(mux, r); len(allow) > 0 {
				w.Header().Set("Allow", strings.Join(allow, ", "))
				problem.Write(w, r, problem.New(problem.MethodNotAllowed, "%s is not allowed on %s", r.Method, r.URL.Path))
				return
			}
			problem.Write(w, r, problem.New(problem.NotFound, "nothing is served at %s", r.URL.Path))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func allowed(mux *http.ServeMux, r *http.Request) []string {
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" {
			out = append(out, m)
		}
	}
	return out
}
