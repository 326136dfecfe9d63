// Package urls signs short-lived GET URLs for ledger objects, and PUT URLs
// for reference uploads. The ledger stores object names only; URLs are
// signed when served.
package urls

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/storage"
)

// Signed is a URL and the moment it stops working.
type Signed struct {
	URL     string    `json:"url"`
	Expires time.Time `json:"expiresAt"`
}

// Signer signs V4 GET URLs for one bucket.
type Signer struct {
	bucket *storage.BucketHandle
	base   storage.SignedURLOptions
	ttl    time.Duration
	now    func() time.Time
}

// Options configure a Signer.
type Options struct {
	// TTL is how long a URL stays valid (V4 allows up to 7 days).
	TTL time.Duration
	// GoogleAccessID is the signing service account's email. Empty in the cloud
	// means: detect it from the runtime's credentials.
	GoogleAccessID string
	// PrivateKey (PEM) signs locally; empty in the cloud means: sign through the
	// IAM signBlob API as the service account.
	PrivateKey []byte
	// Insecure makes http:// URLs (the local emulator).
	Insecure bool
	// Now is the clock (tests).
	Now func() time.Time
}

// MaxTTL is the longest validity V4 signing allows.
const MaxTTL = 7 * 24 * time.Hour

// New returns a signer for bucket.
func New(bucket *storage.BucketHandle, o Options) (*Signer, error) {
	if o.TTL <= 0 || o.TTL > MaxTTL {
		return nil, fmt.Errorf("urls: TTL %s must be within (0, %s]", o.TTL, MaxTTL)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	base := storage.SignedURLOptions{
		Scheme:         storage.SigningSchemeV4,
		Method:         "GET",
		GoogleAccessID: o.GoogleAccessID,
		Insecure:       o.Insecure,
	}
	if len(o.PrivateKey) > 0 {
		// Given the key, the storage client would parse it for every URL;
		// parsed once, it signs the same bytes.
		key, err := parseKey(o.PrivateKey)
		if err != nil {
			return nil, err
		}
		base.SignBytes = func(b []byte) ([]byte, error) {
			sum := sha256.Sum256(b)
			return rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
		}
	}
	return &Signer{bucket: bucket, base: base, ttl: o.TTL, now: o.Now}, nil
}

// parseKey reads a PEM (or DER) RSA private key, PKCS #8 or PKCS #1, as the
// storage client does.
func parseKey(b []byte) (*rsa.PrivateKey, error) {
	if block, _ := pem.Decode(b); block != nil {
		b = block.Bytes
	}
	parsed, err := x509.ParsePKCS8PrivateKey(b)
	if err != nil {
		if parsed, err = x509.ParsePKCS1PrivateKey(b); err != nil {
			return nil, fmt.Errorf("urls: the signing key is not an RSA private key: %w", err)
		}
	}
	key, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("urls: the signing key is not an RSA private key")
	}
	return key, nil
}

// TTL is how long URLs from this signer stay valid.
func (s *Signer) TTL() time.Duration { return s.ttl }

// Sign returns a fresh URL for object.
func (s *Signer) Sign(object string) (Signed, error) {
	opts := s.options()
	u, err := s.bucket.SignedURL(object, opts)
	if err != nil {
		return Signed{}, fmt.Errorf("urls: sign %s: %w", object, err)
	}
	return Signed{URL: u, Expires: opts.Expires}, nil
}

// Upload is what a signed PUT URL binds besides its object: the request must
// carry exactly this content type and these headers, or Cloud Storage
// refuses it.
type Upload struct {
	ContentType string
	// Headers are extension headers (x-goog-…) signed into the URL, e.g.
	// x-goog-content-length-range: 0,<size> bounds what the PUT may store,
	// x-goog-if-generation-match: <generation> lets it replace only that
	// generation of the object.
	Headers map[string]string
	// TTL is how long the URL works, whatever the signer's TTL for GETs.
	TTL time.Duration
}

// SignUpload returns a V4 URL that PUTs object with the content type and
// headers of u until u.TTL from now.
func (s *Signer) SignUpload(object string, u Upload) (Signed, error) {
	if u.TTL <= 0 || u.TTL > MaxTTL {
		return Signed{}, fmt.Errorf("urls: upload TTL %s must be within (0, %s]", u.TTL, MaxTTL)
	}
	o := s.base
	o.Method = "PUT"
	o.ContentType = u.ContentType
	o.Expires = s.now().Add(u.TTL).Truncate(time.Second)
	for k, v := range u.Headers {
		o.Headers = append(o.Headers, strings.ToLower(k)+":"+v)
	}
	slices.Sort(o.Headers) // one order, so equal uploads sign equally
	url, err := s.bucket.SignedURL(object, &o)
	if err != nil {
		return Signed{}, fmt.Errorf("urls: sign upload %s: %w", object, err)
	}
	return Signed{URL: url, Expires: o.Expires}, nil
}

// options copies the base options for one URL, so concurrent signs never share
// mutable state.
func (s *Signer) options() *storage.SignedURLOptions {
	o := s.base
	// Truncate so the expiry in the URL and the one reported agree to the second.
	o.Expires = s.now().Add(s.ttl).Truncate(time.Second)
	return &o
}

// LocalAccessID is the made-up signer identity of the local stack.
const LocalAccessID = "assetgen-local@assetgen-local.iam.gserviceaccount.com"

// LoadOrCreateKey returns the PEM RSA key at path, creating it (0600) on first
// use. Only the local stack uses it: the emulator does not check signatures, but
// URLs are signed the same way as in the cloud.
func LoadOrCreateKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("urls: read key: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("urls: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("urls: encode key: %w", err)
	}
	b = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("urls: key dir: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("urls: write key: %w", err)
	}
	return b, nil
}

// LocalSecret derives a secret for purpose from the local signing key at
// keyFile, so the local stack's tokens and webhook signatures survive restarts
// without any configuration. Deployments configure real secrets instead.
func LocalSecret(keyFile, purpose string) ([]byte, error) {
	pem, err := LoadOrCreateKey(keyFile)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte("assetgen "+purpose+"\x00"), pem...))
	return sum[:], nil
}
