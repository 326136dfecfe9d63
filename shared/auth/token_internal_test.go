package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/problem"
)

// Secrets of 32 bytes, base64 as in PROGRESS_TOKEN_KEYS.
var (
	secretA = b64(bytes.Repeat([]byte{0xA1}, 32))
	secretB = b64(bytes.Repeat([]byte{0xB2}, 48))
	secretC = b64(bytes.Repeat([]byte{0xC3}, 32))
)

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// newTestTokens parses spec with a 5-minute lifetime on a clock the test moves.
func newTestTokens(t *testing.T, spec string, now *time.Time) *Tokens {
	t.Helper()
	tk, err := NewTokens(spec, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tk.now = func() time.Time { return *now } // the test runs on one goroutine
	return tk
}

func TestNewTokens(t *testing.T) {
	tests := []struct {
		name string
		spec string
		ttl  time.Duration
		ok   bool
		kids []string
	}{
		{"one key", "A:" + secretA, time.Minute, true, []string{"A"}},
		{"two keys, the first signs", "B:" + secretB + ",A:" + secretA, time.Minute, true, []string{"B", "A"}},
		{"spaces and empty parts", "  B:" + secretB + " , ,A:" + secretA + ",", time.Minute, true, []string{"B", "A"}},
		{"long id", "2031-05-key:" + secretA, time.Minute, true, []string{"2031-05-key"}},
		{"empty", "", time.Minute, false, nil},
		{"only commas and spaces", " , ,", time.Minute, false, nil},
		{"no colon", secretA, time.Minute, false, nil},
		{"empty id", ":" + secretA, time.Minute, false, nil},
		{"dot in id", "k.1:" + secretA, time.Minute, false, nil},
		{"bad base64", "A:not*base64!", time.Minute, false, nil},
		{"URL-safe base64 is not standard base64", "A:" + base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xFB}, 32)), time.Minute, false, nil},
		{"empty secret", "A:", time.Minute, false, nil},
		{"short secret (31 bytes)", "A:" + b64(bytes.Repeat([]byte{1}, 31)), time.Minute, false, nil},
		{"one good key, one bad", "A:" + secretA + ",B:short", time.Minute, false, nil},
		{"zero lifetime", "A:" + secretA, 0, false, nil},
		{"negative lifetime", "A:" + secretA, -time.Second, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			tk, err := NewTokens(tt.spec, tt.ttl)
			if !tt.ok {
				is.True(err != nil) // refused
				is.True(tk == nil)
				return
			}
			is.NoErr(err)
			is.Equal(tk.TTL(), tt.ttl)
			var kids []string
			for _, k := range tk.keys {
				kids = append(kids, k.id)
				is.True(len(k.secret) >= 32)
			}
			is.Equal(kids, tt.kids)
		})
	}
}

// A spec error names the key, never its secret (the error is logged at start).
func TestNewTokensErrorDoesNotLeakSecret(t *testing.T) {
	for _, tt := range []struct{ name, spec string }{
		{"bad base64", "A:" + secretA + "*"},
		{"dot in id", "k.1:" + secretA},
		{"empty id", ":" + secretA},
		{"ids forgotten", secretA + "," + secretB},
		{"a stray paste", "A:" + secretA + secretB},
	} {
		spec := tt.spec
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(spec, ":") {
			}
			is := is.New(t)
			_, err := NewTokens(spec, time.Minute)
			is.True(err != nil) // every one of these specs is refused
			for _, s := range []string{secretA, secretB} {
				is.True(!strings.Contains(err.Error(), s)) // no secret in the message
			}
		})
	}
}

func TestTokensRoundTrip(t *testing.T) {
	is := is.New(t)
	now := t0.Add(123 * time.Millisecond)
	tk := newTestTokens(t, "A:"+secretA, &now)

	tok, exp := tk.Mint("batch-1", "alice")
	is.Equal(exp, t0.Add(5*time.Minute)) // now + TTL, to the second
	parts := strings.Split(tok, ".")
	is.Equal(len(parts), 4)
	is.Equal(parts[0], "pt1")                 // the version
	is.Equal(parts[1], "A")                   // the signing key's id
	is.True(!strings.ContainsAny(tok, "+/=")) // safe in a URL query

	p, err := tk.Verify(tok, "batch-1")
	is.NoErr(err)
	is.Equal(p, Principal{UserID: "alice", Via: "progress-token", BatchID: "batch-1"})

	// Another instance with the same keys (another function) verifies it too.
	other := newTestTokens(t, "A:"+secretA, &now)
	p, err = other.Verify(tok, "batch-1")
	is.NoErr(err)
	is.Equal(p.UserID, "alice")
}

