package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/layout"
)

// noRedirect reads a redirect instead of following it.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func TestCancelStopsTheBatchAndReleasesTheBudget(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	// One delivery at a time and a model that takes eight seconds: one row
	// runs while the other two wait in the queue, and still runs when the
	// cancel answers (which may wait up to a second to record the cancel in
	// the batch's state, more on a loaded machine).
	a, _ := liveStack(t, map[string]string{"LOCAL_TASKS_MAX_CONCURRENT": "1", "LOCAL_FAKE_MODEL_DELAY": "8s"})
	sub := post(t, a.base+"/batch/images", `{"runMode":"live","confirm":"CONFIRM","rows":[{"prompt":"first"},{"prompt":"second"},{"prompt":"third"}]}`, nil)
	is.Equal(sub.status, http.StatusAccepted)
	s := openStream(t, sub.str("progressUrl"), "")
	running := -1
	for running < 0 {
		ev, ok := s.next()
		is.True(ok)
		var r rowEvent
		if ev.Type == "row" && json.Unmarshal([]byte(ev.Data), &r) == nil && r.Status == "running" {
			running = r.Index // this row is being generated
		}
	}

	c := post(t, sub.str("statusUrl")+"/cancel", ``, nil)
	is.Equal(c.status, http.StatusOK) // cancel answers the state
	for i, row := range c.doc["rows"].([]any) {
		if i != running {
			is.Equal(row.(map[string]any)["status"], "cancelled") // queued rows are cancelled at once
		}
	}
	// The answer says what the cancel leaves: the running row's image may
	// still be made and charged; the rest of the reservation is released.
	is.Equal(c.doc["cancel"], map[string]any{"kept": 0.0, "chargedUsd": 0.0, "mayStillMake": 1.0, "mayStillChargeUsd": 0.039,
		"releasedUsd": 0.078, "finished": false})

	rest, _, done := readToDone(t, s)
	is.Equal(done.Status, "cancelled") // a cancelled batch reads cancelled, even with an image made
	var last rowEvent
	for _, r := range rest {
		if r.Index == running {
			last = r
		}
	}
	is.Equal(last.Status, "cancelled")        // the running row stopped after its current variant
	is.Equal(last.Variants[0].Status, "done") // keeping the image it was making

	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))
	b := get(t, a.base+"/budget", nil)
	is.Equal(b.doc["spentUsd"], 0.039)  // one image charged
	is.Equal(b.doc["reservedUsd"], 0.0) // the rest released
	is.Equal(a.model.Calls(), int64(1)) // the cancelled rows never reached the model

	again := post(t, sub.str("statusUrl")+"/cancel", ``, nil)
	is.Equal(again.status, http.StatusOK) // cancelling a finished batch is a no-op
	is.Equal(again.str("status"), "cancelled")
	is.Equal(again.doc["cancel"], map[string]any{"kept": 1.0, "chargedUsd": 0.039, "mayStillMake": 0.0, "mayStillChargeUsd": 0.0,
		"releasedUsd": 0.078, "finished": true}) // the image made is kept, listed and charged
	var kept int
	for _, row := range again.doc["rows"].([]any) {
		for _, v := range row.(map[string]any)["variants"].([]any) {
			if v.(map[string]any)["status"] == "done" && v.(map[string]any)["link"] != nil {
				kept++
			}
		}
	}
	is.Equal(kept, 1) // and listed with its link
}

