package refs

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

func safeGet(ctx context.Context, c *http.Client, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err == nil {
		_ = resp.Body.Close()
	}
	return resp, err
}

// TestSafeClientLoopback: loopback is refused at dial time unless allowed.
func TestSafeClientLoopback(t *testing.T) {
	srv, hits := serve(t, map[string]http.HandlerFunc{"/ok": bytesRoute([]byte("ok"))})
	secure, secureHits := serveTLS(t, map[string]http.HandlerFunc{"/ok": bytesRoute([]byte("ok"))})
	ctx := context.Background()

	t.Run("refused", func(t *testing.T) {
		is := is.New(t)
		c := SafeClient(false, 2*time.Second, 0)
		_, err := safeGet(ctx, c, srv.URL+"/ok")
		is.True(err != nil)     // plain http to loopback refused
		is.True(IsRefused(err)) // by the policy, before any connection
		_, err = safeGet(ctx, c, "https://127.0.0.1:"+port(t, secure.URL)+"/ok")
		is.True(IsRefused(err)) // https to loopback refused at dial time
		_, err = safeGet(ctx, c, "https://[::1]:"+port(t, secure.URL)+"/ok")
		is.True(IsRefused(err)) // IPv6 loopback too
		_, err = safeGet(ctx, c, "https://10.0.0.1/")
		is.True(IsRefused(err)) // private
		_, err = safeGet(ctx, c, "https://169.254.169.254/computeMetadata/v1/")
		is.True(IsRefused(err))               // the metadata server
		is.Equal(hits.total(), 0)             // no request reached the plain server
		is.Equal(hits.conns.Load(), int32(0)) // nor a connection
		is.Equal(secureHits.conns.Load(), int32(0))
	})

	t.Run("allowed", func(t *testing.T) {
		is := is.New(t)
		c := SafeClient(true, 2*time.Second, 0)
		resp, err := safeGet(ctx, c, srv.URL+"/ok")
		is.NoErr(err)                            // loopback allowed
		is.Equal(resp.StatusCode, http.StatusOK) // answered
		is.Equal(hits.count("/ok"), 1)           // one request
	})
}

// TestSafeClientRedirects: every hop meets the policy, and the cap holds.
func TestSafeClientRedirects(t *testing.T) {
	redirect := func(to string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, to, http.StatusFound) }
	}
	srv, hits := serve(t, map[string]http.HandlerFunc{
		"/ok":          bytesRoute([]byte("ok")),
		"/to-ok":       redirect("/ok"),
		"/to-private":  redirect("http://10.0.0.1/secret"),
		"/to-metadata": redirect("http://169.254.169.254/computeMetadata/v1/"),
		"/to-file":     redirect("file:///etc/passwd"),
	})
	ctx := context.Background()

	tests := []struct {
		name      string
		redirects int
		path      string
		ok        bool
		refused   bool // by the dial-time policy
	}{
		{name: "followed", redirects: 3, path: "/to-ok", ok: true},
		{name: "to a private address", redirects: 3, path: "/to-private", refused: true},
		{name: "to the metadata server", redirects: 3, path: "/to-metadata", refused: true},
		{name: "to another scheme", redirects: 3, path: "/to-file"},
		{name: "not followed when disabled", redirects: 0, path: "/to-ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			c := SafeClient(true, 2*time.Second, tt.redirects)
			resp, err := safeGet(ctx, c, srv.URL+tt.path)
			if tt.ok {
				is.NoErr(err)                            // followed
				is.Equal(resp.StatusCode, http.StatusOK) // to the target
				return
			}
			is.True(err != nil)                  // refused
			is.Equal(IsRefused(err), tt.refused) // at dial time, or by the redirect check
			var re *redirectError
			is.Equal(errors.As(err, &re), !tt.refused) // else by the redirect check
		})
	}
	is := is.New(t)
	is.Equal(hits.count("/ok"), 1) // only the followed redirect reached it
}

// TestSafeClientScheme: with the cloud policy only https leaves, even to a
// public address; the error says so without a connection.
func TestSafeClientScheme(t *testing.T) {
	is := is.New(t)
	c := SafeClient(false, time.Second, 0)
	_, err := safeGet(context.Background(), c, "http://93.184.215.14/")
	is.True(IsRefused(err))                             // http refused before dialling
	is.True(strings.Contains(err.Error(), "non-https")) // and why
	is.Equal(c.Jar, nil)                                // no cookies kept
	is.Equal(c.Timeout, time.Second)                    // the bound
	is.Equal(SafeClient(false, 0, 0).Timeout, DefaultTimeout)
}

func TestCheckAddr(t *testing.T) {
	tests := []struct {
		ip       string
		loopback bool
		ok       bool
	}{
		{"93.184.215.14", false, true},
		{"2606:4700::1111", false, true},
		{"127.0.0.1", false, false},
		{"127.0.0.1", true, true},
		{"::1", true, true},
		{"10.1.2.3", true, false},
		{"169.254.169.254", false, false},
		{"::ffff:169.254.169.254", false, false},
		{"100.64.0.1", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			is := is.New(t)
			err := CheckAddr(netip.MustParseAddr(tt.ip), tt.loopback)
			is.Equal(err == nil, tt.ok) // allowed?
		})
	}
}
