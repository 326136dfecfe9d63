package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/problem"
)

// A key table that is read but does not parse is not served from the last
// good copy (which may hold the key its edit revoked): every key request
// answers 503 CONFIG_INVALID and /readyz names the object, until the object
// is fixed; then both recover.
func TestInvalidKeyTableStopsKeysAndReadiness(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := startAppWith(t, map[string]string{"AUTH_MODE": "apikey", "CONFIG_TTL": "0"}, options{})
	goodTable := map[string]any{"keys": map[string]any{auth.HashKey("ak_alice"): map[string]string{"user": "alice"}}}
	putJSON(t, a, layout.APIKeysObject, goodTable)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	budget := func() (int, problem.Code) {
		req, _ := http.NewRequest(http.MethodGet, a.base+"/budget", nil)
		req.Header.Set("X-Api-Key", "ak_alice")
		return fetch(t, req)
	}
	ready := func() (int, map[string]string) {
		req, _ := http.NewRequest(http.MethodGet, a.base+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		is.NoErr(err)
		defer resp.Body.Close()
		var doc struct {
			Checks map[string]string `json:"checks"`
		}
		b, _ := io.ReadAll(resp.Body)
		is.NoErr(json.Unmarshal(b, &doc)) // readiness answers JSON
		return resp.StatusCode, doc.Checks
	}

	status, _ := budget()
	is.Equal(status, http.StatusOK) // the key works
	status, checks := ready()
	is.Equal(status, http.StatusOK)              // ready
	is.Equal(checks[layout.APIKeysObject], "ok") // with the key table checked

	putRaw(t, a, layout.APIKeysObject, []byte(`{"keys": {`)) // a broken edit
	pollUntil(t, ctx, "the broken table to take effect", func() bool {
		status, code := budget()
		return status == http.StatusServiceUnavailable && code == problem.ConfigInvalid
	})
	status, checks = ready()
	is.Equal(status, http.StatusServiceUnavailable)   // not ready
	is.Equal(checks[layout.APIKeysObject], "failing") // naming the object

	putJSON(t, a, layout.APIKeysObject, goodTable) // fixed
	pollUntil(t, ctx, "the fixed table to take effect", func() bool {
		status, _ := budget()
		return status == http.StatusOK
	})
	status, checks = ready()
	is.Equal(status, http.StatusOK) // ready again
	is.Equal(checks[layout.APIKeysObject], "ok")
}

// putRaw writes bytes as an object, as an operator's upload does.
func putRaw(t *testing.T, a *app, name string, b []byte) {
	t.Helper()
	w := a.platform.Storage.Bucket(a.cfg.Bucket).Object(name).NewWriter(context.Background())
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// fetch does req and returns its status and problem code ("" for success).
func fetch(t *testing.T, req *http.Request) (int, problem.Code) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Code problem.Code `json:"code"`
	}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &doc)
	return resp.StatusCode, doc.Code
}