func TestStableAssetLinks(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := startApp(t, nil, devstack.NewFaults(1))
	sub := post(t, a.base+"/batch/images", `{"runMode":"dry_run","rows":[{"prompt":"linked","variants":2}]}`, nil)
	readToDone(t, openStream(t, sub.str("progressUrl"), ""))
	state := get(t, sub.str("statusUrl"), nil)
	v0 := state.doc["rows"].([]any)[0].(map[string]any)["variants"].([]any)[0].(map[string]any)
	link := v0["link"].(string)
	is.True(strings.Contains(link, "/assets/"+sub.str("batchId")+"/0/0?token=")) // a stable link per image

	resp, err := noRedirect.Get(link) // no credential but the link's own token
	is.NoErr(err)
	resp.Body.Close()
	is.Equal(resp.StatusCode, http.StatusFound) // redirects
	img, err := http.Get(resp.Header.Get("Location"))
	is.NoErr(err)
	body, _ := io.ReadAll(img.Body)
	img.Body.Close()
	is.True(bytes.HasPrefix(body, []byte("\x89PNG"))) // to the image

	other := strings.Replace(link, "/0/0?", "/0/1?", 1)
	resp, err = noRedirect.Get(other)
	is.NoErr(err)
	resp.Body.Close()
	is.Equal(resp.StatusCode, http.StatusUnauthorized) // one image's token opens no other

	token := sub.str("progressUrl")[strings.Index(sub.str("progressUrl"), "token=")+6:]
	resp, err = noRedirect.Get(fmt.Sprintf("%s/assets/%s/0/1?token=%s", a.base, sub.str("batchId"), token))
	is.NoErr(err)
	resp.Body.Close()
	is.Equal(resp.StatusCode, http.StatusFound) // the batch's progress token opens its images too
}

// Every batch endpoint answers only its owner; everyone else gets exactly what
// a missing batch gets, and no credential gets 401.
func TestOwnershipMatrix(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := startApp(t, map[string]string{"AUTH_MODE": "apikey", "CONFIG_TTL": "0"}, devstack.NewFaults(1))
	putJSON(t, a, layout.APIKeysObject, map[string]any{"keys": map[string]any{
		auth.HashKey("ak_alice"): map[string]string{"user": "alice"},
		auth.HashKey("ak_bob"):   map[string]string{"user": "bob"},
	}})
	alice := map[string]string{"Authorization": "Bearer ak_alice"}
	bob := map[string]string{"X-Api-Key": "ak_bob"}
	none := map[string]string{}

	sub := post(t, a.base+"/batch/images", `{"runMode":"dry_run","rows":[{"prompt":"mine"}]}`, alice)
	is.Equal(sub.status, http.StatusAccepted)
	id := sub.str("batchId")
	readToDone(t, openStream(t, sub.str("progressUrl"), "")) // the token in progressUrl opens alice's stream
	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))

	unknown := "0190b6a4-7c3e-7d2a-8b1e-3f5a6c7d8e9f"
	type call struct{ method, path string }
	for _, c := range []call{
		{"GET", "/batch/" + id},
		{"GET", "/batch/" + id + "/history"},
		{"GET", "/batch/" + id + "/progress-token"},
		{"POST", "/batch/" + id + "/cancel"},
		{"POST", "/batch/" + id + "/retry"},
		{"GET", "/batch/" + id + "/archive"},
		{"GET", "/assets/" + id + "/0/0"},
		{"GET", "/progress/" + id},
	} {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			is := is.New(t)
			ask := func(h map[string]string, path string) int {
				req, _ := http.NewRequest(c.method, a.base+path, nil)
				for k, v := range h {
					req.Header.Set(k, v)
				}
				resp, err := noRedirect.Do(req)
				is.NoErr(err)
				resp.Body.Close()
				return resp.StatusCode
			}
			owner := ask(alice, c.path)
			served := owner == http.StatusOK || owner == http.StatusFound || owner == http.StatusNoContent
			if strings.HasSuffix(c.path, "/retry") {
				served = owner == http.StatusConflict // every image was made: nothing to retry
			}
			is.True(served)                                                                  // the owner is served
			is.Equal(ask(bob, c.path), http.StatusNotFound)                                  // another user sees nothing
			is.Equal(ask(bob, strings.Replace(c.path, id, unknown, 1)), http.StatusNotFound) // exactly like a missing batch
			is.Equal(ask(none, c.path), http.StatusUnauthorized)                             // no credential: 401
		})
	}
	_ = context.Background()
}
