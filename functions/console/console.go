// Package console is the batch console: a small web page, plain HTML, CSS and
// JavaScript embedded in the binary, that submits batches and watches their
// images arrive over the progress stream. It has no build step and loads
// nothing from other sites.
//
// The page learns where the API is from /console/config.js, which the handler
// generates from Config; every other file is served as embedded.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Config is what the page needs to know about its deployment.
type Config struct {
	// APIBase is the origin, optionally with a path prefix, of the batch API
	// (submit, and the progress URLs it hands out), e.g.
	// "https://api.example.com". Empty means the page's own origin. When it is
	// another origin, that API must list the console's origin in CORS_ORIGINS.
	APIBase string
	// StorageOrigin is the origin signed URLs point at when it is not
	// https (the local storage emulator, e.g. "http://127.0.0.1:4443"): the
	// page PUTs uploads to it and reads images from it for downloads. Any
	// https origin is allowed already.
	StorageOrigin string
}

// Prefix is the path of the page's files. Mount the handler on it and on
// GET /{$}, where it serves the page too.
const Prefix = "/console/"

// file is one embedded file, ready to serve.
type file struct {
	body        []byte
	contentType string
	etag        string
}

// New returns the console's handler. It serves the page at / and /console/,
// its files under /console/, and the generated /console/config.js; anything
// else is 404.
func New(cfg Config) http.Handler {
	files := map[string]file{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		files[strings.TrimPrefix(p, "static/")] = newFile(b, contentType(p))
		return nil
	})
	if err != nil {
		panic("console: reading embedded files: " + err.Error()) // cannot happen: they are compiled in
	}
	base := strings.TrimRight(strings.TrimSpace(cfg.APIBase), "/")
	files["config.js"] = newFile(configJS(base), contentType("config.js"))
	csp := policy(base, strings.TrimSpace(cfg.StorageOrigin))

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := route(r.URL.Path)
		f, found := files[name]
		if !ok || !found {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.contentType)
		h.Set("X-Content-Type-Options", "nosniff")
		// Progress URLs carry tokens: never leak them in a Referer.
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", csp)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		// ServeContent answers conditional and HEAD requests from the ETag.
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
	})
}

// route maps a request path to an embedded file name.
func route(p string) (string, bool) {
	switch p {
	case "/", Prefix, strings.TrimSuffix(Prefix, "/"), Prefix + "index.html":
		return "index.html", true
	}
	name, ok := strings.CutPrefix(p, Prefix)
	if !ok || name == "" || path.Clean("/"+name) != "/"+name || strings.Contains(name, "/") {
		return "", false
	}
	return name, true
}

func newFile(b []byte, ct string) file {
	sum := sha256.Sum256(b)
	return file{body: b, contentType: ct, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`}
}

// contentType is fixed per extension rather than read from the system's MIME
// tables, which differ between machines.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".png":
		return "image/png"
	case ".ico":
		return "image/x-icon"
	}
	return "application/octet-stream"
}

// configJS is the page's deployment settings, as a script the page loads
// before its own.
func configJS(apiBase string) []byte {
	// JSON is JavaScript, and json.Marshal escapes <, > and & so nothing in
	// the value can end the script.
	b, _ := json.Marshal(map[string]string{"apiBase": apiBase})
	return []byte("window.assetgenConfig = Object.freeze(" + string(b) + ");\n")
}

// policy is the page's Content-Security-Policy: its own scripts and styles
// only, API calls to its origin, the configured API and https origins (the
// progress service and Cloud Storage may be others), the storage emulator
// when it serves over http, and images from anywhere signed URLs point.
func policy(apiBase, storageOrigin string) string {
	connect := []string{"'self'", "https:"}
	for _, o := range []string{apiBase, storageOrigin} {
		if u, err := url.Parse(o); err == nil && u.Scheme == "http" && u.Host != "" && !slices.Contains(connect, "http://"+u.Host) {
			connect = append(connect, "http://"+u.Host)
		}
	}
	return strings.Join([]string{
		"default-src 'none'",
		"script-src 'self'",
		"style-src 'self'",
		"img-src 'self' https: http: data:",
		"connect-src " + strings.Join(connect, " "),
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	}, "; ")
}
