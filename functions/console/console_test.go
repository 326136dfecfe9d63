package console_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/functions/console"
)

func get(t *testing.T, h http.Handler, method, path string, hdr ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The page is served at / and /console/, its files under /console/, each with
// a fixed content type and the headers that keep it to its own resources.
func TestConsoleServesPageAndFiles(t *testing.T) {
	h := console.New(console.Config{})
	for _, tt := range []struct {
		path, contentType, contains string
	}{
		{"/", "text/html; charset=utf-8", `<form id="batch-form"`},
		{"/console/", "text/html; charset=utf-8", `<form id="batch-form"`},
		{"/console/index.html", "text/html; charset=utf-8", `<form id="batch-form"`},
		{"/console/console.js", "text/javascript; charset=utf-8", "window.assetgenConsole"},
		{"/console/console.css", "text/css; charset=utf-8", ":focus-visible"},
		{"/console/config.js", "text/javascript; charset=utf-8", "window.assetgenConfig"},
	} {
		t.Run(tt.path, func(t *testing.T) {
			is := is.New(t)
			resp := get(t, h, http.MethodGet, tt.path)
			is.Equal(resp.StatusCode, http.StatusOK)
			is.Equal(resp.Header.Get("Content-Type"), tt.contentType)
			is.Equal(resp.Header.Get("X-Content-Type-Options"), "nosniff")
			is.Equal(resp.Header.Get("Referrer-Policy"), "no-referrer") // progress URLs carry tokens
			csp := resp.Header.Get("Content-Security-Policy")
			is.True(strings.Contains(csp, "script-src 'self'"))      // no inline or foreign scripts
			is.True(strings.Contains(csp, "frame-ancestors 'none'")) // no framing
			is.True(resp.Header.Get("ETag") != "")
			is.True(strings.Contains(body(t, resp), tt.contains))
		})
	}
}

// The page loads exactly the files the handler serves.
func TestConsolePageReferencesServedFiles(t *testing.T) {
	is := is.New(t)
	h := console.New(console.Config{})
	page := body(t, get(t, h, http.MethodGet, "/"))
	refs := regexp.MustCompile(`(?:src|href)="(/[^"]*)"`).FindAllStringSubmatch(page, -1)
	is.True(len(refs) >= 3) // stylesheet, config and script
	for _, m := range refs {
		resp := get(t, h, http.MethodGet, m[1])
		is.Equal(resp.StatusCode, http.StatusOK) // a file the page references
	}
}

// config.js carries APIBase, trimmed and JSON-escaped; empty means same origin.
func TestConsoleConfigInjection(t *testing.T) {
	for _, tt := range []struct {
		base, want, connect string
	}{
		{"", `{"apiBase":""}`, "connect-src 'self' https:;"},
		{"https://api.example.com/", `{"apiBase":"https://api.example.com"}`, "connect-src 'self' https:;"},
		{"http://127.0.0.1:8080", `{"apiBase":"http://127.0.0.1:8080"}`, "connect-src 'self' https: http://127.0.0.1:8080;"},
		{`https://x.test/</script><script>alert(1)</script>`, `\u003c/script\u003e`, "connect-src 'self' https:;"},
	} {
		t.Run(tt.base, func(t *testing.T) {
			is := is.New(t)
			h := console.New(console.Config{APIBase: tt.base})
			resp := get(t, h, http.MethodGet, "/console/config.js")
			is.Equal(resp.StatusCode, http.StatusOK)
			js := body(t, resp)
			is.True(strings.HasPrefix(js, "window.assetgenConfig = Object.freeze("))
			is.True(strings.Contains(js, tt.want)) // the API base, JSON-encoded
			is.True(!strings.Contains(js, "</script>"))
			is.True(strings.Contains(resp.Header.Get("Content-Security-Policy"), tt.connect))
		})
	}
}

// The storage origin, when it is plain http (the local emulator), may be
// called: uploads are PUT there and images read from there for downloads.
func TestConsoleStorageOriginInPolicy(t *testing.T) {
	for _, tt := range []struct {
		api, storage, connect string
	}{
		{"", "http://127.0.0.1:4443", "connect-src 'self' https: http://127.0.0.1:4443;"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:4443", "connect-src 'self' https: http://127.0.0.1:8080 http://127.0.0.1:4443;"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080", "connect-src 'self' https: http://127.0.0.1:8080;"},
		{"", "https://storage.googleapis.com", "connect-src 'self' https:;"},
		{"", "not a url", "connect-src 'self' https:;"},
	} {
		t.Run(tt.storage, func(t *testing.T) {
			is := is.New(t)
			h := console.New(console.Config{APIBase: tt.api, StorageOrigin: tt.storage})
			csp := get(t, h, http.MethodGet, "/").Header.Get("Content-Security-Policy")
			is.True(strings.Contains(csp, tt.connect)) // the origins the page may call
		})
	}
}

// Only the page's files exist; other methods are refused; the ETag answers
// conditional requests.
func TestConsoleNotFoundMethodsAndCaching(t *testing.T) {
	is := is.New(t)
	h := console.New(console.Config{})
	for _, p := range []string{"/console/missing.js", "/console/../go.mod", "/console/static/index.html", "/other", "/console//console.js"} {
		is.Equal(get(t, h, http.MethodGet, p).StatusCode, http.StatusNotFound) // not a console file
	}
	resp := get(t, h, http.MethodPost, "/console/console.js")
	is.Equal(resp.StatusCode, http.StatusMethodNotAllowed)
	is.Equal(resp.Header.Get("Allow"), "GET, HEAD")

	head := get(t, h, http.MethodHead, "/")
	is.Equal(head.StatusCode, http.StatusOK)
	is.Equal(body(t, head), "") // HEAD has no body

	etag := get(t, h, http.MethodGet, "/console/console.js").Header.Get("ETag")
	is.Equal(get(t, h, http.MethodGet, "/console/console.js", "If-None-Match", etag).StatusCode, http.StatusNotModified)
}

// The page loads nothing from other sites: no absolute URL appears anywhere
// in its files, so it works offline and no CDN can change it.
func TestConsoleStaticFilesHaveNoExternalURLs(t *testing.T) {
	is := is.New(t)
	n := 0
	err := filepath.WalkDir("static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		for _, bad := range []string{"http://", "https://", "//cdn", "@import"} {
			if i := strings.Index(strings.ToLower(string(b)), bad); i >= 0 {
				t.Errorf("%s contains %q at byte %d", p, bad, i)
			}
		}
		return nil
	})
	is.NoErr(err)
	is.True(n >= 3) // index.html, console.js, console.css
}
