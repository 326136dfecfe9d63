package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/client"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/problem"
)

// uploadStack is a local stack whose users alice, bob and carol sign in with
// API keys, whose references may come from loopback, and whose users may
// start quota uploads a day.
func uploadStack(t *testing.T, quota int) (*app, map[string]*client.Client, *devstack.Faults) {
	t.Helper()
	faults := devstack.NewFaults(1)
	a := startApp(t, map[string]string{
		"AUTH_MODE": "apikey", "CONFIG_TTL": "0", "REFS_ALLOW_LOOPBACK": "true", "UPLOADS_PER_USER_PER_DAY": strconv.Itoa(quota),
	}, faults)
	keys := map[string]any{}
	users := map[string]*client.Client{}
	for _, u := range []string{"alice", "bob", "carol"} {
		keys[auth.HashKey("ak_"+u)] = map[string]string{"user": u}
		c := client.New(a.base)
		c.Token = "ak_" + u
		users[u] = c
	}
	putJSON(t, a, layout.APIKeysObject, map[string]any{"keys": keys})
	return a, users, faults
}

// problemOf is the problem document of a refused API call.
func problemOf(t *testing.T, err error) (int, problem.Document) {
	t.Helper()
	var pe *client.ProblemError
	if !errors.As(err, &pe) {
		t.Fatalf("want a problem document, got %v", err)
	}
	return pe.Status, pe.Doc
}

func fieldsOf(doc problem.Document) []string {
	var out []string
	for _, f := range doc.Errors {
		out = append(out, f.Field+":"+f.Code)
	}
	return out
}

// An image uploaded through the Go client is a reference of its owner's
// batches: stored by content like a fetched one (the same image fetched by
// URL in another row is the same object), and read by generate from there.
// Nobody else may name it, and an upload not PUT yet, or never issued, is
// refused at submit where it was written.
func TestUploadedReferenceEndToEnd(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, users, _ := uploadStack(t, 10)
	alice, bob := users["alice"], users["bob"]
	ctx := deadline(t, 60*time.Second)
	img := pngOf(t, 77)
	sum := sha256.Sum256(img)
	digest := hex.EncodeToString(sum[:])
	srv := refServer(t, map[string][]byte{"/same.png": img})

	ref, err := alice.Upload(ctx, "image/png", bytes.NewReader(img), int64(len(img)))
	is.NoErr(err) // uploaded through the signed URL
	is.True(strings.HasPrefix(ref, "gs://"+a.cfg.Bucket+"/uploads/"))

	one := 1
	sub, err := alice.Submit(ctx, batch.Request{RunMode: "dry_run", Rows: []batch.RowRequest{
		{Prompt: "from the upload", Variants: &one, Refs: []string{ref}},
		{Prompt: "from a URL", Variants: &one, Refs: []string{srv.URL + "/same.png"}},
	}}, "")
	is.NoErr(err) // the owner's batch names the upload
	is.Equal(sub.Rows[0].Refs, 1)
	is.Equal(sub.Rows[1].Refs, 1)
	m, err := a.platform.Ledger.Manifest(ctx, sub.BatchID)
	is.NoErr(err)
	want := ledger.Ref{URL: ref, SHA256: digest, Object: ledger.RefObject(digest), MIMEType: "image/png"}
	is.Equal(m.Rows[0].Refs, []ledger.Ref{want})                // the upload is stored by its SHA-256
	is.Equal(m.Rows[1].Refs[0].Object, want.Object)             // the same image fetched by URL is the same object
	is.Equal(objects(t, a, layout.Refs), []string{want.Object}) // stored once
	is.Equal(len(objects(t, a, layout.Staging)), 0)             // nothing left staged
	_, _, done := readToDone(t, openStream(t, sub.ProgressURL, ""))
	is.Equal(done.Status, "done") // generate read the stored references

	// Bob names alice's upload: refused where he wrote it, nothing recorded.
	_, err = bob.Submit(ctx, batch.Request{RunMode: "dry_run", Refs: []string{ref}, Rows: []batch.RowRequest{{Prompt: "theirs"}}}, "")
	status, doc := problemOf(t, err)
	is.Equal(status, http.StatusBadRequest)                      // another user's upload
	is.Equal(doc.Code, problem.RefNotAllowed)                    // is not allowed
	is.Equal(fieldsOf(doc), []string{"/refs/0:REF_NOT_ALLOWED"}) // named where it was written
	is.True(strings.Contains(doc.Errors[0].Detail, "not one of your uploads"))

	pending, err := alice.NewUpload(ctx, api.UploadRequest{ContentType: "image/png", Size: int64(len(img))})
	is.NoErr(err)
	never := ref[:strings.LastIndex(ref, "-")+1] + strings.Repeat("0", 32)
	_, err = alice.Submit(ctx, batch.Request{RunMode: "dry_run", Rows: []batch.RowRequest{
		{Prompt: "fine", Refs: []string{ref}},
		{Prompt: "not yet", Refs: []string{pending.Ref, never}},
	}}, "")
	status, doc = problemOf(t, err)
	is.Equal(status, http.StatusUnprocessableEntity) // an upload not PUT, one never issued
	is.Equal(doc.Code, problem.RefFetchFailed)
	is.Equal(fieldsOf(doc), []string{"/rows/1/refs/0:REF_FETCH_FAILED", "/rows/1/refs/1:REF_FETCH_FAILED"}) // each named, not a failed row
	is.True(strings.Contains(doc.Errors[0].Detail, "has not been uploaded yet"))

	_, err = alice.Submit(ctx, batch.Request{RunMode: "dry_run", Rows: []batch.RowRequest{{Prompt: "x", Refs: []string{"gs://" + a.cfg.Bucket + "/" + want.Object}}}}, "")
	status, doc = problemOf(t, err)
	is.Equal(status, http.StatusBadRequest)                             // any other path of the platform's bucket
	is.Equal(fieldsOf(doc), []string{"/rows/0/refs/0:REF_NOT_ALLOWED"}) // is refused too

	manifests := 0
	for _, name := range objects(t, a, layout.Batches) {
		if strings.HasSuffix(name, "/manifest.json") {
			manifests++
		}
	}
	is.Equal(manifests, 1) // only the first batch was recorded
}

