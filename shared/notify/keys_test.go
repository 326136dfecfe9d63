package notify

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

// seedOf is a fixed test seed: 32 bytes of n, standard base64.
func seedOf(n byte) string {
	return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{n}, ed25519.SeedSize))
}

func mustKeys(spec string) *SigningKeys {
	k, err := ParseSigningKeys(spec)
	if err != nil {
		panic(err)
	}
	return k
}

func TestParseSigningKeys(t *testing.T) {
	tests := []struct {
		name string
		spec string
		ids  []string // the published ids, in order; nil: refused
	}{
		{"one key", "k1:" + seedOf(1), []string{"k1"}},
		{"two keys, the first signs", "k2:" + seedOf(2) + ",k1:" + seedOf(1), []string{"k2", "k1"}},
		{"spaces around entries", " k1:" + seedOf(1) + " , k2:" + seedOf(2) + " ", []string{"k1", "k2"}},
		{"id characters", "2026-01_a.b:" + seedOf(1), []string{"2026-01_a.b"}},
		{"empty", "", nil},
		{"blank", "  ", nil},
		{"no id", seedOf(1), nil},
		{"empty id", ":" + seedOf(1), nil},
		{"id with a slash", "k/1:" + seedOf(1), nil},
		{"id too long", strings.Repeat("k", 65) + ":" + seedOf(1), nil},
		{"duplicate id", "k1:" + seedOf(1) + ",k1:" + seedOf(2), nil},
		{"not base64", "k1:!!!!", nil},
		{"url-safe base64", "k1:" + strings.NewReplacer("+", "-", "/", "_").Replace(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32))), nil},
		{"seed too short", "k1:" + base64.StdEncoding.EncodeToString(make([]byte, 31)), nil},
		{"a whole private key, not a seed", "k1:" + base64.StdEncoding.EncodeToString(make([]byte, 64)), nil},
		{"trailing comma", "k1:" + seedOf(1) + ",", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			k, err := ParseSigningKeys(tt.spec)
			if tt.ids == nil {
				is.True(err != nil) // refused
				if len(tt.spec) > 10 {
					is.True(!strings.Contains(err.Error(), seedOf(1))) // the error never repeats a seed
				}
				return
			}
			is.NoErr(err) // parsed
			var ids []string
			for _, p := range k.Public().Keys {
				ids = append(ids, p.KID)
				is.Equal(p.Alg, AlgEd25519) // Ed25519
			}
			is.Equal(ids, tt.ids)                 // every key published, in order
			is.Equal(k.SigningKeyID(), tt.ids[0]) // the first signs
		})
	}
}

func TestPublicKeyIsTheSeedsPublicHalf(t *testing.T) {
	is := is.New(t)
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	k := mustKeys("k:" + base64.StdEncoding.EncodeToString(seed))
	want := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	is.Equal(k.Public().Keys[0].PublicKey, base64.StdEncoding.EncodeToString(want)) // the raw 32-byte public key
	b, err := json.Marshal(k.Public())
	is.NoErr(err) // marshals
	is.Equal(string(b), `{"keys":[{"kid":"k","alg":"Ed25519","publicKey":"`+base64.StdEncoding.EncodeToString(want)+`"}]}`)
	is.True(!strings.Contains(string(b), base64.StdEncoding.EncodeToString(seed))) // no private half
}

