package cors_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/cors"
)

const (
	app   = "https://app.example.com"
	admin = "https://admin.example.com"
)

// next is the wrapped handler: it counts its calls and sets a Vary of its own.
type next struct{ calls int }

func (n *next) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n.calls++
	w.Header().Add("Vary", "Accept-Encoding")
	w.Header().Set("X-Request-Id", "req-1")
	w.WriteHeader(http.StatusAccepted)
}

// list splits a comma-separated header (all its values) into trimmed,
// lower-case tokens.
func list(h http.Header, name string) []string {
	var out []string
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if t = strings.ToLower(strings.TrimSpace(t)); t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

func has(h http.Header, name string, tokens ...string) bool {
	got := list(h, name)
	for _, t := range tokens {
		if !slices.Contains(got, strings.ToLower(t)) {
			return false
		}
	}
	return true
}

func serve(p cors.Policy, r *http.Request) (*httptest.ResponseRecorder, *next) {
	n := &next{}
	rec := httptest.NewRecorder()
	p.Wrap(n).ServeHTTP(rec, r)
	return rec, n
}

func preflight(origin, method, headers string) *http.Request {
	r := httptest.NewRequest(http.MethodOptions, "/batch/images", nil)
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	r.Header.Set("Access-Control-Request-Method", method)
	if headers != "" {
		r.Header.Set("Access-Control-Request-Headers", headers)
	}
	return r
}

func request(method, origin string) *http.Request {
	r := httptest.NewRequest(method, "/batch/b1", nil)
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	return r
}

func TestPreflight(t *testing.T) {
	tests := []struct {
		name    string
		origins []string
		origin  string
		method  string
		want    string // Access-Control-Allow-Origin; "" when refused
	}{
		{"allowed origin, POST", []string{app}, app, "POST", app},
		{"allowed origin, GET", []string{app}, app, "GET", app},
		{"second allowed origin", []string{app, admin}, admin, "POST", admin},
		{"other origin", []string{app}, "https://evil.example.com", "POST", ""},
		{"allowed host, other scheme", []string{app}, "http://app.example.com", "POST", ""},
		{"allowed host, other port", []string{app}, "https://app.example.com:8443", "POST", ""},
		{"allowed origin as a prefix", []string{app}, app + ".evil.com", "POST", ""},
		{"allowed origin as a suffix", []string{app}, "https://evil" + strings.TrimPrefix(app, "https://"), "POST", ""},
		{"allowed origin with a path", []string{app}, app + "/", "POST", ""},
		{"allowed origin in another case", []string{app}, strings.ToUpper(app), "POST", ""},
		{"null origin", []string{app}, "null", "POST", ""},
		{"no origin", []string{app}, "", "POST", ""},
		{"no origins configured", nil, app, "POST", ""},
		{"wildcard", []string{"*"}, "https://anything.example.org", "POST", "*"},
		{"wildcard among origins", []string{app, "*"}, app, "POST", "*"},
		{"wildcard, no origin", []string{"*"}, "", "POST", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			rec, n := serve(cors.Policy{Origins: tt.origins}, preflight(tt.origin, tt.method, "authorization, content-type, idempotency-key"))
			h := rec.Header()
			is.Equal(n.calls, 0)                                    // a preflight never reaches next
			is.Equal(h.Get("Access-Control-Allow-Credentials"), "") // never credentials
			is.True(has(h, "Vary", "Origin"))                       // the answer depends on Origin
			if tt.want == "" {
				is.Equal(rec.Code, http.StatusForbidden)
				is.Equal(len(h.Values("Access-Control-Allow-Origin")), 0) // no Allow-Origin
				is.Equal(h.Get("Access-Control-Allow-Methods"), "")
				is.Equal(h.Get("Access-Control-Allow-Headers"), "")
				return
			}
			is.Equal(rec.Code, http.StatusNoContent)
			is.Equal(h.Values("Access-Control-Allow-Origin"), []string{tt.want}) // exactly the origin
			is.True(has(h, "Access-Control-Allow-Methods", "GET", "POST"))
			is.True(has(h, "Access-Control-Allow-Headers", "Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID", "X-Api-Key"))
			age, err := strconv.Atoi(h.Get("Access-Control-Max-Age"))
			is.NoErr(err)    // Max-Age is seconds
			is.True(age > 0) // and caches the preflight
			is.Equal(rec.Body.Len(), 0)
		})
	}
}