// The signed URL is what the answer says: bound to its content type, size
// and placeholder, valid for 15 minutes, and the emulator holds the PUT to
// those bounds as Cloud Storage does. A declared SHA-256 is checked when the
// upload is used.
func TestUploadURLBindsTypeSizeAndOnePut(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, users, _ := uploadStack(t, 10)
	alice := users["alice"]
	ctx := deadline(t, 60*time.Second)
	img := pngOf(t, 5)

	before := time.Now()
	up, err := alice.NewUpload(ctx, api.UploadRequest{ContentType: "image/png", Size: int64(len(img))})
	is.NoErr(err)
	u, err := url.Parse(up.UploadURL)
	is.NoErr(err)
	q := u.Query()
	is.Equal(up.Method, "PUT")
	is.Equal(q.Get("X-Goog-SignedHeaders"), "content-type;host;x-goog-content-length-range;x-goog-if-generation-match") // type, size and placeholder are signed
	is.Equal(up.Headers["x-goog-content-length-range"], "0,"+strconv.Itoa(len(img)))
	secs, _ := strconv.Atoi(q.Get("X-Goog-Expires"))
	is.True(secs > 14*60 && secs <= 15*60)                                                                            // the URL lives 15 minutes
	is.True(up.ExpiresAt.After(before.Add(14*time.Minute)) && !up.ExpiresAt.After(time.Now().Add(15*time.Minute)))    // and says so
	is.True(up.DeleteAfter.Sub(before) >= 24*time.Hour-time.Second && up.DeleteAfter.Sub(time.Now()) <= 24*time.Hour) // the upload lives a day

	refused := func(err error) int {
		var ue *client.UploadError
		is.True(errors.As(err, &ue)) // storage refused the PUT
		return ue.Status
	}
	tooBig := append(bytes.Clone(img), 0)
	is.Equal(refused(alice.PutUpload(ctx, up, bytes.NewReader(tooBig), int64(len(tooBig)))), http.StatusBadRequest) // a byte over the declared size
	asJPEG := up
	asJPEG.Headers = map[string]string{}
	for k, v := range up.Headers {
		asJPEG.Headers[k] = v
	}
	asJPEG.Headers["Content-Type"] = "image/jpeg"
	is.Equal(refused(alice.PutUpload(ctx, asJPEG, bytes.NewReader(img), int64(len(img)))), http.StatusForbidden)      // another content type breaks the signature
	is.NoErr(alice.PutUpload(ctx, up, bytes.NewReader(img), int64(len(img))))                                         // the PUT it was made for
	is.Equal(refused(alice.PutUpload(ctx, up, bytes.NewReader(img), int64(len(img)))), http.StatusPreconditionFailed) // once only

	// A declared digest the content does not match refuses the batch.
	wrong := strings.Repeat("ab", 32)
	up2, err := alice.NewUpload(ctx, api.UploadRequest{ContentType: "image/png", Size: int64(len(img)), SHA256: wrong})
	is.NoErr(err)
	is.Equal(up2.Headers["x-goog-meta-sha256"], wrong) // the digest is bound to the PUT
	is.NoErr(alice.PutUpload(ctx, up2, bytes.NewReader(img), int64(len(img))))
	_, err = alice.Submit(ctx, batch.Request{RunMode: "dry_run", Rows: []batch.RowRequest{{Prompt: "x", Refs: []string{up2.Ref}}}}, "")
	status, doc := problemOf(t, err)
	is.Equal(status, http.StatusUnprocessableEntity)
	is.Equal(fieldsOf(doc), []string{"/rows/0/refs/0:REF_FETCH_FAILED"}) // the content is not what was declared
	is.True(strings.Contains(doc.Errors[0].Detail, "does not hash to the SHA-256 declared"))
	is.Equal(len(objects(t, a, layout.Refs))+len(objects(t, a, layout.Staging)), 0) // and nothing of it is kept

	sum := sha256.Sum256(img)
	up3, err := alice.NewUpload(ctx, api.UploadRequest{ContentType: "image/png", Size: int64(len(img)), SHA256: hex.EncodeToString(sum[:])})
	is.NoErr(err)
	is.NoErr(alice.PutUpload(ctx, up3, bytes.NewReader(img), int64(len(img))))
	_, err = alice.Submit(ctx, batch.Request{RunMode: "dry_run", Rows: []batch.RowRequest{{Prompt: "x", Refs: []string{up3.Ref}}}}, "")
	is.NoErr(err) // the right digest passes
}

