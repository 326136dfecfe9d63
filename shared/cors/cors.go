// Package cors lets browser frontends on allow-listed origins call the API:
// preflights are answered, and responses to allowed origins carry the headers
// the frontend needs to read. Credentials are bearer tokens, never cookies, so
// no response allows credentials, and "*" is only used when configured.
package cors

import (
	"net/http"
	"slices"
	"strings"
)

// Policy is an origin allow-list.
type Policy struct {
	Origins []string // exact origins such as https://app.example.com, or "*"
	// Headers are request headers allowed beyond the API's own, such as the
	// simulated user of the local stack (X-Assetgen-User).
	Headers []string
}

var (
	allowHeaders  = "Authorization, Content-Type, Idempotency-Key, Last-Event-ID, X-Request-Id, X-Api-Key"
	exposeHeaders = "X-Request-Id, Location, Retry-After"
)

func (p Policy) allowed(origin string) (string, bool) {
	if origin == "" {
		return "", false
	}
	if slices.Contains(p.Origins, "*") {
		return "*", true
	}
	if slices.Contains(p.Origins, origin) {
		return origin, true
	}
	return "", false
}

func (p Policy) allowHeaders() string {
	if len(p.Headers) == 0 {
		return allowHeaders
	}
	return allowHeaders + ", " + strings.Join(p.Headers, ", ")
}

// Wrap answers preflights and decorates responses for allowed origins.
func (p Policy) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		allow, ok := p.allowed(origin)
		h := w.Header()
		h.Add("Vary", "Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if preflight {
			if !ok {
				w.WriteHeader(http.StatusForbidden)
				return
			}
			h.Set("Access-Control-Allow-Origin", allow)
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", p.allowHeaders())
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if ok {
			h.Set("Access-Control-Allow-Origin", allow)
			h.Set("Access-Control-Expose-Headers", exposeHeaders)
		}
		next.ServeHTTP(w, r)
	})
}

// Parse reads a comma-separated origin list.
func Parse(s string) Policy {
	var p Policy
	for _, o := range strings.Split(s, ",") {
		if o = strings.TrimRight(strings.TrimSpace(o), "/"); o != "" {
			p.Origins = append(p.Origins, o)
		}
	}
	return p
}
