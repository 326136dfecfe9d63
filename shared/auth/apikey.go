package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/assetgen/assetgen/shared/cached"
	"github.com/assetgen/assetgen/shared/layout"
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
	keys *cached.Value[map[string]keyEntry]
}

// NewAPIKeys reads the key table through source (nil bytes: no keys), reloaded
// after ttl so a key is added or revoked without a deploy.
func NewAPIKeys(source func(ctx context.Context) ([]byte, error), ttl time.Duration) *APIKeys {
	return newAPIKeys(source, cached.Options{TTL: ttl})
}

// newAPIKeys keeps the table in a cached.Value: a table that cannot be read
// again keeps the last good one in force. One that is read but does not parse
// is dropped — it may be the edit that revoked a key — and every key request
// answers CONFIG_INVALID until it is fixed. Until a first good read, no key is
// accepted and callers get NOT_READY: the table fails closed.
func newAPIKeys(source func(ctx context.Context) ([]byte, error), opt cached.Options) *APIKeys {
	return &APIKeys{keys: cached.New(layout.APIKeysObject, func(ctx context.Context) (map[string]keyEntry, error) {
		b, err := source(ctx)
		if err != nil {
			return nil, err
		}
		return parseKeys(b)
	}, opt)}
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
	keys, err := a.keys.Get(r.Context())
	if errors.Is(err, cached.ErrInvalid) {
		return Principal{}, problem.Wrap(problem.ConfigInvalid, err, "the API key table is invalid; an operator must fix it")
	}
	if err != nil {
		return Principal{}, problem.Wrap(problem.NotReady, err, "the key table cannot be read")
	}
	e, ok := keys[HashKey(key)]
	if !ok || e.User == "" {
		return Principal{}, problem.New(problem.Unauthenticated, "the API key is not valid")
	}
	return Principal{UserID: e.User, Via: "apikey"}, nil
}

// Config is the key table's object, for readiness.
func (a *APIKeys) Config() cached.Validity { return a.keys }

// parseKeys reads the key table; no bytes is an empty table.
func parseKeys(b []byte) (map[string]keyEntry, error) {
	var doc struct {
		Keys map[string]keyEntry `json:"keys"`
	}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, cached.Invalid(fmt.Errorf("auth: parsing %s: %w", layout.APIKeysObject, err))
		}
	}
	if doc.Keys == nil {
		doc.Keys = map[string]keyEntry{}
	}
	return doc.Keys, nil
}