// POST /uploads refuses what references could not be, and each user's
// uploads of the day are capped.
func TestUploadRequestsAreBounded(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, users, faults := uploadStack(t, 3)
	carol := users["carol"]
	ctx := deadline(t, 60*time.Second)

	cases := []struct {
		req    api.UploadRequest
		status int
		fields []string
	}{
		{api.UploadRequest{ContentType: "image/gif", Size: 10}, http.StatusBadRequest, []string{"/contentType:UNKNOWN_VALUE"}},
		{api.UploadRequest{ContentType: "text/html", Size: 0}, http.StatusBadRequest, []string{"/contentType:UNKNOWN_VALUE", "/size:OUT_OF_RANGE"}},
		{api.UploadRequest{ContentType: "image/png", Size: 10<<20 + 1}, http.StatusRequestEntityTooLarge, []string{"/size:OUT_OF_RANGE"}},
	}
	for _, c := range cases {
		_, err := carol.NewUpload(ctx, c.req)
		status, doc := problemOf(t, err)
		is.Equal(status, c.status)        // refused with its status
		is.Equal(fieldsOf(doc), c.fields) // naming each bad field
	}
	unknown := post(t, a.base+"/uploads", `{"contentType":"image/png","size":1,"filename":"x.png"}`, map[string]string{"Authorization": "Bearer ak_carol"})
	is.Equal(unknown.status, http.StatusBadRequest) // unknown fields are refused
	anonymous := post(t, a.base+"/uploads", `{"contentType":"image/png","size":1}`, nil)
	is.Equal(anonymous.status, http.StatusUnauthorized) // uploads need a signed-in user
	is.Equal(len(objects(t, a, layout.Uploads)), 0)     // nothing refused was issued

	for i := range 3 {
		faults.Reset()
		_, err := carol.NewUpload(ctx, api.UploadRequest{ContentType: "image/webp", Size: 100})
		is.NoErr(err) // within the day's quota, PUT or not
		if i == 2 {
			c := faults.Counts()
			is.Equal(c.Lists, int64(1))  // an upload costs one listing of the user's prefix
			is.Equal(c.Writes, int64(1)) // and one write, its placeholder
		}
	}
	over := post(t, a.base+"/uploads", `{"contentType":"image/webp","size":100}`, map[string]string{"Authorization": "Bearer ak_carol"})
	is.Equal(over.status, http.StatusTooManyRequests) // the fourth of the day
	is.Equal(over.str("code"), "RATE_LIMITED")
	wait, err := strconv.Atoi(over.header.Get("Retry-After"))
	is.NoErr(err)                               // says when to retry
	is.True(wait > 23*3600 && wait <= 24*3600)  // when the first leaves the day's window
	is.Equal(over.doc["maxUploadsPerDay"], 3.0) // and the quota
	_, err = users["bob"].NewUpload(ctx, api.UploadRequest{ContentType: "image/webp", Size: 100})
	is.NoErr(err) // another user's quota is their own
}
