package urls_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
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

// signer signs for bucket "b" of an emulator host (nothing is dialled: V4
// signing is offline with a local key) and returns the key's public half.
func signer(t *testing.T, keyFile string) (*urls.Signer, []byte) {
	t.Helper()
	key, err := urls.LoadOrCreateKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := storage.NewClient(context.Background(), option.WithoutAuthentication(), option.WithEndpoint("http://127.0.0.1:4443/storage/v1/"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	s, err := urls.New(sc.Bucket("b"), urls.Options{TTL: time.Hour, GoogleAccessID: urls.LocalAccessID, PrivateKey: key, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	return s, key
}

// put is the request a client makes with a signed upload URL.
func put(t *testing.T, rawURL string, size int64, headers map[string]string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodPut, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Host = r.URL.Host
	r.ContentLength = size
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return r
}

func refusal(err error) string {
	var se *devstack.SignedURLError
	if errors.As(err, &se) {
		return se.Code
	}
	return ""
}

// An upload URL binds its content type, its headers (the size range, the
// generation it may replace), its object and method, and expires after its
// TTL: each is checked here by verifying the signature as Cloud Storage does.
func TestSignUploadBindsWhatItSigns(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	s, key := signer(t, filepath.Join(dir, "key.pem"))
	pub, err := devstack.PublicKeyOf(key)
	is.NoErr(err) // the local key's public half

	before := time.Now()
	bound := map[string]string{"x-goog-content-length-range": "0,100", "x-goog-if-generation-match": "7"}
	signed, err := s.SignUpload("uploads/u1/id1", urls.Upload{ContentType: "image/png", Headers: bound, TTL: 15 * time.Minute})
	is.NoErr(err) // signed
	u, err := url.Parse(signed.URL)
	is.NoErr(err)
	q := u.Query()
	is.Equal(u.Path, "/b/uploads/u1/id1")                                                                               // path style, the object itself
	is.Equal(q.Get("X-Goog-SignedHeaders"), "content-type;host;x-goog-content-length-range;x-goog-if-generation-match") // every bound header is signed
	secs, _ := strconv.Atoi(q.Get("X-Goog-Expires"))
	is.True(secs > 14*60 && secs <= 15*60)                                    // valid for 15 minutes
	is.True(!signed.Expires.Before(before.Add(15*time.Minute - time.Second))) // and says so
	is.True(!signed.Expires.After(time.Now().Add(15 * time.Minute)))

	headers := map[string]string{"Content-Type": "image/png", "X-Goog-Content-Length-Range": "0,100", "X-Goog-If-Generation-Match": "7"}
	is.NoErr(devstack.VerifySignedURL(put(t, signed.URL, 100, headers), pub, time.Now())) // the PUT it was made for is admitted

	with := func(k, v string) map[string]string {
		h := map[string]string{}
		for hk, hv := range headers {
			h[hk] = hv
		}
		if v == "" {
			delete(h, k)
		} else {
			h[k] = v
		}
		return h
	}
	other, _ := signer(t, filepath.Join(dir, "other.pem"))
	forged, err := other.SignUpload("uploads/u1/id1", urls.Upload{ContentType: "image/png", Headers: bound, TTL: 15 * time.Minute})
	is.NoErr(err)
	cases := []struct {
		name string
		req  *http.Request
		at   time.Time
		want string
	}{
		{"another content type", put(t, signed.URL, 100, with("Content-Type", "text/html")), time.Now(), "SignatureDoesNotMatch"},
		{"a wider size range", put(t, signed.URL, 100, with("X-Goog-Content-Length-Range", "0,1000000000")), time.Now(), "SignatureDoesNotMatch"},
		{"no size range", put(t, signed.URL, 100, with("X-Goog-Content-Length-Range", "")), time.Now(), "SignatureDoesNotMatch"},
		{"another generation", put(t, signed.URL, 100, with("X-Goog-If-Generation-Match", "8")), time.Now(), "SignatureDoesNotMatch"},
		{"another object", put(t, strings.Replace(signed.URL, "/id1?", "/id2?", 1), 100, headers), time.Now(), "SignatureDoesNotMatch"},
		{"another user's prefix", put(t, strings.Replace(signed.URL, "/u1/", "/u2/", 1), 100, headers), time.Now(), "SignatureDoesNotMatch"},
		{"a longer life", put(t, strings.Replace(signed.URL, "X-Goog-Expires="+q.Get("X-Goog-Expires"), "X-Goog-Expires=604800", 1), 100, headers), time.Now(), "SignatureDoesNotMatch"},
		{"another key", put(t, forged.URL, 100, headers), time.Now(), "SignatureDoesNotMatch"},
		{"more bytes than the range", put(t, signed.URL, 101, headers), time.Now(), "EntityTooLarge"},
		{"after the TTL", put(t, signed.URL, 100, headers), before.Add(15*time.Minute + 2*time.Second), "ExpiredToken"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			is.Equal(refusal(devstack.VerifySignedURL(c.req, pub, c.at)), c.want) // refused as Cloud Storage refuses it
		})
	}
	get := put(t, signed.URL, 0, headers)
	get.Method = http.MethodGet
	is.Equal(refusal(devstack.VerifySignedURL(get, pub, time.Now())), "SignatureDoesNotMatch") // a PUT URL does not read the object

	_, err = s.SignUpload("x", urls.Upload{ContentType: "image/png", TTL: 8 * 24 * time.Hour})
	is.True(err != nil) // V4 allows at most 7 days
}

// GET URLs sign the same way and verify the same way.
func TestSignedGetVerifies(t *testing.T) {
	is := is.New(t)
	s, key := signer(t, filepath.Join(t.TempDir(), "key.pem"))
	pub, err := devstack.PublicKeyOf(key)
	is.NoErr(err)
	signed, err := s.Sign("batches/x/images/r00-v0.png")
	is.NoErr(err)
	r, err := http.NewRequest(http.MethodGet, signed.URL, nil)
	is.NoErr(err)
	r.Host = r.URL.Host
	is.NoErr(devstack.VerifySignedURL(r, pub, time.Now()))                                                 // a GET URL reads
	is.Equal(refusal(devstack.VerifySignedURL(r, pub, signed.Expires.Add(2*time.Second))), "ExpiredToken") // until it expires
}

// The signer parses its key once, when it is made: an unusable key is refused
// there, and a URL is the one the storage client signs with the key itself.
func TestSignerParsesItsKeyOnce(t *testing.T) {
	is := is.New(t)
	key, err := urls.LoadOrCreateKey(filepath.Join(t.TempDir(), "key.pem"))
	is.NoErr(err)
	sc, err := storage.NewClient(context.Background(), option.WithoutAuthentication(), option.WithEndpoint("http://127.0.0.1:4443/storage/v1/"))
	is.NoErr(err)
	t.Cleanup(func() { sc.Close() })
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	o := urls.Options{TTL: time.Hour, GoogleAccessID: urls.LocalAccessID, PrivateKey: key, Insecure: true, Now: func() time.Time { return at }}

	s, err := urls.New(sc.Bucket("b"), o)
	is.NoErr(err)
	got, err := s.Sign("batches/x/images/r00-v0.png")
	is.NoErr(err)
	want, err := sc.Bucket("b").SignedURL("batches/x/images/r00-v0.png", &storage.SignedURLOptions{
		Scheme: storage.SigningSchemeV4, Method: "GET", GoogleAccessID: urls.LocalAccessID,
		PrivateKey: key, Insecure: true, Expires: at.Add(time.Hour),
	})
	is.NoErr(err)
	is.Equal(got.URL, want) // the same URL, signature included

	o.PrivateKey = []byte("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
	_, err = urls.New(sc.Bucket("b"), o)
	is.True(err != nil) // refused when the signer is made, not at each URL
}
