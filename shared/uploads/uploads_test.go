package uploads_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/devstack/stacktest"
	"github.com/assetgen/assetgen/shared/problem"
	"github.com/assetgen/assetgen/shared/uploads"
)

func TestDecode(t *testing.T) {
	const max = 10 << 20
	tests := []struct {
		name   string
		body   string
		code   problem.Code
		fields []string // field:code of every error
	}{
		{"png", `{"contentType":"image/png","size":1234}`, "", nil},
		{"webp at the cap with a digest", `{"contentType":"image/webp","size":10485760,"sha256":"` + strings.Repeat("ab", 32) + `"}`, "", nil},
		{"not JSON", `{"contentType":`, problem.MalformedJSON, nil},
		{"empty", ``, problem.MalformedJSON, nil},
		{"an array", `[1]`, problem.MalformedJSON, nil},
		{"two values", `{"contentType":"image/png","size":1}{}`, problem.MalformedJSON, nil},
		{"nothing", `{}`, problem.ValidationFailed, []string{"/contentType:REQUIRED", "/size:REQUIRED"}},
		{"gif", `{"contentType":"image/gif","size":1}`, problem.ValidationFailed, []string{"/contentType:UNKNOWN_VALUE"}},
		{"html", `{"contentType":"text/html","size":1}`, problem.ValidationFailed, []string{"/contentType:UNKNOWN_VALUE"}},
		{"null type", `{"contentType":null,"size":1}`, problem.ValidationFailed, []string{"/contentType:REQUIRED"}},
		{"zero size", `{"contentType":"image/png","size":0}`, problem.ValidationFailed, []string{"/size:OUT_OF_RANGE"}},
		{"negative size", `{"contentType":"image/png","size":-5}`, problem.ValidationFailed, []string{"/size:OUT_OF_RANGE"}},
		{"size as text", `{"contentType":"image/png","size":"12"}`, problem.ValidationFailed, []string{"/size:INVALID_TYPE"}},
		{"fractional size", `{"contentType":"image/png","size":1.5}`, problem.ValidationFailed, []string{"/size:INVALID_TYPE"}},
		{"bad digest", `{"contentType":"image/png","size":1,"sha256":"XYZ"}`, problem.ValidationFailed, []string{"/sha256:INVALID_VALUE"}},
		{"upper-case digest", `{"contentType":"image/png","size":1,"sha256":"` + strings.Repeat("AB", 32) + `"}`, problem.ValidationFailed, []string{"/sha256:INVALID_VALUE"}},
		{"unknown field", `{"contentType":"image/png","size":1,"name":"cat.png"}`, problem.ValidationFailed, []string{"/name:UNKNOWN_FIELD"}},
		{"every error at once", `{"contentType":"x","size":0,"a/b":1}`, problem.ValidationFailed, []string{"/a~1b:UNKNOWN_FIELD", "/contentType:UNKNOWN_VALUE", "/size:OUT_OF_RANGE"}},
		{"one byte over the cap", `{"contentType":"image/png","size":10485761}`, problem.PayloadTooLarge, []string{"/size:OUT_OF_RANGE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			_, err := uploads.Decode([]byte(tt.body), max)
			is.Equal(problem.CodeOf(err), tt.code) // the answer's code
			var pe *problem.Error
			var got []string
			if errors.As(err, &pe) {
				for _, f := range pe.Fields {
					got = append(got, f.Field+":"+f.Code)
				}
			}
			slices.Sort(got)
			is.Equal(got, tt.fields) // every bad field, each once
		})
	}
}

