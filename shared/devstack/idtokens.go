package devstack

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/assetgen/assetgen/shared/auth"
)

// googleIssuer is the issuer of Google-signed ID tokens.
const googleIssuer = "https://accounts.google.com"

// IDTokens plays Google's token service for the local stack: it signs ID
// tokens for service accounts with an RSA key made at start (RS256, with a key
// id, the claims Cloud Tasks' OIDC tokens carry), and verifies them the way
// Cloud Run's IAM check does.
type IDTokens struct {
	key    *rsa.PrivateKey
	kid    string
	signer jose.Signer
	// TTL is the lifetime of minted tokens (Google's is an hour).
	TTL time.Duration
	now func() time.Time
}

// NewIDTokens makes a fresh signing key.
func NewIDTokens() (*IDTokens, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("devstack: id tokens: %w", err)
	}
	pub := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.RS256)}
	thumb, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("devstack: id tokens: %w", err)
	}
	kid := hex.EncodeToString(thumb[:8])
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		return nil, fmt.Errorf("devstack: id tokens: %w", err)
	}
	return &IDTokens{key: key, kid: kid, signer: signer, TTL: time.Hour, now: time.Now}, nil
}

// KeySet is the public key set, as Google publishes its signing keys.
func (k *IDTokens) KeySet() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.key.PublicKey, KeyID: k.kid, Algorithm: string(jose.RS256), Use: "sig"}}}
}

// Mint signs an ID token of the service account email for audience.
func (k *IDTokens) Mint(email, audience string) (string, error) {
	now := k.now()
	id := accountID(email)
	c := struct {
		auth.Claims
		AuthorizedParty string `json:"azp"`
	}{
		Claims: auth.Claims{
			Claims: jwt.Claims{
				Issuer:   googleIssuer,
				Subject:  id,
				Audience: jwt.Audience{audience},
				IssuedAt: jwt.NewNumericDate(now),
				Expiry:   jwt.NewNumericDate(now.Add(k.TTL)),
			},
			Email:         email,
			EmailVerified: true,
		},
		AuthorizedParty: id,
	}
	raw, err := jwt.Signed(k.signer).Claims(c).Serialize()
	if err != nil {
		return "", fmt.Errorf("devstack: mint id token: %w", err)
	}
	return raw, nil
}

// Verify checks a token's signature, issuer, expiry and that its audience is
// one of audiences.
func (k *IDTokens) Verify(raw string, audiences []string) (auth.Claims, error) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return auth.Claims{}, fmt.Errorf("devstack: id token: %w", err)
	}
	if len(tok.Headers) != 1 || tok.Headers[0].KeyID != k.kid {
		return auth.Claims{}, errors.New("devstack: id token: unknown signing key")
	}
	var c auth.Claims
	if err := tok.Claims(&k.key.PublicKey, &c); err != nil {
		return auth.Claims{}, fmt.Errorf("devstack: id token: %w", err)
	}
	if c.Expiry == nil {
		return auth.Claims{}, errors.New("devstack: id token: no expiry")
	}
	if err := c.Validate(jwt.Expected{Issuer: googleIssuer, AnyAudience: audiences, Time: k.now()}); err != nil {
		return auth.Claims{}, fmt.Errorf("devstack: id token: %w", err)
	}
	return c, nil
}

// accountID is a stable numeric id for a service account, the form of the
// sub claim of Google's tokens.
func accountID(email string) string {
	sum := sha256.Sum256([]byte(email))
	return fmt.Sprintf("1%020d", binary.BigEndian.Uint64(sum[:8])%1e19)
}