// Anything that is not a preflight goes to next; responses to allowed origins
// carry Allow-Origin and Expose-Headers, others nothing of CORS.
func TestActualRequests(t *testing.T) {
	tests := []struct {
		name    string
		origins []string
		method  string
		origin  string
		want    string // Access-Control-Allow-Origin; "" for none
	}{
		{"GET from an allowed origin", []string{app}, http.MethodGet, app, app},
		{"POST from an allowed origin", []string{app, admin}, http.MethodPost, admin, admin},
		{"GET from another origin", []string{app}, http.MethodGet, "https://evil.example.com", ""},
		{"POST from another origin", []string{app}, http.MethodPost, "https://evil.example.com", ""},
		{"no origin (same origin or not a browser)", []string{app}, http.MethodGet, "", ""},
		{"OPTIONS without Access-Control-Request-Method", []string{app}, http.MethodOptions, app, app},
		{"wildcard", []string{"*"}, http.MethodGet, "https://anything.example.org", "*"},
		{"wildcard, no origin", []string{"*"}, http.MethodGet, "", ""},
		{"no origins configured", nil, http.MethodGet, app, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			rec, n := serve(cors.Policy{Origins: tt.origins}, request(tt.method, tt.origin))
			h := rec.Header()
			is.Equal(n.calls, 1)                    // next runs, whatever the origin
			is.Equal(rec.Code, http.StatusAccepted) // and answers
			is.Equal(h.Get("Access-Control-Allow-Credentials"), "")
			is.True(has(h, "Vary", "Origin", "Accept-Encoding")) // Vary: Origin, next's Vary kept
			is.Equal(h.Get("X-Request-Id"), "req-1")
			if tt.want == "" {
				is.Equal(len(h.Values("Access-Control-Allow-Origin")), 0)
				is.Equal(h.Get("Access-Control-Expose-Headers"), "")
				return
			}
			is.Equal(h.Values("Access-Control-Allow-Origin"), []string{tt.want})
			is.True(has(h, "Access-Control-Expose-Headers", "X-Request-Id", "Location", "Retry-After"))
			is.Equal(h.Get("Access-Control-Allow-Methods"), "") // preflight headers only on preflights
		})
	}
}

// A Vary set by an outer middleware (compression, say) is kept: the policy adds
// Origin to it rather than replacing it.
func TestVaryIsAdded(t *testing.T) {
	for _, r := range []*http.Request{
		preflight(app, "POST", "authorization"),
		preflight("https://evil.example.com", "POST", "authorization"),
		request(http.MethodGet, app),
		request(http.MethodGet, ""),
	} {
		t.Run(r.Method+" "+r.Header.Get("Origin"), func(t *testing.T) {
			is := is.New(t)
			inner := cors.Policy{Origins: []string{app}}.Wrap(&next{})
			outer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Add("Vary", "Accept-Language")
				inner.ServeHTTP(w, r)
			})
			rec := httptest.NewRecorder()
			outer.ServeHTTP(rec, r)
			is.True(has(rec.Header(), "Vary", "Accept-Language", "Origin")) // both
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" , ,", nil},
		{app, []string{app}},
		{app + "/", []string{app}},
		{" " + app + "// , " + admin + " ", []string{app, admin}},
		{app + ",," + admin + "/", []string{app, admin}},
		{"*", []string{"*"}},
		{" * ", []string{"*"}},
		{"http://localhost:5173/", []string{"http://localhost:5173"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			is := is.New(t)
			is.Equal(cors.Parse(tt.in).Origins, tt.want)
		})
	}
}

// A parsed list admits the origins as browsers send them (no trailing slash).
func TestParsedPolicyAdmitsOrigins(t *testing.T) {
	is := is.New(t)
	p := cors.Parse(" " + app + "/ , http://localhost:5173/ ")
	for _, origin := range []string{app, "http://localhost:5173"} {
		rec, _ := serve(p, preflight(origin, "POST", "authorization"))
		is.Equal(rec.Code, http.StatusNoContent)
		is.Equal(rec.Header().Get("Access-Control-Allow-Origin"), origin)
	}
	rec, _ := serve(p, preflight(admin, "POST", "authorization"))
	is.Equal(rec.Code, http.StatusForbidden)
}

// Headers a policy adds are allowed on preflights beside the API's own; a
// policy without them allows only the API's.
func TestExtraHeaders(t *testing.T) {
	is := is.New(t)
	rec, _ := serve(cors.Policy{Origins: []string{app}, Headers: []string{"X-Assetgen-User"}}, preflight(app, "POST", "content-type, x-assetgen-user"))
	is.Equal(rec.Code, http.StatusNoContent)
	is.True(has(rec.Header(), "Access-Control-Allow-Headers", "X-Assetgen-User", "Authorization", "Content-Type", "Last-Event-ID")) // the extra header and the API's own

	rec, _ = serve(cors.Policy{Origins: []string{app}}, preflight(app, "POST", "content-type, x-assetgen-user"))
	is.True(!has(rec.Header(), "Access-Control-Allow-Headers", "X-Assetgen-User")) // not allowed unless added
}
