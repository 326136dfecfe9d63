package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/notify"
)

func signingKeys(t *testing.T, spec string) *notify.SigningKeys {
	t.Helper()
	k, err := notify.ParseSigningKeys(spec)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func seed(n byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{n}, 32)) }

// keyServer publishes a key set that a test can swap, and counts fetches.
type keyServer struct {
	srv     *httptest.Server
	fetches atomic.Int32
	mu      sync.Mutex
	keys    notify.KeySet
	fail    bool
}

func newKeyServer(t *testing.T, keys notify.KeySet) *keyServer {
	t.Helper()
	ks := &keyServer{keys: keys}
	ks.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/webhooks/keys" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		ks.fetches.Add(1)
		ks.mu.Lock()
		defer ks.mu.Unlock()
		if ks.fail {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ks.keys)
	}))
	t.Cleanup(ks.srv.Close)
	return ks
}

func (ks *keyServer) publish(keys notify.KeySet, fail bool) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.keys, ks.fail = keys, fail
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var event = []byte(`{"type":"batch.finished","deliveryId":"b1:webhook","batchId":"b1","userId":"google:42"}`)

func TestVerifyWebhook(t *testing.T) {
	is := is.New(t)
	k1 := signingKeys(t, "k1:"+seed(1))
	now := time.Unix(1_700_000_000, 0)
	ev, err := VerifyWebhook(k1.Public(), k1.Sign(now, event), event, now.Add(time.Minute))
	is.NoErr(err)                    // genuine and fresh
	is.Equal(ev.BatchID, "b1")       // decoded
	is.Equal(ev.UserID, "google:42") // with the owner to check

	other := signingKeys(t, "k1:"+seed(9)) // someone else's key, same id
	_, err = VerifyWebhook(k1.Public(), other.Sign(now, event), event, now)
	is.True(errors.Is(err, notify.ErrBadSignature)) // forged
	altered := bytes.Replace(event, []byte("google:42"), []byte("google:43"), 1)
	_, err = VerifyWebhook(k1.Public(), k1.Sign(now, event), altered, now)
	is.True(errors.Is(err, notify.ErrBadSignature)) // the user id cannot be swapped
	_, err = VerifyWebhook(k1.Public(), k1.Sign(now, event), event, now.Add(6*time.Minute))
	is.True(errors.Is(err, notify.ErrStaleSignature)) // a replay after 5 minutes
	unsigned := signingKeys(t, "k9:"+seed(1))
	_, err = VerifyWebhook(k1.Public(), unsigned.Sign(now, event), event, now)
	is.True(errors.Is(err, notify.ErrUnknownKey)) // a kid the deployment does not publish
}

// The verifier fetches keys once, learns a rotated key when a signature names
// it, refreshes after the TTL (a retired key stops verifying), and does not
// let unknown key ids make it fetch more than once per WebhookKeysRefetch.
func TestWebhookVerifier(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	before := signingKeys(t, "k1:"+seed(1))
	during := signingKeys(t, "k2:"+seed(2)+",k1:"+seed(1))
	after := signingKeys(t, "k2:"+seed(2))
	ks := newKeyServer(t, before.Public())
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	v := New(ks.srv.URL).NewWebhookVerifier()
	v.now = clk.now

	ev, err := v.Verify(ctx, before.Sign(clk.now(), event), event)
	is.NoErr(err)                    // verified with the fetched key
	is.Equal(ev.UserID, "google:42") // and decoded
	_, err = v.Verify(ctx, before.Sign(clk.now(), event), event)
	is.NoErr(err)
	is.Equal(ks.fetches.Load(), int32(1)) // the keys are cached

	// A forged kid fetches once, then waits for the refetch interval.
	forged := signingKeys(t, "evil:"+seed(7))
	for range 3 {
		_, err = v.Verify(ctx, forged.Sign(clk.now(), event), event)
		is.True(errors.Is(err, notify.ErrUnknownKey)) // not published
	}
	is.Equal(ks.fetches.Load(), int32(1)) // within the refetch interval of the first fetch: none

	clk.add(WebhookKeysRefetch)
	ks.publish(during.Public(), false) // the operator rotates: k2 signs
	_, err = v.Verify(ctx, during.Sign(clk.now(), event), event)
	is.NoErr(err)                         // the new kid made it fetch again
	is.Equal(ks.fetches.Load(), int32(2)) // once
	_, err = v.Verify(ctx, before.Sign(clk.now(), event), event)
	is.NoErr(err) // an old key's signature still verifies while it is published

	clk.add(WebhookKeysTTL)
	ks.publish(after.Public(), false) // k1 retired
	_, err = v.Verify(ctx, before.Sign(clk.now(), event), event)
	is.True(errors.Is(err, notify.ErrUnknownKey)) // refreshed after the TTL: k1 no longer verifies
	is.Equal(ks.fetches.Load(), int32(3))

	clk.add(WebhookKeysTTL)
	ks.publish(after.Public(), true) // the deployment cannot answer
	_, err = v.Verify(ctx, after.Sign(clk.now(), event), event)
	is.True(err != nil)                            // stale keys are not trusted
	is.True(!errors.Is(err, notify.ErrUnknownKey)) // and the error says the keys could not be read (answer 503)
	is.True(!errors.Is(err, notify.ErrBadSignature))
	_, err = v.Verify(ctx, "t=1,v1=00", event)
	is.True(errors.Is(err, notify.ErrMalformedSignature)) // garbage is refused before any fetch
}