// A token is valid until its expiry, and not at or after it.
func TestTokensExpire(t *testing.T) {
	is := is.New(t)
	now := t0
	tk := newTestTokens(t, "A:"+secretA, &now)
	tok, exp := tk.Mint("batch-1", "alice")

	now = exp.Add(-time.Nanosecond)
	_, err := tk.Verify(tok, "batch-1")
	is.NoErr(err) // just before

	now = exp
	_, err = tk.Verify(tok, "batch-1")
	checkCode(t, err, problem.Unauthenticated) // at expiry

	now = exp.Add(time.Hour)
	_, err = tk.Verify(tok, "batch-1")
	checkCode(t, err, problem.Unauthenticated) // long after
}

// Every bad token is UNAUTHENTICATED with the same detail, so a client learns
// nothing about why.
func TestTokensRefused(t *testing.T) {
	now := t0
	signer := newTestTokens(t, "A:"+secretA, &now)
	tok, _ := signer.Mint("batch-1", "alice")
	parts := strings.Split(tok, ".")
	join := func(p ...string) string { return strings.Join(p, ".") }
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	payload := func(batch, user string, exp int64) string {
		b, err := json.Marshal(tokenPayload{Batch: batch, User: user, Expires: exp})
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	// resign signs a head with secret A, as only the server could.
	resign := func(head string) string {
		return head + "." + base64.RawURLEncoding.EncodeToString(mac(mustDecode(t, secretA), head))
	}
	exp := t0.Add(5 * time.Minute).Unix()
	otherKey, _ := newTestTokens(t, "Z:"+secretC, &now).Mint("batch-1", "alice")
	sameKidOtherSecret, _ := newTestTokens(t, "A:"+secretC, &now).Mint("batch-1", "alice")

	tests := []struct {
		name  string
		token string
		batch string
	}{
		{"another batch", tok, "batch-2"},
		{"no batch", tok, ""},
		{"tampered payload: one character", join(parts[0], parts[1], flip(parts[2], 5), parts[3]), "batch-1"},
		{"tampered payload: another user", join(parts[0], parts[1], payload("batch-1", "mallory", exp), parts[3]), "batch-1"},
		{"tampered payload: later expiry", join(parts[0], parts[1], payload("batch-1", "alice", exp+3600), parts[3]), "batch-1"},
		{"tampered payload: another batch", join(parts[0], parts[1], payload("batch-2", "alice", exp), parts[3]), "batch-2"},
		{"tampered signature: first character", join(parts[0], parts[1], parts[2], flip(parts[3], 0)), "batch-1"},
		{"tampered signature: middle character", join(parts[0], parts[1], parts[2], flip(parts[3], 20)), "batch-1"},
		{"truncated signature", join(parts[0], parts[1], parts[2], parts[3][:len(parts[3])-4]), "batch-1"},
		{"signature not base64", join(parts[0], parts[1], parts[2], "!!!!"), "batch-1"},
		{"no signature", join(parts[0], parts[1], parts[2], ""), "batch-1"},
		{"unknown kid", join(parts[0], "Z", parts[2], parts[3]), "batch-1"},
		{"empty kid", join(parts[0], "", parts[2], parts[3]), "batch-1"},
		{"signed by an unknown key", otherKey, "batch-1"},
		{"same kid, another secret", sameKidOtherSecret, "batch-1"},
		{"another version", join("pt2", parts[1], parts[2], parts[3]), "batch-1"},
		{"three parts", join(parts[0], parts[2], parts[3]), "batch-1"},
		{"five parts", tok + ".x", "batch-1"},
		{"empty", "", "batch-1"},
		{"garbage", "garbage", "batch-1"},
		{"signed payload not base64", resign(join("pt1", "A", "%%%")), "batch-1"},
		{"signed payload not JSON", resign(join("pt1", "A", base64.RawURLEncoding.EncodeToString([]byte("nope")))), "batch-1"},
	}
	var details []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			p, err := signer.Verify(tt.token, tt.batch)
			checkCode(t, err, problem.Unauthenticated)
			is.Equal(p, Principal{})
			var pe *problem.Error
			is.True(errors.As(err, &pe))
			details = append(details, pe.Detail)
		})
	}
	is := is.New(t)
	for _, d := range details {
		is.Equal(d, details[0]) // one detail for every refusal
	}
	_, err := signer.Verify(tok, "batch-1")
	is.NoErr(err) // (the untouched token is good)
}

