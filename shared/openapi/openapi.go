// Package openapi is the API's machine-readable contract: the OpenAPI 3.1
// document of the submit function and the progress service, embedded in the
// binary and served at GET /openapi.json. docs/openapi.json is a byte-identical
// copy for readers of the repository (go generate writes it; a test fails when
// the two differ).
package openapi

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
	"strconv"
	"time"
)

//go:generate cp openapi.json ../../docs/openapi.json

//go:embed openapi.json
var document []byte

// Document returns the OpenAPI document (a copy: the embedded bytes are
// shared by every request).
func Document() []byte {
	return bytes.Clone(document)
}

// MaxAge is how long clients and caches may keep the document: it changes
// only with a release.
const MaxAge = 5 * time.Minute

// Handler serves the document: public, cacheable, with an ETag so a client
// revalidates with a 304 instead of downloading it again.
func Handler() http.Handler {
	sum := sha256.Sum256(document)
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
	cache := "public, max-age=" + strconv.Itoa(int(MaxAge/time.Second))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", cache)
		h.Set("ETag", etag)
		// ServeContent answers If-None-Match with 304 and HEAD without a body.
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(document))
	})
}
