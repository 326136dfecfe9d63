package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/assetgen/assetgen/shared/problem"
)

// HashKey is how a key is stored: hex SHA-256.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

type keyEntry struct {
	User string `json:"user"`
	Name string `json:"name"`
}

// APIKeys authenticates server-to-server callers by key, sent as
// "Authorization: Bearer <key>" or "X-Api-Key: <key>".
type APIKeys struct {
	source func(ctx context.Context) ([]byte, error)
	ttl    time.Duration
	now    func() time.Time

	mu     sync.Mutex
	loaded time.Time
	keys   map[string]keyEntry
}

// NewAPIKeys reads the key table through source (nil bytes: no keys), reloaded
// after ttl so a key is added or revoked without a deploy.
func NewAPIKeys(source func(ctx context.Context) ([]byte, error), ttl time.Duration) *APIKeys {
	return &APIKeys{source: source, ttl: ttl, now: time.Now}
}

// Authenticate implements Authenticator.
func (a *APIKeys) Authenticate(r *http.Request) (Principal, error) {
	key := r.Header.Get("X-Api-Key")
	if key == "" {
		key, _ = bearer(r)
	}
	if key == "" {
		return Principal{}, problem.New(problem.Unauthenticated, "send an API key as Authorization: Bearer <key> or X-Api-Key")
	}
	keys, err := a.table(r.Context())
	if err != nil {
		return Principal{}, problem.Wrap(problem.NotReady, err, "the key table cannot be read")
	}
	e, ok := keys[HashKey(key)]
	if !ok || e.User == "" {
		return Principal{}, problem.New(problem.Unauthenticated, "the API key is not valid")
	}
	return Principal{UserID: e.User, Via: "apikey"}, nil
}

// table returns the keys, reloading after the TTL; a failed reload keeps the
// last good table.
func (a *APIKeys) table(ctx context.Context) (map[string]keyEntry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.keys != nil && a.now().Sub(a.loaded) < a.ttl {
		return a.keys, nil
	}
	b, err := a.source(ctx)
	if err != nil {
		if a.keys != nil {
			// Keep the last good table; try the source again after the TTL.
			a.loaded = a.now()
			return a.keys, nil
		}
		return nil, err
	}
	var doc struct {
		Keys map[string]keyEntry `json:"keys"`
	}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &doc); err != nil {
			if a.keys != nil {
				a.loaded = a.now()
				return a.keys, nil
			}
			return nil, err
		}
	}
	if doc.Keys == nil {
		doc.Keys = map[string]keyEntry{}
	}
	a.keys, a.loaded = doc.Keys, a.now()
	return a.keys, nil
}
