package auth_test

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/problem"
)

const identityPlatformIssuer = "https://securetoken.google.com/assetgen-prod"

func TestNewGoogleRequiresAnAudience(t *testing.T) {
	is := is.New(t)
	_, err := auth.NewGoogle(auth.GoogleOptions{})
	is.True(err != nil) // no audience: refused
	_, err = auth.NewGoogle(auth.GoogleOptions{Audiences: []string{testAudience}})
	is.NoErr(err) // everything else has a default
}

// The verifier accepts exactly the well-formed, RS256-signed, unexpired tokens
// of an accepted issuer for the audience, and refuses everything else.
func TestGoogleVerify(t *testing.T) {
	pemKey := func() []byte {
		der, err := x509.MarshalPKIXPublicKey(&keyA().PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	jwkBytes := func() []byte {
		b, err := json.Marshal(publicJWK(keyA(), "A"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	at := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(t0.Add(d)) }
	tests := []struct {
		name    string
		issuers []string // nil: the defaults
		token   func(t *testing.T) string
		refused string // the reason, in the error; "" when accepted
	}{
		{"valid", nil, func(t *testing.T) string { return mint(t, keyA(), "A", claims()) }, ""},
		{"valid, issuer without scheme (a default)", nil, func(t *testing.T) string {
			return mint(t, keyA(), "A", claims(func(c *auth.Claims) { c.Issuer = "accounts.google.com" }))
		}, ""},
		{"valid, one of several audiences", nil, func(t *testing.T) string {
			return mint(t, keyA(), "A", claims(func(c *auth.Claims) { c.Audience = jwt.Audience{"other", testAudience} }))
		}, ""},
		{"valid, key of the second kid", nil, func(t *testing.T) string { return mint(t, keyB(), "B", claims()) }, ""},
		{"wrong audience", nil, func(t *testing.T) string {
			return mint(t, keyA(), "A", claims(func(c *auth.Claims) { c.Audience = jwt.Audience{"someone-else"} }))
		}, `invalid audience`},
		{"no audience", nil, func(t *testing.T) string {
			return mint(t, keyA(), "A", claims(func(c *auth.Claims) { c.Audience = nil }))
		}, `invalid audience`},
		{"wrong issuer", nil, func(t *testing.T) string {
			return mint(t, keyA(), "A", claims(func(c *auth.Claims) { c.Issuer = "https://evil.example.com" }))
		}, `issuer`},
		{"no issuer", nil, func(t *testing.T) string {
			return mint(t, keyA(), "A", claims(func(c *auth.Claims) { c.Issuer = "" }))
		}, `issuer`},
		{"Identity Platform issuer, configured", []string{googleIssuer, identityPlatformIssuer}, func(t *testing.T) string {
			return mint(t, keyA(), "A", claims(func(c *auth.Claims) { c.Issuer = identityPlatformIssuer }))
		}, ""},
		{"Identity Platform issuer, not configured", nil, func(t *testing.T) string {
			return mint(t, keyA(), "A", claims(func(c *auth.Claims) { c.Issuer = identityPlatformIssuer }))
		}, `issuer`},
		{"Google issuer, only Identity Platform configured", []string{identityPlatformIssuer}, func(t *testing.T) string {
			return mint(t, keyA(), "A", claims())
		}, `issuer`},
		{"another project's Identity Platform issuer", []string{identityPlatformIssuer}, func(t *testing.T) string {
			return mint(t, keyA(), "A", claims(func(c *auth.Claims) { c.Issuer = "https://securetoken.google.com/other" }))
		}, `issuer`},
		{"expired beyond the leeway", nil, func(t *testing.T) string {
			return mint(t, keyA(), "A", claims(func(c *auth.Claims) { c.IssuedAt, c.Expiry = at(-2*time.Hour), at(-61*time.Second) }))
		}, `expired`},
		{"expired within the leeway", nil, func(t *testing.T) string {
			return mint(t, keyA(), "A", claims(func(c *auth.Claims) { c.IssuedAt, c.Expiry = at(-time.Hour), at(-30*time.Second) }))
		}, ""},
		{"issued in the future within the leeway", nil, func(t *testing.T) string {
			return mint(t, keyA(), "A", claims(func(c *auth.Claims) { c.IssuedAt = at(30 * time.Second) }))
		}, ""},
		{"issued in the future beyond the leeway", nil, func(t *testing.T) string {
			return mint(t, keyA(), "A", claims(func(c *auth.Claims) { c.IssuedAt = at(2 * time.Minute) }))
		}, `issued in the future`},
		{"not before, within the leeway", nil, func(t *testing.T) string {
			return mint(t, keyA(), "A", claims(func(c *auth.Claims) { c.NotBefore = at(30 * time.Second) }))
		}, ""},
		{"not before, beyond the leeway", nil, func(t *testing.T) string {
			return mint(t, keyA(), "A", claims(func(c *auth.Claims) { c.NotBefore = at(2 * time.Minute) }))
		}, `not valid yet`},
		{"no expiry", nil, func(t *testing.T) string {
			return mint(t, keyA(), "A", claims(func(c *auth.Claims) { c.Expiry = nil }))
		}, `no expiry`},
		{"no subject", nil, func(t *testing.T) string {
			return mint(t, keyA(), "A", claims(func(c *auth.Claims) { c.Subject = "" }))
		}, `no subject`},
		{"bad signature: another key under a known kid", nil, func(t *testing.T) string {
			return mint(t, keyEvil(), "A", claims())
		}, `signature`},
		{"bad signature: key B's token under kid A", nil, func(t *testing.T) string {
			return mint(t, keyB(), "A", claims())
		}, `signature`},
		{"signature of another token", nil, func(t *testing.T) string {
			good := strings.Split(mint(t, keyA(), "A", claims()), ".")
			other := strings.Split(mint(t, keyA(), "A", claims(func(c *auth.Claims) { c.Subject = "admin" })), ".")
			return good[0] + "." + other[1] + "." + good[2]
		}, `signature`},
		{"signature stripped", nil, func(t *testing.T) string {
			good := strings.Split(mint(t, keyA(), "A", claims()), ".")
			return good[0] + "." + good[1] + "."
		}, `signature`},
		{`"alg": "none"`, nil, func(t *testing.T) string { return unsigned(t, "A", claims()) }, `algorithm "none"`},
		{"HS256 keyed with the public key PEM (algorithm confusion)", nil, func(t *testing.T) string {
			return sign(t, jose.HS256, pemKey(), "A", claims())
		}, `algorithm "HS256"`},
		{"HS256 keyed with the public JWK (algorithm confusion)", nil, func(t *testing.T) string {
			return sign(t, jose.HS256, jwkBytes(), "A", claims())
		}, `algorithm "HS256"`},
		{"RS512 with the right key (RS256 only)", nil, func(t *testing.T) string {
			return sign(t, jose.RS512, keyA(), "A", claims())
		}, `algorithm "RS512"`},
		{"PS256 with the right key (RS256 only)", nil, func(t *testing.T) string {
			return sign(t, jose.PS256, keyA(), "A", claims())
		}, `algorithm "PS256"`},
		{"unknown kid", nil, func(t *testing.T) string { return mint(t, keyEvil(), "C", claims()) }, `no signing key "C"`},
		{"no kid", nil, func(t *testing.T) string { return mint(t, keyA(), "", claims()) }, `no signing key ""`},
		{"not a JWT", nil, func(*testing.T) string { return "not-a-token" }, `parse token`},
		{"empty", nil, func(*testing.T) string { return "" }, `parse token`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			keys := newJWKS(t, publicJWK(keyA(), "A"), publicJWK(keyB(), "B"))
			g := newGoogle(t, newClock(), tt.issuers, keys)
			c, err := g.Verify(t.Context(), tt.token(t))
			if tt.refused != "" {
				is.True(err != nil)                                // refused
				is.True(strings.Contains(err.Error(), tt.refused)) // for the right reason
				is.Equal(c, auth.Claims{})
				return
			}
			is.NoErr(err)
			is.Equal(c.Subject, testSubject) // the subject is returned
			is.Equal(c.Email, "someone@example.com")
			is.True(c.EmailVerified)
		})
	}
}

// A JWKS key without a kid is never matched, not even by a token without one.
func TestGoogleKeyWithoutKidIsNotUsed(t *testing.T) {
	is := is.New(t)
	keys := newJWKS(t, publicJWK(keyA(), ""))
	g := newGoogle(t, newClock(), nil, keys)
	_, err := g.Verify(t.Context(), mint(t, keyA(), "", claims()))
	is.True(err != nil) // refused
}

// Key sets hold public keys only: a published symmetric key is ignored.
func TestGoogleIgnoresSymmetricKeys(t *testing.T) {
	is := is.New(t)
	secret := []byte("0123456789abcdef0123456789abcdef")
	keys := newJWKS(t, publicJWK(keyA(), "A"), jose.JSONWebKey{Key: secret, KeyID: "H", Algorithm: string(jose.HS256)})
	g := newGoogle(t, newClock(), nil, keys)
	_, err := g.Verify(t.Context(), sign(t, jose.HS256, secret, "H", claims()))
	is.True(err != nil) // refused
	_, err = g.Verify(t.Context(), mint(t, keyA(), "A", claims()))
	is.NoErr(err) // the RSA key of the same set still works
}

// Key sets hold public keys only: a private key published by mistake is not
// used, whatever it could verify.
func TestGoogleIgnoresPrivateKeys(t *testing.T) {
	is := is.New(t)
	keys := newJWKS(t, jose.JSONWebKey{Key: keyB(), KeyID: "P", Algorithm: string(jose.RS256), Use: "sig"}, publicJWK(keyA(), "A"))
	g := newGoogle(t, newClock(), nil, keys)
	_, err := g.Verify(t.Context(), mint(t, keyB(), "P", claims()))
	is.True(err != nil) // refused
	is.True(strings.Contains(err.Error(), `no signing key "P"`))
	_, err = g.Verify(t.Context(), mint(t, keyA(), "A", claims()))
	is.NoErr(err) // the public key of the same set still works
}

func TestGoogleAuthenticate(t *testing.T) {
	bad := func(t *testing.T) string { return mint(t, keyEvil(), "A", claims()) }
	good := func(t *testing.T) string { return mint(t, keyA(), "A", claims()) }
	tests := []struct {
		name          string
		authorization func(t *testing.T) string
		ok            bool
	}{
		{"valid", func(t *testing.T) string { return "Bearer " + good(t) }, true},
		{"scheme in lower case", func(t *testing.T) string { return "bearer " + good(t) }, true},
		{"missing header", func(*testing.T) string { return "" }, false},
		{"empty bearer", func(*testing.T) string { return "Bearer " }, false},
		{"no scheme", func(t *testing.T) string { return good(t) }, false},
		{"basic scheme", func(t *testing.T) string { return "Basic " + good(t) }, false},
		{"bad signature", func(t *testing.T) string { return "Bearer " + bad(t) }, false},
		{"garbage", func(*testing.T) string { return "Bearer garbage" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			keys := newJWKS(t, publicJWK(keyA(), "A"))
			g := newGoogle(t, newClock(), nil, keys)
			r := httptest.NewRequest(http.MethodGet, "/budget", nil)
			if h := tt.authorization(t); h != "" {
				r.Header.Set("Authorization", h)
			}

			p, err := g.Authenticate(r)
			if tt.ok {
				is.NoErr(err)
				is.Equal(p, auth.Principal{UserID: "g." + testSubject, Via: "google"})
			} else {
				wantCode(t, err, problem.Unauthenticated)
				is.Equal(p, auth.Principal{})
			}

			// And through Require: an answer before next, or next with the principal.
			next := &recorder{}
			rec := httptest.NewRecorder()
			auth.Require(g, next).ServeHTTP(rec, r)
			if tt.ok {
				is.Equal(rec.Code, http.StatusOK)
				is.Equal(next.Called(), 1)
				is.True(next.found) // the principal is in the context
				is.Equal(next.who, auth.Principal{UserID: "g." + testSubject, Via: "google"})
				return
			}
			is.Equal(next.Called(), 0) // next never runs for a refused caller
			doc := wantProblem(t, rec, problem.Unauthenticated)
			is.True(!strings.Contains(doc.Detail, "signature")) // the cause is only logged
		})
	}
}

// Many verifications, some at once, share one fetch of the key set.
func TestGoogleFetchesKeysOnce(t *testing.T) {
	is := is.New(t)
	keys := newJWKS(t, publicJWK(keyA(), "A"))
	clk := newClock()
	g := newGoogle(t, clk, nil, keys)
	raw := mint(t, keyA(), "A", claims())

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			_, err := g.Verify(context.Background(), raw)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		is.NoErr(err)
	}
	for range 20 {
		clk.Advance(time.Minute) // still within the hour of max-age
		_, err := g.Verify(t.Context(), raw)
		is.NoErr(err)
	}
	is.Equal(keys.Hits(), 1) // one fetch for all of them
}

// The key set is cached for its Cache-Control max-age, at most an hour, and
// fetched again once that runs out.
func TestGoogleHonoursMaxAge(t *testing.T) {
	tests := []struct {
		cacheControl string
		fresh        time.Duration
	}{
		{"public, max-age=300, must-revalidate, no-transform", 300 * time.Second},
		{"max-age=60", time.Minute},
		{"max-age=21600", time.Hour}, // capped at an hour
		{"", time.Hour},              // no header: an hour
		{"no-cache", time.Hour},
		{"max-age=0", time.Hour},
		{"max-age=soon", time.Hour},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.cacheControl), func(t *testing.T) {
			is := is.New(t)
			keys := newJWKS(t, publicJWK(keyA(), "A"))
			keys.SetCacheControl(tt.cacheControl)
			clk := newClock()
			g := newGoogle(t, clk, nil, keys)
			raw := mint(t, keyA(), "A", claims(func(c *auth.Claims) { c.Expiry = jwt.NewNumericDate(t0.Add(24 * time.Hour)) }))

			_, err := g.Verify(t.Context(), raw)
			is.NoErr(err)
			is.Equal(keys.Hits(), 1) // first use fetches

			clk.Advance(tt.fresh)
			_, err = g.Verify(t.Context(), raw)
			is.NoErr(err)
			is.Equal(keys.Hits(), 1) // up to max-age: cached

			clk.Advance(time.Second)
			_, err = g.Verify(t.Context(), raw)
			is.NoErr(err)
			is.Equal(keys.Hits(), 2) // past max-age: fetched again

			_, err = g.Verify(t.Context(), raw)
			is.NoErr(err)
			is.Equal(keys.Hits(), 2) // and cached again
		})
	}
}

