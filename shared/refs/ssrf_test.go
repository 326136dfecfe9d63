package refs

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/problem"
)

// TestSSRFCorpus fetches, with the cloud policy (no loopback), URLs that lead
// inside: each must be refused, before any connection where a server could see
// one, and without the answer naming an address the user did not write.
func TestSSRFCorpus(t *testing.T) {
	img := pngBytes(t, 2, 2, 1)
	plain, plainHits := serve(t, map[string]http.HandlerFunc{"/a.png": bytesRoute(img)})
	secure, secureHits := serveTLS(t, map[string]http.HandlerFunc{"/a.png": bytesRoute(img)})
	securePort := port(t, secure.URL)
	resolver, queries := startDNS(t, map[string]netip.Addr{
		"images.example.test": netip.MustParseAddr("127.0.0.1"),
		"meta.example.test":   netip.MustParseAddr("169.254.169.254"),
	})
	f := newTestFetcher(Options{Timeout: 2 * time.Second, Resolver: resolver})

	tests := []struct {
		name   string
		url    string
		code   problem.Code
		atDial bool   // stopped by the dial-time policy
		secret string // must not appear in the answer
	}{
		{name: "plain http to loopback", url: plain.URL + "/a.png", code: problem.RefNotAllowed},
		{name: "https to localhost", url: "https://localhost:" + securePort + "/a.png", code: problem.RefFetchFailed, atDial: true, secret: "127.0.0.1"},
		{name: "https to 127.0.0.1", url: secure.URL + "/a.png", code: problem.RefFetchFailed, atDial: true},
		{name: "https to ::1", url: "https://[::1]:" + securePort + "/a.png", code: problem.RefFetchFailed, atDial: true},
		{name: "private address", url: "https://10.0.0.1/", code: problem.RefFetchFailed, atDial: true},
		{name: "metadata server", url: "https://169.254.169.254/computeMetadata/v1/", code: problem.RefFetchFailed, atDial: true},
		{name: "metadata server over plain http", url: "http://169.254.169.254/computeMetadata/v1/", code: problem.RefNotAllowed},
		{name: "IPv4-mapped metadata server", url: "https://[::ffff:169.254.169.254]/", code: problem.RefFetchFailed, atDial: true},
		{name: "NAT64 metadata server", url: "https://[64:ff9b::a9fe:a9fe]/", code: problem.RefFetchFailed, atDial: true},
		{name: "6to4 metadata server", url: "https://[2002:a9fe:a9fe::1]/", code: problem.RefFetchFailed, atDial: true},
		{name: "CGNAT", url: "https://100.64.0.1/", code: problem.RefFetchFailed, atDial: true},
		{name: "unspecified", url: "https://0.0.0.0:" + securePort + "/a.png", code: problem.RefFetchFailed, atDial: true},
		{name: "public name resolving to loopback", url: "https://images.example.test:" + securePort + "/a.png", code: problem.RefFetchFailed, atDial: true, secret: "127.0.0.1"},
		{name: "public name resolving to the metadata server", url: "https://meta.example.test/", code: problem.RefFetchFailed, atDial: true, secret: "169.254"},
		{name: "credentials in the URL", url: "https://user:pw@images.example.test:" + securePort + "/a.png", code: problem.RefNotAllowed},
		{name: "file scheme", url: "file:///etc/passwd", code: problem.RefNotAllowed},
		{name: "ftp scheme", url: "ftp://images.example.test/a.png", code: problem.RefNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			_, err := f.Fetch(context.Background(), tt.url)
			pe := problemOf(t, err)
			is.Equal(pe.Code, tt.code)                   // code
			is.Equal(isRefused(err), tt.atDial)          // refused at dial time
			is.True(strings.Contains(pe.Detail, tt.url)) // the detail names the URL
			if tt.secret != "" {
				is.True(!strings.Contains(pe.Detail, tt.secret)) // and no address behind it
			}
		})
	}
	is := is.New(t)
	is.Equal(plainHits.conns.Load(), int32(0))  // the http server saw no connection
	is.Equal(secureHits.conns.Load(), int32(0)) // the https server saw no connection
	is.True(queries.Load() > 0)                 // the names were resolved, then refused
}

// TestRefusedWithoutConnecting shows a private destination is refused at once:
// no connection is attempted, so the short attempt timeout never comes into it.
func TestRefusedWithoutConnecting(t *testing.T) {
	is := is.New(t)
	f := newTestFetcher(Options{Timeout: 200 * time.Millisecond, Retries: -1})
	_, err := f.Fetch(context.Background(), "https://10.0.0.1/")
	is.True(isRefused(err)) // refused by the policy, not timed out
	is.Equal(problemOf(t, err).Code, problem.RefFetchFailed)
	is.True(!strings.Contains(problemOf(t, err).Detail, "timed out")) // not a timeout
}

// TestResolverUsed shows the injected resolver is the one the dialer uses, and
// that with loopback allowed a loopback name over http works.
func TestResolverUsed(t *testing.T) {
	is := is.New(t)
	img := pngBytes(t, 2, 2, 3)
	srv, _ := serve(t, map[string]http.HandlerFunc{"/a.png": bytesRoute(img)})
	resolver, queries := startDNS(t, map[string]netip.Addr{"images.example.test": netip.MustParseAddr("127.0.0.1")})
	f := newTestFetcher(Options{AllowLoopback: true, Resolver: resolver})
	got, err := f.Fetch(context.Background(), "http://images.example.test:"+port(t, srv.URL)+"/a.png")
	is.NoErr(err)                  // fetched through the injected resolver
	is.Equal(got.SHA256, sha(img)) // the right bytes
	is.True(queries.Load() > 0)    // the resolver was asked
}

