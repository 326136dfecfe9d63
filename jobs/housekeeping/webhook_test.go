package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/completion"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/notify"
	"github.com/assetgen/assetgen/shared/refs"
)

// A webhook that failed when its batch finished is retried by the job, signed
// with WEBHOOK_SIGNING_KEYS' first key, and verifies with the published keys.
func TestRetriedWebhookIsSignedWithTheDeploymentKeys(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newStack(t)
	seed := func(n byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{n}, 32)) }
	spec := "k2:" + seed(2) + ",k1:" + seed(1)
	keys, err := notify.ParseSigningKeys(spec)
	is.NoErr(err)
	s.env["WEBHOOK_SIGNING_KEYS"] = spec
	s.env["REFS_ALLOW_LOOPBACK"] = "true" // the receiver is on this machine

	var (
		up   atomic.Bool
		mu   sync.Mutex
		sigs []string
		errs []error
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		sig := r.Header.Get(notify.HeaderSignature)
		mu.Lock()
		sigs = append(sigs, sig)
		errs = append(errs, notify.Verify(keys.Public(), sig, body, time.Now(), time.Minute))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)

	// The batch finished while the receiver was down: a retryable failure.
	created := time.Now().Add(-time.Hour).UTC()
	m := &ledger.Manifest{Schema: 1, BatchID: idAt(created), Owner: "user-1", RunMode: ledger.DryRun, Model: "gemini-2.5-flash-image",
		CreatedAt: created, PriceUSD: price, Notify: ledger.Notify{WebhookURL: hook.URL + "/hook"},
		Rows: []ledger.ManifestRow{{Index: 0, Prompt: "a fox", Variants: 1, AspectRatio: "1:1"}}}
	is.NoErr(s.store.CreateManifest(context.Background(), m)) // the batch asked for a webhook
	s.finishRow(t, m, 0, true)
	down := completion.Notifier{Webhooks: notify.NewWebhooks(keys, refs.SafeClient(true, time.Second, 0), 20*time.Millisecond)}
	done, err := completion.New(s.store, s.bucket, s.budgets, down).Finish(context.Background(), m)
	is.NoErr(err)
	is.True(done) // finished, the webhook recorded as failed

	up.Store(true)
	summary, _, err := s.run(t)
	is.NoErr(err)
	is.True(strings.Contains(summary, "renotified 1")) // the job retried it
	mu.Lock()
	defer mu.Unlock()
	is.Equal(len(sigs), 1)                         // one delivery
	is.NoErr(errs[0])                              // it verifies with the published keys
	is.True(strings.Contains(sigs[0], ",kid=k2,")) // signed by the first key
}