// Of several key sets, the shortest max-age decides when all are refetched.
func TestGoogleSeveralKeySets(t *testing.T) {
	is := is.New(t)
	google := newJWKS(t, publicJWK(keyA(), "A"))
	google.SetCacheControl("max-age=600")
	securetoken := newJWKS(t, publicJWK(keyB(), "B"))
	securetoken.SetCacheControl("max-age=120")
	clk := newClock()
	g := newGoogle(t, clk, []string{googleIssuer, identityPlatformIssuer}, google, securetoken)

	_, err := g.Verify(t.Context(), mint(t, keyA(), "A", claims()))
	is.NoErr(err) // a key of the first set
	_, err = g.Verify(t.Context(), mint(t, keyB(), "B", claims(func(c *auth.Claims) { c.Issuer = identityPlatformIssuer })))
	is.NoErr(err) // a key of the second set
	is.Equal(google.Hits(), 1)
	is.Equal(securetoken.Hits(), 1)

	clk.Advance(121 * time.Second)
	_, err = g.Verify(t.Context(), mint(t, keyA(), "A", claims()))
	is.NoErr(err)
	is.Equal(google.Hits(), 2) // the shorter max-age ran out: both fetched
	is.Equal(securetoken.Hits(), 2)
}

// An unknown kid refetches the key set, but at most once a minute, so garbage
// kids cannot hammer the key server.
func TestGoogleUnknownKidRefetchesAtMostOnceAMinute(t *testing.T) {
	is := is.New(t)
	keys := newJWKS(t, publicJWK(keyA(), "A"))
	clk := newClock()
	g := newGoogle(t, clk, nil, keys)
	verify := func(key *rsa.PrivateKey, kid string) error {
		_, err := g.Verify(t.Context(), mint(t, key, kid, claims(func(c *auth.Claims) { c.Expiry = jwt.NewNumericDate(t0.Add(3 * time.Hour)) })))
		return err
	}

	is.NoErr(verify(keyA(), "A"))
	is.Equal(keys.Hits(), 1)

	clk.Advance(10 * time.Second)
	for i := range 25 {
		is.True(verify(keyEvil(), fmt.Sprintf("garbage-%d", i)) != nil) // unknown kids are refused
	}
	is.Equal(keys.Hits(), 1) // within the minute of the last fetch: no refetch

	clk.Advance(51 * time.Second) // 61s since the fetch
	is.True(verify(keyEvil(), "garbage") != nil)
	is.Equal(keys.Hits(), 2) // one refetch
	for i := range 25 {
		is.True(verify(keyEvil(), fmt.Sprintf("garbage-%d", i)) != nil)
	}
	is.Equal(keys.Hits(), 2) // and no more in the next minute

	clk.Advance(61 * time.Second)
	is.True(verify(keyEvil(), "garbage") != nil)
	is.Equal(keys.Hits(), 3)
	is.NoErr(verify(keyA(), "A")) // a known kid never refetches
	is.Equal(keys.Hits(), 3)
}

