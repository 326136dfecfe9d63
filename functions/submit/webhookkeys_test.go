package submit_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/functions/wire"
	"github.com/assetgen/assetgen/shared/notify"
	"github.com/assetgen/assetgen/shared/platform/platformtest"
)

// GET /webhooks/keys publishes every configured key, signing key first, to
// anyone: no credentials, even where every other batch route requires them.
// It is cacheable and revalidates by ETag.
func TestWebhookKeys(t *testing.T) {
	is := is.New(t)
	seed := func(n byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{n}, 32)) }
	spec := "k2:" + seed(2) + ",k1:" + seed(1)
	s := platformtest.Open(t, map[string]string{"AUTH_MODE": "apikey", "WEBHOOK_SIGNING_KEYS": spec, "CORS_ORIGINS": "https://app.example"})
	h, err := wire.Submit(s.Platform)
	is.NoErr(err) // submit as deployed
	get := func(path string, header ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "http://submit.test"+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}

	is.Equal(get("/budget").Code, http.StatusUnauthorized) // the API wants credentials...
	w := get("/webhooks/keys", "Origin", "https://app.example")
	is.Equal(w.Code, http.StatusOK)                                                // ...but the keys are public
	is.Equal(w.Header().Get("Content-Type"), "application/json")                   // JSON
	is.Equal(w.Header().Get("Cache-Control"), "public, max-age=300")               // cacheable for five minutes
	is.Equal(w.Header().Get("Access-Control-Allow-Origin"), "https://app.example") // through the CORS policy
	etag := w.Header().Get("ETag")
	is.True(len(etag) > 2 && etag[0] == '"') // a strong ETag

	var got notify.KeySet
	is.NoErr(json.Unmarshal(w.Body.Bytes(), &got)) // the documented shape
	keys, err := notify.ParseSigningKeys(spec)
	is.NoErr(err)
	is.Equal(got, keys.Public())    // both keys, k2 (the signer) first
	is.Equal(got.Keys[0].KID, "k2") // the signing key leads
	is.Equal(got.Keys[0].Alg, "Ed25519")
	is.True(!bytes.Contains(w.Body.Bytes(), []byte(seed(1)))) // never a private seed
	is.True(!bytes.Contains(w.Body.Bytes(), []byte(seed(2))))

	// A signature of the configured signing key verifies with what is published.
	body := []byte(`{"type":"batch.finished","batchId":"b1","userId":"u1"}`)
	now := time.Now()
	is.NoErr(notify.Verify(got, keys.Sign(now, body), body, now, time.Minute)) // a delivery verifies with the published key

	again := get("/webhooks/keys", "If-None-Match", etag)
	is.Equal(again.Code, http.StatusNotModified) // revalidation is cheap
	is.Equal(again.Body.Len(), 0)                // no body

	r := httptest.NewRequest(http.MethodPost, "http://submit.test/webhooks/keys", nil)
	post := httptest.NewRecorder()
	h.ServeHTTP(post, r)
	is.Equal(post.Code, http.StatusMethodNotAllowed) // read-only
}
