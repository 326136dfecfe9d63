package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/assetgen/assetgen/shared/notify"
)

// WebhookKeys reads the deployment's published webhook verification keys
// (GET /webhooks/keys; public, no credentials needed).
func (c *Client) WebhookKeys(ctx context.Context) (notify.KeySet, error) {
	var out notify.KeySet
	err := c.do(ctx, http.MethodGet, c.Base+"/webhooks/keys", nil, nil, &out)
	return out, err
}

// VerifyWebhook checks a completion webhook against published keys: header is
// the X-Assetgen-Signature value, body the raw bytes received (before any JSON
// decoding). The signature must be made by the key its kid names, over
// "<t>." + body, with t within 5 minutes of now. It returns the decoded event;
// a receiver serving several users then checks Event.UserID is one of its own.
func VerifyWebhook(keys notify.KeySet, header string, body []byte, now time.Time) (notify.Event, error) {
	if err := notify.Verify(keys, header, body, now, notify.DefaultTolerance); err != nil {
		return notify.Event{}, err
	}
	var ev notify.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		return notify.Event{}, fmt.Errorf("assetgen: webhook body: %w", err)
	}
	return ev, nil
}

// Refresh intervals of a WebhookVerifier's key cache.
const (
	// WebhookKeysTTL is how long fetched keys are trusted: as long as the
	// deployment lets caches keep them, so a key the operator retires stops
	// verifying soon after.
	WebhookKeysTTL = 5 * time.Minute
	// WebhookKeysRefetch is the least time between fetches that a signature
	// naming an unknown key causes, so forged key ids cannot make a receiver
	// hammer the deployment.
	WebhookKeysRefetch = 10 * time.Second
)

// WebhookVerifier verifies completion webhooks for a receiver, with the
// deployment's published keys fetched on first use, refreshed when older than
// WebhookKeysTTL, and fetched again when a signature names a key not yet seen
// (a rotation). Safe for concurrent use; build one per receiver.
type WebhookVerifier struct {
	c          *Client
	ttl        time.Duration
	minRefetch time.Duration
	now        func() time.Time

	mu      sync.Mutex
	keys    notify.KeySet
	fetched time.Time // of keys; zero: never
	tried   time.Time // the last fetch, successful or not
}

// NewWebhookVerifier returns a verifier that reads keys from c's deployment.
func (c *Client) NewWebhookVerifier() *WebhookVerifier {
	return &WebhookVerifier{c: c, ttl: WebhookKeysTTL, minRefetch: WebhookKeysRefetch, now: time.Now}
}

// Verify checks header and body as VerifyWebhook does, with the deployment's
// current keys, and returns the event. An error wrapping
// notify.ErrUnknownKey, notify.ErrBadSignature, notify.ErrStaleSignature or
// notify.ErrMalformedSignature means the request is not a genuine fresh
// delivery (answer 401); any other error is a failure to read the keys
// (answer 503 so that the delivery is retried).
func (v *WebhookVerifier) Verify(ctx context.Context, header string, body []byte) (notify.Event, error) {
	sig, err := notify.ParseSignature(header)
	if err != nil {
		return notify.Event{}, err
	}
	keys, err := v.keysFor(ctx, sig.KeyID)
	if err != nil {
		return notify.Event{}, err
	}
	return VerifyWebhook(keys, header, body, v.now())
}

// keysFor returns the cached keys, fetched first when there are none, when
// they are older than the TTL, or when kid is not among them and the last
// fetch attempt is not too recent.
func (v *WebhookVerifier) keysFor(ctx context.Context, kid string) (notify.KeySet, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	age := now.Sub(v.fetched)
	stale := v.fetched.IsZero() || age >= v.ttl
	if !stale && (v.keys.Has(kid) || now.Sub(v.tried) < v.minRefetch) {
		return v.keys, nil
	}
	v.tried = now
	keys, err := v.c.WebhookKeys(ctx)
	if err != nil {
		if !stale {
			return v.keys, nil // keep verifying with what is known; kid stays unknown
		}
		return notify.KeySet{}, fmt.Errorf("assetgen: read webhook keys: %w", err)
	}
	if len(keys.Keys) == 0 {
		return notify.KeySet{}, errors.New("assetgen: the deployment publishes no webhook keys")
	}
	v.keys, v.fetched = keys, now
	return keys, nil
}