// TestRedirects follows redirects from an allowed (loopback) server to places
// the policy refuses, and past the redirect cap.
func TestRedirects(t *testing.T) {
	img := pngBytes(t, 2, 2, 4)
	redirect := func(to string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, to, http.StatusFound) }
	}
	var (
		mu                        sync.Mutex
		gotUA, gotAuth, gotCookie string
	)
	routes := map[string]http.HandlerFunc{
		"/img.png":     bytesRoute(img),
		"/to-private":  redirect("http://10.0.0.1/secret.png"),
		"/to-metadata": redirect("http://169.254.169.254/computeMetadata/v1/"),
		"/to-mapped":   redirect("http://[::ffff:a9fe:a9fe]/computeMetadata/v1/"),
		"/to-gs":       redirect("gs://bucket/object.png"),
		"/to-file":     redirect("file:///etc/passwd"),
		"/to-creds": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://user:pw@"+r.Host+"/img.png", http.StatusFound)
		},
		"/chain/1": redirect("/chain/2"),
		"/chain/2": redirect("/chain/3"),
		"/chain/3": redirect("/img.png"),
		"/loop/1":  redirect("/loop/2"),
		"/loop/2":  redirect("/loop/3"),
		"/loop/3":  redirect("/loop/4"),
		"/loop/4":  redirect("/loop/5"),
		"/loop/5":  redirect("/img.png"),
		// Sets a cookie and redirects: the next hop must not get it back.
		"/check-header": func(w http.ResponseWriter, r *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "session", Value: "x"})
			http.Redirect(w, r, "/headers.png", http.StatusFound)
		},
		"/headers.png": func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			gotUA, gotAuth, gotCookie = r.UserAgent(), r.Header.Get("Authorization"), r.Header.Get("Cookie")
			mu.Unlock()
			bytesRoute(img)(w, r)
		},
	}
	srv, hits := serve(t, routes)

	f := newTestFetcher(Options{AllowLoopback: true, MaxRedirects: 3, Retries: -1})
	tests := []struct {
		path   string
		ok     bool
		atDial bool
		secret string
	}{
		{path: "/to-private", atDial: true, secret: "10.0.0.1"},
		{path: "/to-metadata", atDial: true, secret: "169.254"},
		{path: "/to-mapped", atDial: true, secret: "a9fe"},
		{path: "/to-gs", secret: "bucket"},
		{path: "/to-file", secret: "passwd"},
		{path: "/to-creds", secret: "pw"},
		{path: "/chain/1", ok: true},         // three redirects: the cap
		{path: "/loop/1", secret: "/loop/4"}, // five: over it
		{path: "/check-header", ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			is := is.New(t)
			got, err := f.Fetch(context.Background(), srv.URL+tt.path)
			if tt.ok {
				is.NoErr(err)                  // followed
				is.Equal(got.SHA256, sha(img)) // to the image
				return
			}
			pe := problemOf(t, err)
			is.Equal(pe.Code, problem.RefFetchFailed)        // refused
			is.Equal(isRefused(err), tt.atDial)              // at dial time, or by the redirect check
			is.True(!strings.Contains(pe.Detail, tt.secret)) // the target is not revealed
		})
	}
	is := is.New(t)
	mu.Lock()
	defer mu.Unlock()
	is.Equal(hits.count("/loop/4"), 1)  // MaxRedirects+1 requests...
	is.Equal(hits.count("/loop/5"), 0)  // ...and no more
	is.Equal(gotUA, "assetgen-refs/1")  // the fetcher says who it is
	is.Equal(gotAuth, "")               // no credentials sent
	is.Equal(gotCookie, "")             // no cookies carried across a redirect
	is.Equal(hits.count("/img.png"), 1) // /chain/1 reached it; /to-creds did not
}

// TestCheckRedirect covers the redirect rules without a server: with the cloud
// policy a downgrade to http is refused.
func TestCheckRedirect(t *testing.T) {
	req := func(s string) *http.Request {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return &http.Request{URL: u}
	}
	via := func(n int) []*http.Request { return make([]*http.Request, n) }
	cloud := Options{}.withDefaults()
	local := Options{AllowLoopback: true}.withDefaults()
	none := Options{MaxRedirects: -1}.withDefaults()
	tests := []struct {
		name    string
		o       Options
		to      string
		via     int
		refused bool
	}{
		{"https to https", cloud, "https://b.example/x.png", 1, false},
		{"https to http in the cloud", cloud, "http://b.example/x.png", 1, true},
		{"https to http locally", local, "http://b.example/x.png", 1, false},
		{"to gs", local, "gs://b/x.png", 1, true},
		{"to javascript", cloud, "javascript:alert(1)", 1, true},
		{"with credentials", cloud, "https://u:p@b.example/x.png", 1, true},
		{"third redirect", cloud, "https://b.example/x.png", 3, false},
		{"fourth redirect", cloud, "https://b.example/x.png", 4, true},
		{"redirects disabled", none, "https://b.example/x.png", 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			err := checkRedirect(tt.o)(req(tt.to), via(tt.via))
			is.Equal(err != nil, tt.refused) // refused?
		})
	}
}

func port(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}
