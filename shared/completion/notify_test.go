package completion_test

import (
	"context"
	"net/http"
	"net/http/httptest"
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

// A webhook receiver that is down when the batch finishes gets the event when
// the housekeeping job retries, and a receiver that keeps answering 4xx is not
// retried; concurrent finishers announce once.
func TestNotificationsAreAnnouncedOnceAndRetried(t *testing.T) {
	is := is.New(t)
	s := open(t)
	var up atomic.Bool
	var mu sync.Mutex
	ids := map[string]int{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		ids[r.Header.Get(notify.HeaderDelivery)]++
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(hook.Close)
	n := completion.Notifier{
		Webhooks: notify.NewWebhooks([]byte("secret"), refs.SafeClient(true, time.Second, 0), 50*time.Millisecond),
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

	up.Store(true)
	retried, err := f.RetryNotifications(context.Background(), m)
	is.NoErr(err)
	is.Equal(retried, 1)
	is.NoErr(s.readJSON(context.Background(), ledger.EffectsObject(m.BatchID), &fx))
	is.Equal(fx.Notifications[0].Status, "delivered") // the retry delivered it
	is.True(fx.Notifications[0].Attempts > 1)         // counting every attempt
	is.Equal(ids[m.BatchID+":webhook"], 1)

	retried, err = f.RetryNotifications(context.Background(), m)
	is.NoErr(err)
	is.Equal(retried, 0) // nothing left to retry
}
