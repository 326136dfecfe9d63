package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/assetgen/assetgen/shared/problem"
)

// Progress tokens let a browser's EventSource — which cannot send headers —
// open one batch's progress stream: the token rides in the URL, names the batch
// and its owner, expires soon, and is HMAC-signed with a key that has an id, so
// keys rotate: the first key signs, every listed key verifies.
type Tokens struct {
	keys []tokenKey
	ttl  time.Duration
	now  func() time.Time
}

type tokenKey struct {
	id     string
	secret []byte
}

type tokenPayload struct {
	Batch   string `json:"b"`
	User    string `json:"u"`
	Expires int64  `json:"e"`
	// Scope narrows a token: empty for a progress token (the stream and the
	// batch's images), "asset/<row>/<variant>" for one image's stable link.
	Scope string `json:"s,omitempty"`
}

const tokenPrefix = "pt1"

// NewTokens parses "kid:base64secret,kid2:base64secret" (the first signs) and
// the token lifetime.
func NewTokens(spec string, ttl time.Duration) (*Tokens, error) {
	t := &Tokens{ttl: ttl, now: time.Now}
	seen := map[string]bool{}
	n := 0
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n++
		// Entries are named by position: a malformed one may be a bare secret.
		id, secret, ok := strings.Cut(part, ":")
		key, err := base64.StdEncoding.DecodeString(secret)
		if !ok || id == "" || strings.ContainsAny(id, ".") || err != nil || len(key) < 32 {
			return nil, fmt.Errorf("auth: progress token key #%d: want id:base64 of at least 32 bytes", n)
		}
		if seen[id] {
			return nil, fmt.Errorf("auth: progress token key #%d: id %q is listed twice", n, id)
		}
		seen[id] = true
		t.keys = append(t.keys, tokenKey{id: id, secret: key})
	}
	if len(t.keys) == 0 {
		return nil, errors.New("auth: no progress token key")
	}
	if ttl <= 0 {
		return nil, errors.New("auth: progress token lifetime must be positive")
	}
	return t, nil
}

// TTL is how long a token stays valid.
func (t *Tokens) TTL() time.Duration { return t.ttl }

// Mint returns a token for one batch of one user, and when it expires.
func (t *Tokens) Mint(batchID, userID string) (string, time.Time) {
	return t.mint(tokenPayload{Batch: batchID, User: userID}, t.ttl)
}

// MintAsset returns a token that opens one image's stable link for ttl — as
// long as the image is kept, so a link stored in a spreadsheet or a CMS works.
func (t *Tokens) MintAsset(batchID, userID string, row, variant int, ttl time.Duration) string {
	tok, _ := t.mint(tokenPayload{Batch: batchID, User: userID, Scope: assetScope(row, variant)}, ttl)
	return tok
}

func assetScope(row, variant int) string { return fmt.Sprintf("asset/%d/%d", row, variant) }

func (t *Tokens) mint(p tokenPayload, ttl time.Duration) (string, time.Time) {
	exp := t.now().Add(ttl).Truncate(time.Second)
	p.Expires = exp.Unix()
	body, _ := json.Marshal(p)
	k := t.keys[0]
	head := tokenPrefix + "." + k.id + "." + base64.RawURLEncoding.EncodeToString(body)
	return head + "." + base64.RawURLEncoding.EncodeToString(mac(k.secret, head)), exp
}

func mac(secret []byte, msg string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// Verify checks a progress token for batchID. Tampered, expired, unknown-key,
// other-batch and asset tokens are all UNAUTHENTICATED, with no hint of which.
func (t *Tokens) Verify(token, batchID string) (Principal, error) {
	return t.verify(token, batchID, func(scope string) bool { return scope == "" })
}

// VerifyAsset checks a token for one image of batchID: its asset token, or the
// batch's progress token.
func (t *Tokens) VerifyAsset(token, batchID string, row, variant int) (Principal, error) {
	want := assetScope(row, variant)
	return t.verify(token, batchID, func(scope string) bool { return scope == "" || scope == want })
}

func (t *Tokens) verify(token, batchID string, scopeOK func(string) bool) (Principal, error) {
	fail := func(why string) (Principal, error) {
		return Principal{}, &problem.Error{Code: problem.Unauthenticated, Detail: "the progress token is not valid for this batch; mint a new one with GET /batch/{id}/progress-token", Err: errors.New(why)}
	}
	parts := strings.Split(token, ".")
	if len(parts) != 4 || parts[0] != tokenPrefix {
		return fail("malformed")
	}
	var key *tokenKey
	for i := range t.keys {
		if t.keys[i].id == parts[1] {
			key = &t.keys[i]
			break
		}
	}
	if key == nil {
		return fail("unknown key id")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[3])
	if err != nil || !hmac.Equal(sig, mac(key.secret, strings.Join(parts[:3], "."))) {
		return fail("bad signature")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return fail("bad payload")
	}
	var p tokenPayload
	if err := json.Unmarshal(raw, &p); err != nil {
		return fail("bad payload")
	}
	if p.Batch != batchID {
		return fail("token of another batch")
	}
	if !scopeOK(p.Scope) {
		return fail("token of another scope")
	}
	if !t.now().Before(time.Unix(p.Expires, 0)) {
		return fail("expired")
	}
	return Principal{UserID: p.User, Via: "progress-token", BatchID: p.Batch}, nil
}

// Stream authenticates progress streams: a progress token in the "token" query
// parameter (EventSource), or else the deployment's own credential.
type Stream struct {
	Tokens *Tokens
	Bearer Authenticator
}

// Authenticate implements Authenticator for GET /progress/{batchId}.
func (s Stream) Authenticate(r *http.Request) (Principal, error) {
	if tok := queryParam(r.URL.RawQuery, "token"); tok != "" {
		return s.Tokens.Verify(tok, r.PathValue("batchId"))
	}
	return s.Bearer.Authenticate(r)
}

// queryParam is the first value of key in a raw query, as url.Values.Get
// reads it, without parsing every parameter into a map: a progress stream
// opens with the token alone and should leave nothing else behind.
func queryParam(raw, key string) string {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k, err := url.QueryUnescape(k); err != nil || k != key {
			continue
		}
		if v, err := url.QueryUnescape(v); err == nil {
			return v
		}
	}
	return ""
}
