package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/assetgen/assetgen/shared/problem"
)

// Google's key sets: Google-signed ID tokens (Sign-In, service accounts, Cloud
// Tasks' OIDC tokens) and Identity Platform / Firebase Auth ID tokens.
var DefaultJWKSURLs = []string{
	"https://www.googleapis.com/oauth2/v3/certs",
	"https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com",
}

// GoogleOptions configure ID-token verification.
type GoogleOptions struct {
	// Audiences a token may be issued for (the OAuth client id, the Firebase
	// project id, or a Cloud Run URL). Required.
	Audiences []string
	// Issuers accepted: https://accounts.google.com for Google-signed tokens,
	// https://securetoken.google.com/<project> for Identity Platform.
	Issuers []string
	// Allow is who may call (AUTH_ALLOW); the zero Allow admits nobody.
	// Verify ignores it: it only says whether a token is genuine.
	Allow Allow
	// JWKSURLs are fetched for signing keys (DefaultJWKSURLs when empty).
	JWKSURLs []string
	// Leeway tolerates clock skew on exp, iat and nbf.
	Leeway time.Duration
	// HTTPClient fetches key sets (tests point it at a local server).
	HTTPClient *http.Client
	Now        func() time.Time
}

// Claims are what a verified token says.
type Claims struct {
	jwt.Claims
	Email         string `json:"email"`
	EmailVerified bool   `json:"email_verified"`
}

// Google verifies Google-signed and Identity Platform ID tokens: RS256 only
// (so "alg": "none" and HMAC confusion are refused), signature against the
// published key sets (cached as their Cache-Control allows), issuer, audience,
// and expiry with leeway.
type Google struct {
	o    GoogleOptions
	keys *keyCache
}

// NewGoogle returns a verifier.
func NewGoogle(o GoogleOptions) (*Google, error) {
	if len(o.Audiences) == 0 {
		return nil, errors.New("auth: google: at least one audience is required")
	}
	if len(o.Issuers) == 0 {
		o.Issuers = []string{"https://accounts.google.com", "accounts.google.com"}
	}
	if len(o.JWKSURLs) == 0 {
		o.JWKSURLs = DefaultJWKSURLs
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Google{o: o, keys: &keyCache{urls: o.JWKSURLs, client: o.HTTPClient, now: o.Now}}, nil
}

// Verify checks a raw ID token and returns its claims.
func (g *Google) Verify(ctx context.Context, raw string) (Claims, error) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return Claims{}, fmt.Errorf("auth: parse token: %w", err)
	}
	if len(tok.Headers) != 1 {
		return Claims{}, errors.New("auth: token must have one signature")
	}
	key, err := g.keys.key(ctx, tok.Headers[0].KeyID)
	if err != nil {
		return Claims{}, err
	}
	var c Claims
	if err := tok.Claims(key, &c); err != nil {
		return Claims{}, fmt.Errorf("auth: signature: %w", err)
	}
	if err := c.ValidateWithLeeway(jwt.Expected{AnyAudience: g.o.Audiences, Time: g.o.Now()}, g.o.Leeway); err != nil {
		return Claims{}, fmt.Errorf("auth: claims: %w", err)
	}
	if c.Expiry == nil {
		return Claims{}, errors.New("auth: token has no expiry")
	}
	issuerOK := false
	for _, iss := range g.o.Issuers {
		issuerOK = issuerOK || c.Issuer == iss
	}
	if !issuerOK {
		return Claims{}, fmt.Errorf("auth: issuer %q is not accepted", c.Issuer)
	}
	if c.Subject == "" {
		return Claims{}, errors.New("auth: token has no subject")
	}
	return c, nil
}

// Authenticate implements Authenticator: a genuine token whose verified
// e-mail the allow-list admits, else FORBIDDEN (whose detail never tells which
// entries exist). The user is UserID(issuer, subject).
func (g *Google) Authenticate(r *http.Request) (Principal, error) {
	raw, ok := bearer(r)
	if !ok {
		return Principal{}, problem.New(problem.Unauthenticated, "send an ID token as Authorization: Bearer <token>")
	}
	c, err := g.Verify(r.Context(), raw)
	if err != nil {
		return Principal{}, problem.Wrap(problem.Unauthenticated, err, "the ID token is not valid")
	}
	if !g.o.Allow.Admits(c.Email, c.EmailVerified) {
		why := fmt.Errorf("auth: %q (email_verified %t, issuer %s) is not admitted by AUTH_ALLOW", c.Email, c.EmailVerified, c.Issuer)
		return Principal{}, &problem.Error{Code: problem.Forbidden, Detail: "this identity is not allowed to use this deployment", Err: why}
	}
	return Principal{UserID: UserID(c.Issuer, c.Subject), Via: "google"}, nil
}

// bearer returns the Authorization: Bearer credential.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// keyCache holds the signing keys of the key sets, refreshed when their
// Cache-Control max-age runs out, or on an unknown key id (at most once a
// minute, so garbage key ids cannot hammer the key servers).
type keyCache struct {
	urls   []string
	client *http.Client
	now    func() time.Time

	mu        sync.Mutex
	keys      map[string]jose.JSONWebKey
	expires   time.Time
	lastFetch time.Time
}

func (k *keyCache) key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	stale := k.keys == nil || now.After(k.expires)
	_, known := k.keys[kid]
	if stale || (!known && now.Sub(k.lastFetch) > time.Minute) {
		if err := k.fetch(ctx, now); err != nil {
			if k.keys == nil {
				return jose.JSONWebKey{}, err
			}
			// The key servers are failing: keep the keys we have and try again in
			// a minute, instead of on every request.
			k.expires = now.Add(time.Minute)
		}
	}
	key, ok := k.keys[kid]
	if !ok || kid == "" {
		return jose.JSONWebKey{}, fmt.Errorf("auth: no signing key %q", kid)
	}
	return key, nil
}

func (k *keyCache) fetch(ctx context.Context, now time.Time) error {
	k.lastFetch = now
	keys := map[string]jose.JSONWebKey{}
	expires := now.Add(time.Hour)
	for _, u := range k.urls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := k.client.Do(req)
		if err != nil {
			return fmt.Errorf("auth: fetch keys %s: %w", u, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("auth: fetch keys %s: status %d: %v", u, resp.StatusCode, err)
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(body, &set); err != nil {
			return fmt.Errorf("auth: keys %s: %w", u, err)
		}
		for _, key := range set.Keys {
			if key.Valid() && key.IsPublic() {
				keys[key.KeyID] = key
			}
		}
		if age := maxAge(resp.Header.Get("Cache-Control")); age > 0 && now.Add(age).Before(expires) {
			expires = now.Add(age)
		}
	}
	k.keys, k.expires = keys, expires
	return nil
}

func maxAge(cc string) time.Duration {
	for _, part := range strings.Split(cc, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "max-age="); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				return time.Duration(n) * time.Second
			}
		}
	}
	return 0
}