func TestVerify(t *testing.T) {
	now := epoch.Add(30 * time.Second)
	k1 := mustKeys("k1:" + seedOf(1))
	good := k1.Sign(epoch, body)
	sig := good[strings.Index(good, "ed25519=")+len("ed25519="):]
	// Another integrator's deployment, or an attacker, holding its own key
	// under the same id: its signature must not pass for k1's.
	forged := mustKeys("k1:"+seedOf(9)).Sign(epoch, body)
	published := k1.Public()
	tests := []struct {
		name   string
		keys   KeySet
		header string
		body   []byte
		want   error
	}{
		{name: "valid", keys: published, header: good, body: body},
		{name: "spaces after commas", keys: published, header: "t=1700000000, kid=k1, ed25519=" + sig, body: body},
		{name: "fields in another order", keys: published, header: "ed25519=" + sig + ",kid=k1,t=1700000000", body: body},
		{name: "unknown field ignored", keys: published, header: good + ",v9=zzz", body: body},
		{name: "body altered", keys: published, header: good, body: []byte(`{"type":"batch.finished","batchId":"b2"}`), want: ErrBadSignature},
		{name: "body with a trailing newline", keys: published, header: good, body: append(bytes.Clone(body), '\n'), want: ErrBadSignature},
		{name: "timestamp changed", keys: published, header: "t=1700000001,kid=k1,ed25519=" + sig, body: body, want: ErrBadSignature},
		{name: "timestamp padded", keys: published, header: "t=01700000000,kid=k1,ed25519=" + sig, body: body, want: ErrBadSignature},
		{name: "signed with another key", keys: published, header: forged, body: body, want: ErrBadSignature},
		{name: "kid unknown", keys: published, header: "t=1700000000,kid=k7,ed25519=" + sig, body: body, want: ErrUnknownKey},
		{name: "no keys published", keys: KeySet{}, header: good, body: body, want: ErrUnknownKey},
		{name: "published key of another algorithm", keys: KeySet{Keys: []PublicKey{{KID: "k1", Alg: "RS256", PublicKey: published.Keys[0].PublicKey}}},
			header: good, body: body, want: ErrUnknownKey},
		{name: "published key damaged", keys: KeySet{Keys: []PublicKey{{KID: "k1", Alg: AlgEd25519, PublicKey: "AAAA"}}},
			header: good, body: body, want: ErrUnknownKey},
		{name: "too old", keys: published, header: k1.Sign(now.Add(-6*time.Minute), body), body: body, want: ErrStaleSignature},
		{name: "too far ahead", keys: published, header: k1.Sign(now.Add(6*time.Minute), body), body: body, want: ErrStaleSignature},
		{name: "missing", keys: published, header: "", body: body, want: ErrNoSignature},
		{name: "garbage", keys: published, header: "garbage", body: body, want: ErrMalformedSignature},
		{name: "the former HMAC format", keys: published, header: "t=1700000000,v1=" + strings.Repeat("ab", 32), body: body, want: ErrMalformedSignature},
		{name: "no kid", keys: published, header: "t=1700000000,ed25519=" + sig, body: body, want: ErrMalformedSignature},
		{name: "no t", keys: published, header: "kid=k1,ed25519=" + sig, body: body, want: ErrMalformedSignature},
		{name: "no signature", keys: published, header: "t=1700000000,kid=k1", body: body, want: ErrMalformedSignature},
		{name: "t not a number", keys: published, header: "t=-5,kid=k1,ed25519=" + sig, body: body, want: ErrMalformedSignature},
		{name: "two t", keys: published, header: "t=1700000000," + good, body: body, want: ErrMalformedSignature},
		{name: "two kid", keys: published, header: good + ",kid=k1", body: body, want: ErrMalformedSignature},
		{name: "two signatures", keys: published, header: good + ",ed25519=" + sig, body: body, want: ErrMalformedSignature},
		{name: "signature not base64", keys: published, header: "t=1700000000,kid=k1,ed25519=" + strings.Repeat("*", 88), body: body, want: ErrMalformedSignature},
		{name: "signature short", keys: published, header: "t=1700000000,kid=k1,ed25519=" + base64.StdEncoding.EncodeToString(make([]byte, 63)), body: body, want: ErrMalformedSignature},
		{name: "huge", keys: published, header: good + strings.Repeat(",x=y", 500), body: body, want: ErrMalformedSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			err := Verify(tt.keys, tt.header, tt.body, now, 5*time.Minute)
			is.True(errors.Is(err, tt.want)) // the expected verdict
			if tt.want == nil {
				is.NoErr(err) // accepted
			}
		})
	}
	t.Run("default tolerance", func(t *testing.T) {
		is := is.New(t)
		is.NoErr(Verify(published, good, body, epoch.Add(4*time.Minute), 0))                              // within 5 minutes
		is.True(errors.Is(Verify(published, good, body, epoch.Add(6*time.Minute), 0), ErrStaleSignature)) // past them
	})
}

// TestRotation: an operator puts a new key first; deliveries are signed with
// it, both keys are published, and a signature the old key made before the
// rotation still verifies with the old key's published half. Once the old key
// is dropped, its signatures no longer verify.
func TestRotation(t *testing.T) {
	is := is.New(t)
	before := mustKeys("k1:" + seedOf(1))
	during := mustKeys("k2:" + seedOf(2) + ",k1:" + seedOf(1))
	after := mustKeys("k2:" + seedOf(2))

	oldSig := before.Sign(epoch, body)
	newSig := during.Sign(epoch, body)
	is.True(strings.Contains(newSig, ",kid=k2,"))                                                // the first key signs
	is.Equal(len(during.Public().Keys), 2)                                                       // both are published
	is.Equal(during.Public().Keys[1], before.Public().Keys[0])                                   // the old key's published half is unchanged
	is.NoErr(Verify(during.Public(), newSig, body, epoch, time.Minute))                          // new signatures verify
	is.NoErr(Verify(during.Public(), oldSig, body, epoch, time.Minute))                          // old ones still do, with the old key
	is.NoErr(Verify(after.Public(), newSig, body, epoch, time.Minute))                           // the new key alone carries on
	is.True(errors.Is(Verify(after.Public(), oldSig, body, epoch, time.Minute), ErrUnknownKey))  // a retired key verifies nothing
	is.True(errors.Is(Verify(before.Public(), newSig, body, epoch, time.Minute), ErrUnknownKey)) // a receiver with a stale copy learns of k2 by kid
}

func TestParseSignature(t *testing.T) {
	is := is.New(t)
	s, err := ParseSignature(mustKeys("abc:"+seedOf(3)).Sign(epoch, body))
	is.NoErr(err)                               // parses
	is.Equal(s.Timestamp, epoch.Unix())         // t
	is.Equal(s.KeyID, "abc")                    // kid
	is.Equal(len(s.sig), ed25519.SignatureSize) // the signature
}
