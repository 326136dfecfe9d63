package devstack_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/matryer/is"
	"google.golang.org/api/option"

	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/urls"
)

// The emulator behind the signed-URL check admits a signed PUT only as Cloud
// Storage would: with the signed headers, within the size range, over the
// generation it names, once.
func TestEmulatorChecksSignedURLs(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	key, err := urls.LoadOrCreateKey(filepath.Join(t.TempDir(), "key.pem"))
	is.NoErr(err)
	g, err := devstack.StartGCS(devstack.GCSOptions{Addr: "127.0.0.1:0", Root: t.TempDir(), Buckets: []string{"b"}, SigningKey: key})
	is.NoErr(err) // the emulator starts with the key
	t.Cleanup(func() { _ = g.Close(context.Background()) })
	sc, err := storage.NewClient(ctx, option.WithoutAuthentication(), option.WithEndpoint("http://"+g.Addr+"/storage/v1/"), storage.WithJSONReads())
	is.NoErr(err)
	t.Cleanup(func() { sc.Close() })
	signer, err := urls.New(sc.Bucket("b"), urls.Options{TTL: time.Minute, GoogleAccessID: urls.LocalAccessID, PrivateKey: key, Insecure: true})
	is.NoErr(err)

	// The placeholder the upload will replace, written by the client (unsigned requests pass).
	w := sc.Bucket("b").Object("u/1").NewWriter(ctx)
	w.ContentType = "application/octet-stream"
	is.NoErr(w.Close()) // placeholder written
	gen := strconv.FormatInt(w.Attrs().Generation, 10)
	headers := map[string]string{"X-Goog-Content-Length-Range": "0,10", "X-Goog-If-Generation-Match": gen}
	up, err := signer.SignUpload("u/1", urls.Upload{ContentType: "image/png", Headers: headers, TTL: time.Minute})
	is.NoErr(err)

	send := func(method, url string, body []byte, h map[string]string) (int, string) {
		req, err := http.NewRequest(method, url, bytes.NewReader(body))
		is.NoErr(err)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		is.NoErr(err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	withType := func(ct string) map[string]string {
		h := map[string]string{"Content-Type": ct}
		for k, v := range headers {
			h[k] = v
		}
		return h
	}
	status, body := send(http.MethodPut, up.URL, []byte("0123456789A"), withType("image/png"))
	is.Equal(status, http.StatusBadRequest)           // 11 bytes: over the range
	is.True(strings.Contains(body, "EntityTooLarge")) // named as Cloud Storage names it
	status, body = send(http.MethodPut, up.URL, []byte("png"), withType("text/html"))
	is.Equal(status, http.StatusForbidden)                   // another content type
	is.True(strings.Contains(body, "SignatureDoesNotMatch")) // breaks the signature
	status, _ = send(http.MethodPut, up.URL, []byte("png"), withType("image/png"))
	is.Equal(status, http.StatusOK) // the upload it was signed for
	status, body = send(http.MethodPut, up.URL, []byte("again"), withType("image/png"))
	is.Equal(status, http.StatusPreconditionFailed)       // the placeholder's generation is gone: once only
	is.True(strings.Contains(body, "PreconditionFailed")) // as Cloud Storage answers

	got, err := signer.Sign("u/1")
	is.NoErr(err)
	status, body = send(http.MethodGet, got.URL, nil, nil)
	is.Equal(status, http.StatusOK) // a signed GET reads it
	is.Equal(body, "png")           // the bytes of the one upload admitted
	status, _ = send(http.MethodGet, strings.Replace(got.URL, "/u/1?", "/u/2?", 1), nil, nil)
	is.Equal(status, http.StatusForbidden) // a URL signed for one object opens no other
}