// Rotation: a new key is listed first and signs; the old one, listed after it,
// still verifies the tokens it signed until it is removed.
func TestTokensRotation(t *testing.T) {
	is := is.New(t)
	now := t0
	before := newTestTokens(t, "A:"+secretA, &now)
	during := newTestTokens(t, "B:"+secretB+",A:"+secretA, &now)
	after := newTestTokens(t, "B:"+secretB, &now)

	oldTok, _ := before.Mint("batch-1", "alice")
	p, err := during.Verify(oldTok, "batch-1")
	is.NoErr(err) // A's tokens still verify while A is listed
	is.Equal(p.UserID, "alice")

	newTok, _ := during.Mint("batch-1", "alice")
	is.Equal(strings.Split(newTok, ".")[1], "B") // B signs new ones
	_, err = during.Verify(newTok, "batch-1")
	is.NoErr(err)
	_, err = after.Verify(newTok, "batch-1")
	is.NoErr(err) // and they outlive A

	_, err = after.Verify(oldTok, "batch-1")
	checkCode(t, err, problem.Unauthenticated) // A removed: its tokens are refused
	_, err = before.Verify(newTok, "batch-1")
	checkCode(t, err, problem.Unauthenticated) // an instance that does not know B yet refuses B's
}

// A spec that lists one id twice must not leave the signer unable to verify
// its own tokens.
func TestTokensDuplicateKeyID(t *testing.T) {
	is := is.New(t)
	now := t0
	tk, err := NewTokens("A:"+secretB+",A:"+secretA, time.Minute)
	if err != nil {
		return // refusing the spec is a fix too
	}
	tk.now = func() time.Time { return now }
	tok, _ := tk.Mint("batch-1", "alice")
	_, err = tk.Verify(tok, "batch-1")
	is.NoErr(err) // its own token verifies
}

// Stream takes the "token" query parameter when present, even alongside a
// bearer header, and otherwise the deployment's own authenticator.
func TestStream(t *testing.T) {
	now := t0
	tk := newTestTokens(t, "A:"+secretA, &now)
	tok1, _ := tk.Mint("batch-1", "alice")
	tok2, _ := tk.Mint("batch-2", "alice")
	bearerUser := Principal{UserID: "bob", Via: "apikey"}

	tests := []struct {
		name         string
		path         string
		bearer       bool // a valid Authorization header
		want         Principal
		ok           bool
		bearerCalled bool
	}{
		{"token", "/progress/batch-1?token=" + tok1, false, Principal{UserID: "alice", Via: "progress-token", BatchID: "batch-1"}, true, false},
		{"token wins over bearer", "/progress/batch-1?token=" + tok1, true, Principal{UserID: "alice", Via: "progress-token", BatchID: "batch-1"}, true, false},
		{"bearer without token", "/progress/batch-1", true, bearerUser, true, true},
		{"empty token: bearer", "/progress/batch-1?token=", true, bearerUser, true, true},
		{"token of another batch", "/progress/batch-1?token=" + tok2, false, Principal{}, false, false},
		{"token of another batch, valid bearer", "/progress/batch-1?token=" + tok2, true, Principal{}, false, false},
		{"bad token, valid bearer", "/progress/batch-1?token=garbage", true, Principal{}, false, false},
		{"nothing", "/progress/batch-1", false, Principal{}, false, true},
		{"token among other parameters", "/progress/batch-1?lastEventId=x&token=" + tok1 + "&a=b", false, Principal{UserID: "alice", Via: "progress-token", BatchID: "batch-1"}, true, false},
		{"token percent-encoded", "/progress/batch-1?token=" + strings.ReplaceAll(tok1, ".", "%2E"), false, Principal{UserID: "alice", Via: "progress-token", BatchID: "batch-1"}, true, false},
		{"first token wins", "/progress/batch-1?token=" + tok2 + "&token=" + tok1, false, Principal{}, false, false},
		{"a parameter ending in token is not it", "/progress/batch-1?mytoken=" + tok1, true, bearerUser, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			bearerCalls := 0
			s := Stream{Tokens: tk, Bearer: funcAuth(func(r *http.Request) (Principal, error) {
				bearerCalls++
				if r.Header.Get("Authorization") != "Bearer ak_good" {
					return Principal{}, problem.New(problem.Unauthenticated, "no key")
				}
				return bearerUser, nil
			})}
			next := &whoHandler{}
			mux := http.NewServeMux()
			mux.Handle("GET /progress/{batchId}", Require(s, next))
			r := httptest.NewRequest(http.MethodGet, tt.path, nil)
			if tt.bearer {
				r.Header.Set("Authorization", "Bearer ak_good")
			}
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, r)

			is.Equal(bearerCalls > 0, tt.bearerCalled) // which authenticator answered
			if !tt.ok {
				is.Equal(next.calls, 0)
				checkProblem(t, rec, problem.Unauthenticated)
				return
			}
			is.Equal(rec.Code, http.StatusNoContent)
			is.Equal(next.calls, 1)
			is.Equal(next.who, tt.want)
		})
	}
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
