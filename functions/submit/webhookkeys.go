package submit

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// WebhookKeysMaxAge is how long receivers and caches may keep GET
// /webhooks/keys: a key added to WEBHOOK_SIGNING_KEYS should be published
// this long before it moves first and starts signing.
const WebhookKeysMaxAge = 5 * time.Minute

// handleWebhookKeys publishes the public halves of the keys that sign this
// deployment's webhooks: {"keys":[{"kid","alg":"Ed25519","publicKey"}]},
// signing key first. It is public (a public key proves nothing about who
// asks) and cacheable, with an ETag for cheap revalidation. The keys are fixed
// for an instance's life, so the document is rendered once.
func (s *server) handleWebhookKeys() http.Handler {
	doc, _ := json.Marshal(s.Finisher.WebhookKeys()) // strings only: cannot fail
	doc = append(doc, '\n')
	sum := sha256.Sum256(doc)
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
	maxAge := "public, max-age=" + strconv.Itoa(int(WebhookKeysMaxAge/time.Second))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", maxAge)
		h.Set("ETag", etag)
		// ServeContent answers If-None-Match with 304 and HEAD without a body.
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(doc))
	})
}
