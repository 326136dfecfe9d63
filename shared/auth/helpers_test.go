package auth_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/problem"
)

// t0 is the instant every test clock starts at.
var t0 = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

const (
	testAudience = "assetgen-client-id.apps.googleusercontent.com"
	googleIssuer = "https://accounts.google.com"
	testSubject  = "110169484474386276334"
)

// clock is a test clock that several goroutines may read.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// RSA keys are slow to make, so the test binary makes three, once.
var testKeys = sync.OnceValue(func() [3]*rsa.PrivateKey {
	var out [3]*rsa.PrivateKey
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			out[i] = k
		})
	}
	wg.Wait()
	return out
})

func keyA() *rsa.PrivateKey    { return testKeys()[0] }
func keyB() *rsa.PrivateKey    { return testKeys()[1] }
func keyEvil() *rsa.PrivateKey { return testKeys()[2] }

// publicJWK is how a key server publishes key with kid.
func publicJWK(key *rsa.PrivateKey, kid string) jose.JSONWebKey {
	return jose.JSONWebKey{Key: &key.PublicKey, KeyID: kid, Algorithm: string(jose.RS256), Use: "sig"}
}

// jwksServer is a local key server: it serves a swappable key set with a
// Cache-Control header, or fails, and counts the requests.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int64

	mu           sync.Mutex
	keys         []jose.JSONWebKey
	cacheControl string
	status       int
	body         string // served as is when not empty
}

func newJWKS(t *testing.T, keys ...jose.JSONWebKey) *jwksServer {
	t.Helper()
	s := &jwksServer{keys: keys, cacheControl: "public, max-age=3600", status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.cacheControl != "" {
			w.Header().Set("Cache-Control", s.cacheControl)
		}
		w.Header().Set("Content-Type", "application/json")
		if s.status != http.StatusOK {
			http.Error(w, "key server down", s.status)
			return
		}
		if s.body != "" {
			_, _ = w.Write([]byte(s.body))
			return
		}
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: s.keys})
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) Serve(keys ...jose.JSONWebKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys, s.status, s.body = keys, http.StatusOK, ""
}

func (s *jwksServer) SetCacheControl(cc string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cacheControl = cc
}

func (s *jwksServer) Fail(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = status
}

func (s *jwksServer) ServeBody(body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = http.StatusOK, body
}

func (s *jwksServer) Hits() int { return int(s.hits.Load()) }

// testAllow admits the e-mail of claims().
var testAllow = []string{"someone@example.com"}

// newGoogle returns a verifier that reads keys from servers on the test clock,
// with a minute of leeway, admitting testAllow.
func newGoogle(t *testing.T, clk *clock, issuers []string, servers ...*jwksServer) *auth.Google {
	t.Helper()
	allow, err := auth.ParseAllow(testAllow)
	if err != nil {
		t.Fatal(err)
	}
	o := auth.GoogleOptions{
		Allow:      allow,
		Audiences:  []string{testAudience},
		Issuers:    issuers,
		Leeway:     time.Minute,
		Now:        clk.Now,
		HTTPClient: servers[0].Client(),
	}
	for _, s := range servers {
		o.JWKSURLs = append(o.JWKSURLs, s.URL)
	}
	g, err := auth.NewGoogle(o)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// claims are valid Google ID-token claims at t0, changed by mods.
func claims(mods ...func(*auth.Claims)) auth.Claims {
	c := auth.Claims{
		Claims: jwt.Claims{
			Issuer:   googleIssuer,
			Subject:  testSubject,
			Audience: jwt.Audience{testAudience},
			Expiry:   jwt.NewNumericDate(t0.Add(time.Hour)),
			IssuedAt: jwt.NewNumericDate(t0),
		},
		Email:         "someone@example.com",
		EmailVerified: true,
	}
	for _, m := range mods {
		m(&c)
	}
	return c
}

// sign mints a compact JWT over c with key and alg; kid "" leaves the header out.
func sign(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, c any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// mint is an RS256 token.
func mint(t *testing.T, key *rsa.PrivateKey, kid string, c any) string {
	t.Helper()
	return sign(t, jose.RS256, key, kid, c)
}

// unsigned hand-builds an "alg": "none" token: header.payload. with no signature.
func unsigned(t *testing.T, kid string, c any) string {
	t.Helper()
	h, err := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": kid})
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

// problemDoc is what a client reads from a problem answer.
type problemDoc struct {
	Type   string       `json:"type"`
	Status int          `json:"status"`
	Code   problem.Code `json:"code"`
	Detail string       `json:"detail"`
}

// wantProblem asserts rec holds a problem+json answer with code (and its status).
func wantProblem(t *testing.T, rec *httptest.ResponseRecorder, code problem.Code) problemDoc {
	t.Helper()
	is := is.New(t)
	is.Helper()
	status := problem.Lookup(code).Status
	is.Equal(rec.Code, status)                                      // status of the code
	is.Equal(rec.Header().Get("Content-Type"), problem.ContentType) // a problem document
	var doc problemDoc
	is.NoErr(json.Unmarshal(rec.Body.Bytes(), &doc)) // the body is JSON
	is.Equal(doc.Code, code)                         // the code in the body
	is.Equal(doc.Status, status)                     // the status in the body
	return doc
}

// wantCode asserts err is a problem with code.
func wantCode(t *testing.T, err error, code problem.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("want a %s error, got none", code)
	}
	if got := problem.CodeOf(err); got != code {
		t.Fatalf("want a %s error, got %s (%v)", code, got, err)
	}
}

// authFunc is an Authenticator made of a function.
type authFunc func(r *http.Request) (auth.Principal, error)

func (f authFunc) Authenticate(r *http.Request) (auth.Principal, error) { return f(r) }

// recorder is a next handler that remembers whether it ran and with whom.
type recorder struct {
	mu     sync.Mutex
	called int
	who    auth.Principal
	found  bool
}

func (h *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.called++
	h.who, h.found = auth.From(r.Context())
	w.WriteHeader(http.StatusOK)
}

func (h *recorder) Called() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.called
}
