package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/cached"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/problem"
)

// keySource is a config source whose object and failure the test changes; it
// counts its reads.
type keySource struct {
	mu    sync.Mutex
	body  []byte
	err   error
	reads int
}

func (s *keySource) read(context.Context) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	return s.body, s.err
}

func (s *keySource) set(body []byte, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body, s.err = body, err
}

func (s *keySource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// keyTable is the config object for keys (key → user).
func keyTable(t *testing.T, keys map[string]string) []byte {
	t.Helper()
	doc := map[string]map[string]keyEntry{"keys": {}}
	for k, u := range keys {
		doc["keys"][HashKey(k)] = keyEntry{User: u, Name: "key of " + u}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func keyRequest(bearer, xAPIKey string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/batch/images", nil)
	if bearer != "" {
		r.Header.Set("Authorization", bearer)
	}
	if xAPIKey != "" {
		r.Header.Set("X-Api-Key", xAPIKey)
	}
	return r
}

func TestHashKey(t *testing.T) {
	is := is.New(t)
	// Known SHA-256 digests (FIPS 180-2 "abc", and the empty string).
	is.Equal(HashKey("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
	is.Equal(HashKey(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
	sum := sha256.Sum256([]byte("ak_live_0123456789"))
	is.Equal(HashKey("ak_live_0123456789"), hex.EncodeToString(sum[:])) // lower-case hex
	is.Equal(len(HashKey("x")), 64)
}

func TestAPIKeysAuthenticate(t *testing.T) {
	table := map[string]string{
		"ak_render_farm": "render-farm",
		"ak_ci":          "ci-bot",
	}
	tests := []struct {
		name    string
		bearer  string // Authorization header
		xAPIKey string
		want    string // user; "" when refused
	}{
		{"bearer", "Bearer ak_render_farm", "", "render-farm"},
		{"bearer, lower-case scheme", "bearer ak_ci", "", "ci-bot"},
		{"X-Api-Key", "", "ak_ci", "ci-bot"},
		{"X-Api-Key wins over bearer", "Bearer ak_render_farm", "ak_ci", "ci-bot"},
		{"the other key maps to the other user", "Bearer ak_ci", "", "ci-bot"},
		{"unknown bearer key", "Bearer ak_unknown", "", ""},
		{"unknown X-Api-Key", "", "ak_unknown", ""},
		{"unknown X-Api-Key, valid bearer", "Bearer ak_ci", "ak_unknown", ""},
		{"a stored hash is not a key", "Bearer " + HashKey("ak_ci"), "", ""},
		{"key in another case", "Bearer AK_CI", "", ""},
		{"basic scheme", "Basic ak_ci", "", ""},
		{"empty bearer", "Bearer ", "", ""},
		{"no credential", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			src := &keySource{body: keyTable(t, table)}
			a := NewAPIKeys(src.read, time.Minute)
			p, err := a.Authenticate(keyRequest(tt.bearer, tt.xAPIKey))
			if tt.want == "" {
				checkCode(t, err, problem.Unauthenticated)
				is.Equal(p, Principal{})
			} else {
				is.NoErr(err)
				is.Equal(p, Principal{UserID: tt.want, Via: "apikey"})
			}

			next := &whoHandler{}
			rec := httptest.NewRecorder()
			Require(a, next).ServeHTTP(rec, keyRequest(tt.bearer, tt.xAPIKey))
			if tt.want == "" {
				is.Equal(next.calls, 0)
				checkProblem(t, rec, problem.Unauthenticated)
				return
			}
			is.Equal(next.calls, 1)
			is.Equal(next.who, Principal{UserID: tt.want, Via: "apikey"})
		})
	}
}

// An entry without a user does not authenticate anyone.
func TestAPIKeysEntryWithoutUser(t *testing.T) {
	is := is.New(t)
	body, err := json.Marshal(map[string]any{"keys": map[string]any{HashKey("ak_orphan"): map[string]string{"name": "orphan"}}})
	is.NoErr(err)
	a := NewAPIKeys((&keySource{body: body}).read, time.Minute)
	_, err = a.Authenticate(keyRequest("Bearer ak_orphan", ""))
	checkCode(t, err, problem.Unauthenticated)
}

// No object (nil bytes) is an empty table: every key is unknown, and the
// service is ready.
func TestAPIKeysNoObject(t *testing.T) {
	for _, body := range [][]byte{nil, []byte(`{}`), []byte(`{"keys": null}`)} {
		t.Run(string(body), func(t *testing.T) {
			a := NewAPIKeys((&keySource{body: body}).read, time.Minute)
			_, err := a.Authenticate(keyRequest("Bearer ak_ci", ""))
			checkCode(t, err, problem.Unauthenticated)
		})
	}
}

// The table is read once per TTL: a key added or revoked takes effect at the
// first request after the TTL.
func TestAPIKeysReloadAfterTTL(t *testing.T) {
	is := is.New(t)
	src := &keySource{body: keyTable(t, map[string]string{"ak_old": "alice"})}
	now := t0
	a := keysAt(src, 5*time.Minute, &now)
	user := func(key string) string {
		p, err := a.Authenticate(keyRequest("Bearer "+key, ""))
		if err != nil {
			return ""
		}
		return p.UserID
	}

	is.Equal(user("ak_old"), "alice")
	is.Equal(src.count(), 1) // the first request reads the table

	src.set(keyTable(t, map[string]string{"ak_new": "bob"}), nil) // ak_old revoked, ak_new added
	now = now.Add(5*time.Minute - time.Nanosecond)
	is.Equal(user("ak_old"), "alice") // within the TTL: the old table
	is.Equal(user("ak_new"), "")
	is.Equal(src.count(), 1) // and no read

	now = now.Add(time.Nanosecond)
	is.Equal(user("ak_new"), "bob") // after the TTL: the new table
	is.Equal(user("ak_old"), "")    // the revoked key is refused
	is.Equal(src.count(), 2)        // one read
}

// A reload that cannot read the source keeps the last good table.
func TestAPIKeysFailingReloadKeepsLastGoodTable(t *testing.T) {
	for _, tt := range []struct {
		name string
		body []byte
		err  error
	}{
		{"source fails", nil, errors.New("storage unavailable")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			src := &keySource{body: keyTable(t, map[string]string{"ak_ci": "ci-bot"})}
			now := t0
			a := keysAt(src, time.Minute, &now)

			p, err := a.Authenticate(keyRequest("", "ak_ci"))
			is.NoErr(err)
			is.Equal(p.UserID, "ci-bot")

			src.set(tt.body, tt.err)
			now = now.Add(time.Hour)
			p, err = a.Authenticate(keyRequest("", "ak_ci"))
			is.NoErr(err) // the last good table
			is.Equal(p.UserID, "ci-bot")
			_, err = a.Authenticate(keyRequest("", "ak_unknown"))
			checkCode(t, err, problem.Unauthenticated) // still refuses unknown keys
			is.True(src.count() >= 2)                  // the reload was tried

			src.set(keyTable(t, map[string]string{"ak_ci": "ci-bot-2"}), nil)
			reads := src.count()
			p, err = a.Authenticate(keyRequest("", "ak_ci"))
			is.NoErr(err)
			is.Equal(p.UserID, "ci-bot") // a failed reload waits for a back-off before the next try
			is.Equal(src.count(), reads) // without reading the source on every request
			now = now.Add(time.Hour)
			p, err = a.Authenticate(keyRequest("", "ak_ci"))
			is.NoErr(err)
			is.Equal(p.UserID, "ci-bot-2") // the source recovered: its table is used
		})
	}
}

// A table that is read but invalid is dropped, not served from the last good
// copy (its edit may have revoked a key): every key request is CONFIG_INVALID
// until the object is fixed, tried again after a back-off.
func TestAPIKeysInvalidTableRefusesEveryKey(t *testing.T) {
	for _, tt := range []struct {
		name string
		body []byte
	}{
		{"object is not JSON", []byte("{not json")},
		{"object has the wrong shape", []byte(`{"keys": ["a", "b"]}`)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			src := &keySource{body: keyTable(t, map[string]string{"ak_ci": "ci-bot"})}
			now := t0
			a := keysAt(src, time.Minute, &now)
			p, err := a.Authenticate(keyRequest("", "ak_ci"))
			is.NoErr(err)
			is.Equal(p.UserID, "ci-bot")
			is.NoErr(a.Config().Valid(t.Context())) // a good table is valid

			src.set(tt.body, nil)
			now = now.Add(time.Hour)
			_, err = a.Authenticate(keyRequest("", "ak_ci"))
			checkCode(t, err, problem.ConfigInvalid) // the good key no longer works
			rec := httptest.NewRecorder()
			Require(a, &whoHandler{}).ServeHTTP(rec, keyRequest("", "ak_ci"))
			checkProblem(t, rec, problem.ConfigInvalid)         // 503 problem+json
			is.True(a.Config().Valid(t.Context()) != nil)       // readiness fails
			is.Equal(a.Config().Object(), layout.APIKeysObject) // naming the object

			src.set(keyTable(t, map[string]string{"ak_ci": "ci-bot"}), nil)
			now = now.Add(time.Second) // the back-off after one failure
			p, err = a.Authenticate(keyRequest("", "ak_ci"))
			is.NoErr(err) // fixed: the key works again
			is.Equal(p.UserID, "ci-bot")
			is.NoErr(a.Config().Valid(t.Context())) // and readiness recovers
		})
	}
}

// With no table yet, a failing source is NOT_READY, not UNAUTHENTICATED: the
// caller may well hold a good key. No key is accepted until a table is read,
// which is tried again after a back-off.
func TestAPIKeysNotReadyWithoutTable(t *testing.T) {
	for _, tt := range []struct {
		name string
		body []byte
		err  error
	}{
		{"source fails", nil, errors.New("storage unavailable")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			src := &keySource{body: tt.body, err: tt.err}
			now := t0
			a := keysAt(src, time.Minute, &now)

			_, err := a.Authenticate(keyRequest("Bearer ak_ci", ""))
			checkCode(t, err, problem.NotReady)

			next := &whoHandler{}
			rec := httptest.NewRecorder()
			Require(a, next).ServeHTTP(rec, keyRequest("Bearer ak_ci", ""))
			is.Equal(next.calls, 0)
			checkProblem(t, rec, problem.NotReady)

			src.set(keyTable(t, map[string]string{"ak_ci": "ci-bot"}), nil)
			_, err = a.Authenticate(keyRequest("Bearer ak_ci", ""))
			checkCode(t, err, problem.NotReady) // within the back-off: still no table
			is.Equal(src.count(), 1)            // and no read on every request
			now = now.Add(time.Second)
			p, err := a.Authenticate(keyRequest("Bearer ak_ci", ""))
			is.NoErr(err) // read again after the back-off
			is.Equal(p.UserID, "ci-bot")
		})
	}
}

// A request without any key is refused before the table is read, so it is
// UNAUTHENTICATED even while the source is down.
func TestAPIKeysNoCredentialDoesNotReadTable(t *testing.T) {
	is := is.New(t)
	src := &keySource{err: errors.New("storage unavailable")}
	a := NewAPIKeys(src.read, time.Minute)
	_, err := a.Authenticate(keyRequest("", ""))
	checkCode(t, err, problem.Unauthenticated)
	is.Equal(src.count(), 0)
}

// Concurrent requests share one read of the table.
func TestAPIKeysConcurrent(t *testing.T) {
	is := is.New(t)
	src := &keySource{body: keyTable(t, map[string]string{"ak_ci": "ci-bot", "ak_farm": "render-farm"})}
	a := NewAPIKeys(src.read, time.Hour)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Go(func() {
			key, want := "ak_ci", "ci-bot"
			if i%2 == 1 {
				key, want = "ak_farm", "render-farm"
			}
			p, err := a.Authenticate(keyRequest("Bearer "+key, ""))
			if err == nil && p.UserID != want {
				err = errors.New("wrong user " + p.UserID)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		is.NoErr(err)
	}
	is.Equal(src.count(), 1)
}

var t0 = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

// keysAt is an APIKeys over src on a clock the test moves (from one goroutine).
func keysAt(src *keySource, ttl time.Duration, now *time.Time) *APIKeys {
	return newAPIKeys(src.read, cached.Options{TTL: ttl, Backoff: time.Second,
		Now: func() time.Time { return *now }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
}