func TestParse(t *testing.T) {
	is := is.New(t)
	prefix := uploads.UserPrefix("alice")
	is.True(strings.HasPrefix(prefix, "uploads/") && len(prefix) == len("uploads/")+33) // a hashed key per user
	is.True(prefix != uploads.UserPrefix("alice2"))                                     // users do not share a prefix
	good := prefix + "20250102T030405.006Z-" + strings.Repeat("0f", 16)
	n, ok := uploads.Parse(good)
	is.True(ok)
	is.Equal(n.Prefix, prefix)
	is.Equal(n.Issued, time.Date(2025, 1, 2, 3, 4, 5, 6e6, time.UTC)) // the issue time is in the name
	for _, bad := range []string{
		"refs/" + strings.TrimPrefix(good, "uploads/"),
		prefix + "20250102T030405.006Z",
		prefix + "20250102T030405.006Z-" + strings.Repeat("0f", 15),
		prefix + "2025-01-02-" + strings.Repeat("0f", 16),
		"uploads/short/20250102T030405.006Z-" + strings.Repeat("0f", 16),
		prefix + "20250102T030405.006Z-" + strings.Repeat("0f", 16) + "/more",
	} {
		_, ok := uploads.Parse(bad)
		is.True(!ok) // not an upload's name
	}
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// putImage makes the PUT an upload's answer describes.
func putImage(t *testing.T, up api.Upload, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(up.Method, up.UploadURL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range up.Headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestIssueAndCheck(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	c := stacktest.Open(t, nil)
	clk := &clock{t: time.Now().UTC()}
	u := uploads.New(c.Bucket, c.Signer, uploads.Options{MaxBytes: 10 << 20, Now: clk.now})
	digest := strings.Repeat("ab", 32)

	up, err := u.Issue(ctx, "alice", api.UploadRequest{ContentType: "image/png", Size: 5, SHA256: digest})
	is.NoErr(err) // issued
	is.Equal(up.Method, "PUT")
	is.True(strings.HasPrefix(up.Ref, "gs://"+stacktest.TestBucket+"/"+uploads.UserPrefix("alice"))) // under alice's prefix
	is.Equal(up.Headers["Content-Type"], "image/png")
	is.Equal(up.Headers["x-goog-content-length-range"], "0,5") // at most the declared size
	is.Equal(up.Headers["x-goog-meta-sha256"], digest)         // the declared digest travels with it
	is.True(up.Headers["x-goog-if-generation-match"] != "")    // it replaces the placeholder only
	is.True(!up.ExpiresAt.After(clk.now().Add(uploads.URLTTL)) && up.ExpiresAt.After(clk.now().Add(uploads.URLTTL-2*time.Second)))
	is.Equal(up.DeleteAfter, clk.now().Add(uploads.Lifetime).Truncate(time.Millisecond)) // usable for a day

	_, err = u.Check(ctx, "alice", up.Ref)
	is.Equal(problem.CodeOf(err), problem.RefFetchFailed)               // not PUT yet
	is.True(strings.Contains(err.Error(), "has not been uploaded yet")) // and it says so
	is.Equal(putImage(t, up, []byte("image")), http.StatusOK)           // the PUT
	got, err := u.Check(ctx, "alice", up.Ref)
	is.NoErr(err)                // now it is usable by its owner
	is.Equal(got.SHA256, digest) // with the digest its content must have

	_, err = u.Check(ctx, "bob", up.Ref)
	is.Equal(problem.CodeOf(err), problem.RefNotAllowed) // by nobody else
	unknown := up.Ref[:strings.LastIndex(up.Ref, "-")+1] + strings.Repeat("0", 32)
	_, err = u.Check(ctx, "alice", unknown)
	is.Equal(problem.CodeOf(err), problem.RefFetchFailed) // an id never issued
	for _, other := range []string{
		"gs://" + stacktest.TestBucket + "/refs/abc",
		"gs://elsewhere/" + strings.TrimPrefix(up.Ref, "gs://"+stacktest.TestBucket+"/"),
	} {
		_, err = u.Check(ctx, "alice", other)
		is.Equal(problem.CodeOf(err), problem.RefNotAllowed) // anything but an upload
	}
	clk.add(uploads.Lifetime)
	_, err = u.Check(ctx, "alice", up.Ref)
	is.Equal(problem.CodeOf(err), problem.RefFetchFailed) // a day later it has expired
}

func TestQuotaCountsTheLastDay(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	c := stacktest.Open(t, nil)
	clk := &clock{t: time.Now().UTC()}
	u := uploads.New(c.Bucket, c.Signer, uploads.Options{PerDay: 3, MaxBytes: 1 << 20, Now: clk.now})
	req := api.UploadRequest{ContentType: "image/jpeg", Size: 10}
	for i := range 3 {
		_, err := u.Issue(ctx, "alice", req)
		is.NoErr(err) // within the quota, PUT or not
		if i == 0 {
			clk.add(time.Hour)
		}
	}
	_, err := u.Issue(ctx, "alice", req)
	var pe *problem.Error
	is.True(errors.As(err, &pe))
	is.Equal(pe.Code, problem.RateLimited)                   // the fourth of the day is refused
	is.Equal(pe.RetryAfter, int((23 * time.Hour).Seconds())) // until the first leaves the window
	_, err = u.Issue(ctx, "bob", req)
	is.NoErr(err) // another user's quota is their own

	clk.add(23 * time.Hour)
	_, err = u.Issue(ctx, "alice", req)
	is.NoErr(err) // a day after the first, its place is free
	_, err = u.Issue(ctx, "alice", req)
	is.Equal(problem.CodeOf(err), problem.RateLimited) // and only its place
}