// Key rotation: the server starts publishing a new key; a token signed with it
// verifies after the refetch its unknown kid triggers, and once the old key is
// withdrawn, the old key's tokens are refused.
func TestGoogleKeyRotation(t *testing.T) {
	is := is.New(t)
	keys := newJWKS(t, publicJWK(keyA(), "A"))
	clk := newClock()
	g := newGoogle(t, clk, nil, keys)
	long := func(c *auth.Claims) { c.Expiry = jwt.NewNumericDate(t0.Add(3 * time.Hour)) }
	oldTok := mint(t, keyA(), "A", claims(long))
	newTok := mint(t, keyB(), "B", claims(long))

	_, err := g.Verify(t.Context(), oldTok)
	is.NoErr(err)
	is.Equal(keys.Hits(), 1)

	keys.Serve(publicJWK(keyA(), "A"), publicJWK(keyB(), "B")) // B is published
	clk.Advance(2 * time.Minute)
	_, err = g.Verify(t.Context(), newTok)
	is.NoErr(err)            // the new kid triggered a refetch and verifies
	is.Equal(keys.Hits(), 2) // one refetch
	_, err = g.Verify(t.Context(), oldTok)
	is.NoErr(err) // the old key is still published
	is.Equal(keys.Hits(), 2)

	keys.Serve(publicJWK(keyB(), "B"))   // A is withdrawn
	clk.Advance(time.Hour + time.Second) // the cache runs out
	_, err = g.Verify(t.Context(), newTok)
	is.NoErr(err)
	is.Equal(keys.Hits(), 3)
	_, err = g.Verify(t.Context(), oldTok)
	is.True(err != nil) // the withdrawn key's tokens are refused
}

