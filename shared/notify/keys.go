package notify

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// AlgEd25519 is the only signature algorithm of webhooks.
const AlgEd25519 = "Ed25519"

// maxKeyID bounds a key id, which travels in every signature header.
const maxKeyID = 64

// SigningKeys are a deployment's webhook signing keys, in order: the first
// signs every delivery, and all are published (a receiver keeps verifying
// signatures of a key being retired, and learns a new key before it signs).
// Private halves never leave the instance; Public is what receivers get.
type SigningKeys struct {
	keys []signingKey
}

type signingKey struct {
	id   string
	priv ed25519.PrivateKey
}

// ParseSigningKeys parses "id:base64-seed,id2:base64-seed": each seed is the
// 32-byte Ed25519 private key seed (RFC 8032), in standard base64, and the ids
// are distinct, 1 to 64 letters, digits, '.', '_' or '-'. The first key signs.
// The error never repeats a seed.
func ParseSigningKeys(spec string) (*SigningKeys, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, errors.New("notify: no webhook signing key (want id:base64-seed,…)")
	}
	k := &SigningKeys{}
	seen := map[string]bool{}
	for n, part := range strings.Split(spec, ",") {
		id, enc, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok || !validKeyID(id) {
			return nil, fmt.Errorf("notify: webhook signing key #%d: want id:base64-seed, the id 1 to %d letters, digits, '.', '_' or '-'", n+1, maxKeyID)
		}
		if seen[id] {
			return nil, fmt.Errorf("notify: webhook signing key #%d: id %q appears twice", n+1, id)
		}
		seen[id] = true
		seed, err := base64.StdEncoding.DecodeString(enc)
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("notify: webhook signing key %q: the seed must be %d bytes in standard base64", id, ed25519.SeedSize)
		}
		k.keys = append(k.keys, signingKey{id: id, priv: ed25519.NewKeyFromSeed(seed)})
	}
	return k, nil
}

func validKeyID(id string) bool {
	if id == "" || len(id) > maxKeyID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// SigningKeyID is the id of the key that signs.
func (k *SigningKeys) SigningKeyID() string { return k.keys[0].id }

// Sign returns the HeaderSignature value for body sent at at, signed with the
// first key: "t=<unix>,kid=<id>,ed25519=<base64 signature of "<unix>." + body>".
func (k *SigningKeys) Sign(at time.Time, body []byte) string {
	ts := strconv.FormatInt(at.Unix(), 10)
	key := k.keys[0]
	sig := ed25519.Sign(key.priv, signedMessage(ts, body))
	return "t=" + ts + ",kid=" + key.id + ",ed25519=" + base64.StdEncoding.EncodeToString(sig)
}

// signedMessage is what a signature covers: the timestamp, a dot, the raw body.
func signedMessage(ts string, body []byte) []byte {
	m := make([]byte, 0, len(ts)+1+len(body))
	m = append(m, ts...)
	m = append(m, '.')
	return append(m, body...)
}

// Public is the published key set: every key's public half, signing key first.
func (k *SigningKeys) Public() KeySet {
	s := KeySet{Keys: make([]PublicKey, 0, len(k.keys))}
	for _, key := range k.keys {
		pub := key.priv.Public().(ed25519.PublicKey)
		s.Keys = append(s.Keys, PublicKey{KID: key.id, Alg: AlgEd25519, PublicKey: base64.StdEncoding.EncodeToString(pub)})
	}
	return s
}

// KeySet is the JSON document of GET /webhooks/keys.
type KeySet struct {
	Keys []PublicKey `json:"keys"`
}

// PublicKey is one published verification key.
type PublicKey struct {
	KID string `json:"kid"`
	Alg string `json:"alg"` // AlgEd25519
	// PublicKey is the raw 32-byte Ed25519 public key, standard base64.
	PublicKey string `json:"publicKey"`
}

// lookup returns the Ed25519 key published under kid.
func (s KeySet) lookup(kid string) (ed25519.PublicKey, bool) {
	for _, k := range s.Keys {
		if k.KID != kid || k.Alg != AlgEd25519 {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(k.PublicKey)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, false
		}
		return ed25519.PublicKey(b), true
	}
	return nil, false
}

// Has reports whether the set publishes a usable key under kid.
func (s KeySet) Has(kid string) bool {
	_, ok := s.lookup(kid)
	return ok
}

// Errors of Verify.
var (
	ErrNoSignature        = errors.New("notify: no signature")
	ErrMalformedSignature = errors.New("notify: malformed signature header")
	ErrUnknownKey         = errors.New("notify: signature names a key that is not published")
	ErrBadSignature       = errors.New("notify: signature does not match")
	ErrStaleSignature     = errors.New("notify: signature timestamp outside the tolerance")
)

// Signature is a parsed HeaderSignature value.
type Signature struct {
	Timestamp int64  // t, unix seconds
	KeyID     string // kid
	ts        string // t as sent: the signed bytes
	sig       []byte
}

// ParseSignature parses "t=<unix>,kid=<id>,ed25519=<base64>": each field
// once, spaces after commas tolerated, unknown fields ignored (a future
// scheme may add its own).
func ParseSignature(header string) (Signature, error) {
	if header == "" {
		return Signature{}, ErrNoSignature
	}
	if len(header) > 1024 {
		return Signature{}, ErrMalformedSignature
	}
	var (
		s              Signature
		ts, kid, sigOK bool
	)
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return Signature{}, ErrMalformedSignature
		}
		switch k {
		case "t":
			if ts || v == "" || strings.TrimLeft(v, "0123456789") != "" || len(v) > 12 {
				return Signature{}, ErrMalformedSignature
			}
			s.Timestamp, _ = strconv.ParseInt(v, 10, 64) // digits only, at most 12
			s.ts, ts = v, true
		case "kid":
			if kid || !validKeyID(v) {
				return Signature{}, ErrMalformedSignature
			}
			s.KeyID, kid = v, true
		case "ed25519":
			b, err := base64.StdEncoding.DecodeString(v)
			if sigOK || err != nil || len(b) != ed25519.SignatureSize {
				return Signature{}, ErrMalformedSignature
			}
			s.sig, sigOK = b, true
		}
	}
	if !ts || !kid || !sigOK {
		return Signature{}, ErrMalformedSignature
	}
	return s, nil
}

// Verify is the receiver's recipe: it parses header (HeaderSignature's
// value), finds the key named by kid in keys (the document of GET
// /webhooks/keys), checks the Ed25519 signature over "<t>." + body, and then
// that t is within tolerance of now (zero or less means DefaultTolerance),
// which bounds replays; dedupe on HeaderDelivery for the rest. body must be
// the raw bytes received, before any JSON decoding.
func Verify(keys KeySet, header string, body []byte, now time.Time, tolerance time.Duration) error {
	s, err := ParseSignature(header)
	if err != nil {
		return err
	}
	pub, ok := keys.lookup(s.KeyID)
	if !ok {
		return ErrUnknownKey
	}
	if !ed25519.Verify(pub, signedMessage(s.ts, body), s.sig) {
		return ErrBadSignature
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if d := now.Sub(time.Unix(s.Timestamp, 0)); d > tolerance || d < -tolerance {
		return ErrStaleSignature
	}
	return nil
}
