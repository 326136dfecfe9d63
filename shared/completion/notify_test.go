package completion_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/completion"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/notify"
	"github.com/assetgen/assetgen/shared/refs"
)

// A webhook receiver that is down when the batch finishes gets the event when
// the housekeeping job retries, and a receiver that keeps answering 4xx is not
// retried; concurrent finishers announce once.
func TestNotificationsAreAnnouncedOnceAndRetried(t *testing.T) {
	is := is.New(t)
	s := open(t)
	var up atomic.Bool
	var mu sync.Mutex
	ids := map[string]int{}
	keys := testWebhookKeys(t)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		if err := notify.Verify(keys.Public(), r.Header.Get(notify.HeaderSignature), body, time.Now(), time.Minute); err != nil {
			w.WriteHeader(http.StatusUnauthorized) // final: the test's counts would show it
			return
		}
		mu.Lock()
		ids[r.Header.Get(notify.HeaderDelivery)]++
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(hook.Close)
	n := completion.Notifier{
		Webhooks: notify.NewWebhooks(keys, refs.SafeClient(true, time.Second, 0), 50*time.Millisecond),
		Link:     func(m *ledger.Manifest, row, variant int) string { return "https://example.test/a" },
	}
	f := completion.New(s.c.Ledger, s.c.Bucket, s.budgets, n)
	m := s.manifest(t, ledger.DryRun, 1)
	m.Notify.WebhookURL = hook.URL + "/hook"
	s.finishRow(t, m, 0, 0, 0)

	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if _, err := f.Finish(context.Background(), m); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	var fx completion.Effects
	is.NoErr(s.readJSON(context.Background(), ledger.EffectsObject(m.BatchID), &fx))
	is.Equal(len(fx.Notifications), 1)             // one announcement, though five finished at once
	is.Equal(fx.Notifications[0].Status, "failed") // the receiver was down
	is.True(fx.Retryable())                        // for a reason a retry may fix
	sd, err := f.Standing(context.Background(), m.BatchID)
	is.NoErr(err)
	is.True(sd.Settled)     // the effects are done
	is.True(sd.Undelivered) // but the housekeeping job has a delivery to retry

	up.Store(true)
	retried, err := f.RetryNotifications(context.Background(), m)
	is.NoErr(err)
	is.Equal(retried, 1)
	is.NoErr(s.readJSON(context.Background(), ledger.EffectsObject(m.BatchID), &fx))
	is.Equal(fx.Notifications[0].Status, "delivered") // the retry delivered it
	is.True(fx.Notifications[0].Attempts > 1)         // counting every attempt
	is.Equal(ids[m.BatchID+":webhook"], 1)
	sd, err = f.Standing(context.Background(), m.BatchID)
	is.NoErr(err)
	is.True(sd.Settled && !sd.Undelivered) // the newer outcome counts, not the final snapshot's

	retried, err = f.RetryNotifications(context.Background(), m)
	is.NoErr(err)
	is.Equal(retried, 0) // nothing left to retry
}

// testWebhookKeys is one fixed signing key.
func testWebhookKeys(t *testing.T) *notify.SigningKeys {
	t.Helper()
	k, err := notify.ParseSigningKeys("k1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Unset, the keys are required in the cloud and derived on the local stack
// from its signing key, the same across restarts.
func TestWebhookKeysFromConfig(t *testing.T) {
	is := is.New(t)
	keyFile := filepath.Join(t.TempDir(), "signing-key.pem")
	local := config.Config{StorageEmulatorHost: "127.0.0.1:1", SigningKeyFile: keyFile}
	a, err := completion.WebhookKeysFromConfig(local)
	is.NoErr(err) // derived locally
	b, err := completion.WebhookKeysFromConfig(local)
	is.NoErr(err)
	is.Equal(a.Public(), b.Public())                         // deterministic: a restart verifies the same
	is.Equal(a.SigningKeyID(), completion.LocalWebhookKeyID) // under the local id
	other, err := completion.WebhookKeysFromConfig(config.Config{StorageEmulatorHost: "127.0.0.1:1", SigningKeyFile: filepath.Join(t.TempDir(), "k.pem")})
	is.NoErr(err)
	is.True(other.Public().Keys[0].PublicKey != a.Public().Keys[0].PublicKey) // another machine, another key

	_, err = completion.WebhookKeysFromConfig(config.Config{})
	is.True(err != nil && strings.Contains(err.Error(), "WEBHOOK_SIGNING_KEYS is required")) // required in the cloud
	_, err = completion.WebhookKeysFromConfig(config.Config{WebhookSigningKeys: "k1:short"})
	is.True(err != nil && strings.Contains(err.Error(), "WEBHOOK_SIGNING_KEYS")) // malformed: refused
	k, err := completion.WebhookKeysFromConfig(config.Config{WebhookSigningKeys: "k1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))})
	is.NoErr(err)                    // configured: used as given, in the cloud too
	is.Equal(k.SigningKeyID(), "k1") // the first signs
}