// A key published less than a minute after the last fetch is only found once
// the minute is over: the price of the refetch limit.
func TestGoogleRotationWithinTheMinute(t *testing.T) {
	is := is.New(t)
	keys := newJWKS(t, publicJWK(keyA(), "A"))
	clk := newClock()
	g := newGoogle(t, clk, nil, keys)
	long := func(c *auth.Claims) { c.Expiry = jwt.NewNumericDate(t0.Add(3 * time.Hour)) }

	_, err := g.Verify(t.Context(), mint(t, keyA(), "A", claims(long)))
	is.NoErr(err)
	keys.Serve(publicJWK(keyA(), "A"), publicJWK(keyB(), "B"))
	clk.Advance(30 * time.Second)
	_, err = g.Verify(t.Context(), mint(t, keyB(), "B", claims(long)))
	is.True(err != nil) // not yet
	is.Equal(keys.Hits(), 1)
	clk.Advance(31 * time.Second)
	_, err = g.Verify(t.Context(), mint(t, keyB(), "B", claims(long)))
	is.NoErr(err) // now
	is.Equal(keys.Hits(), 2)
}

// With no keys yet, a failing key server fails verification; once it answers,
// the next verification fetches and succeeds.
func TestGoogleKeyServerDownAtStart(t *testing.T) {
	for _, fail := range []struct {
		name    string
		breakIt func(*jwksServer)
	}{
		{"status 500", func(s *jwksServer) { s.Fail(http.StatusInternalServerError) }},
		{"status 404", func(s *jwksServer) { s.Fail(http.StatusNotFound) }},
		{"not JSON", func(s *jwksServer) { s.ServeBody("<html>oops</html>") }},
	} {
		t.Run(fail.name, func(t *testing.T) {
			is := is.New(t)
			keys := newJWKS(t, publicJWK(keyA(), "A"))
			fail.breakIt(keys)
			g := newGoogle(t, newClock(), nil, keys)
			raw := mint(t, keyA(), "A", claims())

			_, err := g.Verify(t.Context(), raw)
			is.True(err != nil) // no keys: refused
			r := httptest.NewRequest(http.MethodGet, "/budget", nil)
			r.Header.Set("Authorization", "Bearer "+raw)
			_, err = g.Authenticate(r)
			wantCode(t, err, problem.Unauthenticated)

			keys.Serve(publicJWK(keyA(), "A"))
			_, err = g.Verify(t.Context(), raw)
			is.NoErr(err) // fetched again at once, no minute to wait
		})
	}
}

