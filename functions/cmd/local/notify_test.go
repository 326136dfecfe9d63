package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/notify"
)

func TestCompletionWebhookIsSignedAndSentOnce(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	type delivery struct {
		id, sig string
		body    []byte
	}
	var mu sync.Mutex
	var got []delivery
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, delivery{r.Header.Get(notify.HeaderDelivery), r.Header.Get(notify.HeaderSignature), b})
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)
	dataDir := t.TempDir()
	a := startApp(t, map[string]string{"REFS_ALLOW_LOOPBACK": "true", "DATA_DIR": dataDir, "TASKS_DUPLICATE_DELIVERY": "true"}, devstack.NewFaults(1))

	sub := post(t, a.base+"/batch/images", `{"runMode":"dry_run","webhookUrl":"`+hook.URL+`/done","rows":[{"prompt":"a","id":"hero"},{"prompt":"b"}]}`, nil)
	is.Equal(sub.status, http.StatusAccepted)
	readToDone(t, openStream(t, sub.str("progressUrl"), ""))
	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))

	mu.Lock()
	defer mu.Unlock()
	is.Equal(len(got), 1) // one delivery, though every task ran twice
	d := got[0]
	is.Equal(d.id, sub.str("batchId")+":webhook")    // the receiver's dedup key
	resp, err := http.Get(a.base + "/webhooks/keys") // public: no credentials
	is.NoErr(err)
	defer resp.Body.Close()
	is.Equal(resp.StatusCode, http.StatusOK)
	var keys notify.KeySet
	is.NoErr(json.NewDecoder(resp.Body).Decode(&keys))
	is.NoErr(notify.Verify(keys, d.sig, d.body, time.Now(), 5*time.Minute)) // the documented recipe verifies it with the published key
	is.True(strings.Contains(d.sig, ",kid=local,"))                         // signed by the key derived locally
	var ev notify.Event
	is.NoErr(json.Unmarshal(d.body, &ev))
	is.Equal(ev.Type, notify.EventBatchFinished)
	is.Equal(ev.BatchID, sub.str("batchId"))
	is.Equal(ev.UserID, "local") // the owner, in the signed body
	is.Equal(string(ev.Summary.Status), "done")
	is.Equal(ev.Rows[0].ID, "hero")
	is.Equal(len(ev.Rows[0].Links), 1) // a stable link per image
	is.True(strings.Contains(ev.Rows[0].Links[0], "/assets/"+sub.str("batchId")+"/0/0?token="))

	state := get(t, sub.str("statusUrl"), nil)
	n := state.doc["notifications"].([]any)[0].(map[string]any)
	is.Equal(n["kind"], "webhook")
	is.Equal(n["status"], "delivered") // the batch state shows the delivery
}

func TestSheetsWriteBack(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		answers  []int // the stand-in's statuses, last one repeats
		status   string
		attempts float64
	}{
		{"success", []int{200}, "delivered", 1},
		{"429 twice then success", []int{429, 429, 200}, "delivered", 3},
		{"permanent 403", []int{403}, "failed", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			var calls atomic.Int32
			var body atomic.Value
			sheets := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := int(calls.Add(1)) - 1
				code := c.answers[min(n, len(c.answers)-1)]
				b, _ := io.ReadAll(r.Body)
				body.Store(string(b))
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(code)
				if code == 200 {
					_, _ = io.WriteString(w, `{"spreadsheetId":"x","updates":{"updatedRows":2}}`)
					return
				}
				status := map[int]string{403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED"}[code]
				_, _ = fmt.Fprintf(w, `{"error":{"code":%d,"message":"no","status":%q}}`, code, status)
			}))
			t.Cleanup(sheets.Close)
			a := startApp(t, map[string]string{"SHEETS_API_URL": sheets.URL + "/", "NOTIFY_MAX_ELAPSED": "10s", "CONFIG_TTL": "0"}, devstack.NewFaults(1))
			batchBody := `{"runMode":"dry_run","sheet":{"spreadsheetId":"1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789","range":"Results!A:E"},"rows":[{"prompt":"a fox","id":"fox"},{"prompt":"b"}]}`
			refused := post(t, a.base+"/batch/images", batchBody, nil)
			is.Equal(refused.status, http.StatusForbidden) // a sheet nobody granted this user
			putJSON(t, a, "config/sheets.json", map[string]any{"users": map[string]any{"local": []string{"1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"}}})
			sub := post(t, a.base+"/batch/images", batchBody, nil)
			is.Equal(sub.status, http.StatusAccepted)
			readToDone(t, openStream(t, sub.str("progressUrl"), ""))
			is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))

			state := get(t, sub.str("statusUrl"), nil)
			n := state.doc["notifications"].([]any)[0].(map[string]any)
			is.Equal(n["kind"], "sheet")
			is.Equal(n["status"], c.status)       // delivered or failed, shown in the batch state
			is.Equal(n["attempts"], c.attempts)   // retried only what may succeed
			is.Equal(state.str("status"), "done") // the batch's results are never at stake
			if c.status == "delivered" {
				is.True(strings.Contains(body.Load().(string), `"fox"`)) // one sheet row per batch row
			} else {
				h := get(t, sub.str("statusUrl")+"/history", nil)
				found := false
				for _, e := range h.doc["entries"].([]any) {
					e := e.(map[string]any)
					found = found || (e["action"] == "notified" && strings.Contains(e["detail"].(string), "sheet failed"))
				}
				is.True(found) // the failure is in the batch's history
			}
		})
	}
}