// The key server unreachable altogether (closed) is a refusal, not a hang.
func TestGoogleKeyServerUnreachable(t *testing.T) {
	is := is.New(t)
	keys := newJWKS(t, publicJWK(keyA(), "A"))
	keys.Close()
	g := newGoogle(t, newClock(), nil, keys)
	_, err := g.Verify(t.Context(), mint(t, keyA(), "A", claims()))
	is.True(err != nil)
}

// Once the cache runs out, a failing refetch keeps the keys it had.
func TestGoogleKeepsStaleKeysWhenRefetchFails(t *testing.T) {
	is := is.New(t)
	keys := newJWKS(t, publicJWK(keyA(), "A"))
	keys.SetCacheControl("max-age=60")
	clk := newClock()
	g := newGoogle(t, clk, nil, keys)
	raw := mint(t, keyA(), "A", claims())

	_, err := g.Verify(t.Context(), raw)
	is.NoErr(err)
	keys.Fail(http.StatusServiceUnavailable)
	clk.Advance(2 * time.Minute)
	_, err = g.Verify(t.Context(), raw)
	is.NoErr(err)            // the old keys still verify
	is.Equal(keys.Hits(), 2) // after trying to refresh them
}

// While the key server is down and the cache has run out, verification should
// still retry the key server at most once a minute (as it does for unknown
// kids), not once per request.
func TestGoogleFailingRefreshIsRateLimited(t *testing.T) {
	is := is.New(t)
	keys := newJWKS(t, publicJWK(keyA(), "A"))
	keys.SetCacheControl("max-age=60")
	clk := newClock()
	g := newGoogle(t, clk, nil, keys)
	raw := mint(t, keyA(), "A", claims())

	_, err := g.Verify(t.Context(), raw)
	is.NoErr(err)
	keys.Fail(http.StatusServiceUnavailable)
	clk.Advance(2 * time.Minute)
	for range 20 {
		clk.Advance(time.Second)
		_, err = g.Verify(t.Context(), raw)
		is.NoErr(err) // stale keys still verify
	}
	is.True(keys.Hits() <= 2) // one failed refresh in those 20 seconds, not 20
}
