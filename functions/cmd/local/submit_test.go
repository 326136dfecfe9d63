package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/matryer/is"
	"google.golang.org/api/iterator"

	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/flags"
)

// answer is an HTTP answer with its JSON body decoded loosely.
type answer struct {
	status int
	header http.Header
	doc    map[string]any
}

func (a answer) str(key string) string { s, _ := a.doc[key].(string); return s }

// post sends a JSON body with extra headers.
func post(t *testing.T, url, body string, headers map[string]string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return do(t, req)
}

func get(t *testing.T, url string, headers map[string]string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header}
	_ = json.Unmarshal(b, &a.doc)
	return a
}

// objects lists the names under prefix in the stack's bucket.
func objects(t *testing.T, a *app, prefix string) []string {
	t.Helper()
	it := a.platform.Storage.Bucket(a.cfg.Bucket).Objects(context.Background(), &storage.Query{Prefix: prefix})
	var out []string
	for {
		attrs, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, attrs.Name)
	}
}

func putJSON(t *testing.T, a *app, name string, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	w := a.platform.Storage.Bucket(a.cfg.Bucket).Object(name).NewWriter(context.Background())
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func liveStack(t *testing.T, extra map[string]string) (*app, *devstack.Faults) {
	env := map[string]string{"LOCAL_FAKE_MODEL": "true", "LOCAL_FAKE_MODEL_DELAY": "10ms", "DAILY_BUDGET_USD": "1", "CONFIG_TTL": "0"}
	for k, v := range extra {
		env[k] = v
	}
	faults := devstack.NewFaults(1)
	return startApp(t, env, faults), faults
}

func TestLiveBatchChargesOnlyWhatWasMade(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, _ := liveStack(t, nil)
	body := `{"runMode":"live","confirm":"CONFIRM","rows":[
		{"prompt":"a red fox","variants":2},
		{"prompt":"a fox [blocked-output]","variants":1}]}`
	sub := post(t, a.base+"/batch/images", body, nil)
	is.Equal(sub.status, http.StatusAccepted) // a confirmed live batch is accepted
	est := sub.doc["estimate"].(map[string]any)
	is.Equal(est["costUsd"], 0.117) // 3 images at $0.039
	is.Equal(est["charged"], true)
	budget := sub.doc["budget"].(map[string]any)
	is.Equal(budget["reservedUsd"], 0.117) // reserved at submit
	is.Equal(budget["remainingUsd"], 0.883)

	rows, _, done := readToDone(t, openStream(t, sub.str("progressUrl"), ""))
	is.Equal(done.VariantCounts.Done, 2) // two images made
	last := map[int]rowEvent{}
	for _, r := range rows {
		last[r.Index] = r
	}
	is.Equal(last[0].Status, "done")   // the fox row is done
	is.Equal(last[1].Status, "failed") // the blocked row failed

	state := get(t, sub.str("statusUrl"), nil)
	v := state.doc["rows"].([]any)[1].(map[string]any)["variants"].([]any)[0].(map[string]any)
	is.Equal(v["error"].(map[string]any)["code"], "MODEL_SAFETY_BLOCKED") // the variant says why

	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second))) // settlement runs in the last task
	after := get(t, a.base+"/budget", nil)
	is.Equal(after.status, http.StatusOK)
	is.Equal(after.doc["spentUsd"], 0.078)  // only the two images made are charged
	is.Equal(after.doc["reservedUsd"], 0.0) // the rest is released
	is.Equal(after.doc["remainingUsd"], 0.922)
}

func TestBudgetExceededWritesNothing(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, faults := liveStack(t, nil)
	var rows []string
	for i := range 10 {
		rows = append(rows, fmt.Sprintf(`{"prompt":"p%d","variants":3}`, i))
	}
	ans := post(t, a.base+"/batch/images", `{"runMode":"live","confirm":"CONFIRM","rows":[`+strings.Join(rows, ",")+`]}`, nil)
	is.Equal(ans.status, http.StatusPaymentRequired) // 30 × $0.039 = $1.17 > $1
	is.Equal(ans.str("code"), "BUDGET_EXCEEDED")
	is.Equal(ans.doc["estimateUsd"], 1.17)        // the estimate
	is.Equal(ans.doc["limitUsd"], 1.0)            // the limit
	is.Equal(ans.doc["remainingUsd"], 1.0)        // what remains
	is.Equal(len(faults.WritesOf("batches/")), 0) // no batch written
	is.Equal(len(faults.WritesOf("budgets/")), 0) // nothing reserved
	is.Equal(a.tasks.Stats().Created, int64(0))   // nothing queued

	// A dry run of the same batch costs nothing and is accepted.
	dry := post(t, a.base+"/batch/images", `{"runMode":"dry_run","rows":[`+strings.Join(rows, ",")+`]}`, nil)
	is.Equal(dry.status, http.StatusAccepted)
	is.Equal(dry.doc["estimate"].(map[string]any)["charged"], false) // dry runs are never charged
}

func TestRateLimitedRowRetries(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, _ := liveStack(t, nil)
	sub := post(t, a.base+"/batch/images", `{"runMode":"live","confirm":"CONFIRM","rows":[{"prompt":"a fox [rate-limit-once]"}]}`, nil)
	is.Equal(sub.status, http.StatusAccepted)
	_, _, done := readToDone(t, openStream(t, sub.str("progressUrl"), ""))
	is.Equal(done.VariantCounts.Done, 1) // the retry made the image
	m, err := a.platform.Ledger.Manifest(context.Background(), sub.str("batchId"))
	is.NoErr(err)
	row, _, err := a.platform.Ledger.ReadRow(context.Background(), m, 0)
	is.NoErr(err)
	is.Equal(row.Attempts, 2) // one attempt was rate limited, the next succeeded
	retried := false
	for _, c := range row.History {
		retried = retried || (c.Action == "retrying" && strings.Contains(c.Detail, "MODEL_RATE_LIMIT"))
	}
	is.True(retried) // the ledger recorded why it retried
}

func TestFlagsSwitchBehaviour(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, _ := liveStack(t, map[string]string{"HYBRID_V1_ENABLED": "off"})
	dry := `{"runMode":"dry_run","rows":[{"prompt":"x"}]}`
	live := `{"runMode":"live","confirm":"CONFIRM","rows":[{"prompt":"x"}]}`

	ans := post(t, a.base+"/batch/images", dry, nil)
	is.Equal(ans.status, http.StatusServiceUnavailable) // the master switch is off
	is.Equal(ans.str("code"), "FEATURE_DISABLED")

	putJSON(t, a, "config/flags.json", map[string]string{"HYBRID_V1_ENABLED": "on", "LIVE_RUNS": "off"})
	is.Equal(post(t, a.base+"/batch/images", dry, nil).status, http.StatusAccepted) // switched on without a restart
	ans = post(t, a.base+"/batch/images", live, nil)
	is.Equal(ans.status, http.StatusServiceUnavailable) // live runs off
	is.Equal(ans.str("code"), "FEATURE_DISABLED")

	putJSON(t, a, "config/flags.json", map[string]string{"HYBRID_V1_ENABLED": "on", "LIVE_RUNS": "on"})
	is.Equal(post(t, a.base+"/batch/images", live, nil).status, http.StatusAccepted) // live runs back on

	// A canary: 50% of users, picked by a stable hash.
	putJSON(t, a, "config/flags.json", map[string]string{"HYBRID_V1_ENABLED": "50%"})
	var in, out string
	for i := 0; in == "" || out == ""; i++ {
		u := fmt.Sprint("user-", i)
		if flags.Bucket(flags.BatchAPI, u) < 5000 {
			in = u
		} else {
			out = u
		}
	}
	is.Equal(post(t, a.base+"/batch/images", dry, map[string]string{"X-Assetgen-User": in}).status, http.StatusAccepted)            // in the canary
	is.Equal(post(t, a.base+"/batch/images", dry, map[string]string{"X-Assetgen-User": out}).status, http.StatusServiceUnavailable) // outside it
}

func TestIdempotentSubmit(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, faults := liveStack(t, nil)
	body := `{"runMode":"live","confirm":"CONFIRM","rows":[{"prompt":"once","variants":2},{"prompt":"only once"}]}`
	key := map[string]string{"Idempotency-Key": "order-42"}

	// Ten identical submits at once create one batch.
	var wg sync.WaitGroup
	ids := make(chan string, 10)
	for range 10 {
		wg.Go(func() {
			ans := post(t, a.base+"/batch/images", body, key)
			if ans.status != http.StatusAccepted {
				t.Errorf("concurrent retry answered %d %v", ans.status, ans.doc)
			}
			ids <- ans.str("batchId")
		})
	}
	wg.Wait()
	close(ids)
	var id string
	for got := range ids {
		if id == "" {
			id = got
		}
		is.Equal(got, id) // every retry got the same batch
	}
	is.Equal(faults.WritesOf("batches/" + id + "/manifest.json")["batches/"+id+"/manifest.json"], 1) // one manifest
	is.Equal(a.tasks.Stats().Created, int64(2))                                                      // one task per row, once

	again := post(t, a.base+"/batch/images", body, key)
	is.Equal(again.status, http.StatusAccepted)
	is.Equal(again.str("batchId"), id) // a later retry replays the answer

	other := post(t, a.base+"/batch/images", strings.Replace(body, "once", "twice", 1), key)
	is.Equal(other.status, http.StatusConflict) // same key, another body
	is.Equal(other.str("code"), "IDEMPOTENCY_CONFLICT")

	elsewhere := post(t, a.base+"/batch/images", body, map[string]string{"Idempotency-Key": "order-42", "X-Assetgen-User": "someone-else"})
	is.Equal(elsewhere.status, http.StatusAccepted)
	is.True(elsewhere.str("batchId") != id) // keys are scoped to their user

	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))
	b := get(t, a.base+"/budget", nil)
	is.Equal(b.doc["spentUsd"], 0.117) // charged once for three images
}

// A submit that fails before any of its tasks could exist (here the manifest
// write is refused) undoes everything it wrote.
func TestFailedSubmitLeavesNothing(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, faults := liveStack(t, nil)
	faults.RejectWrites("batches/", 1, http.StatusForbidden)
	ans := post(t, a.base+"/batch/images", `{"runMode":"live","confirm":"CONFIRM","rows":[{"prompt":"x","variants":3}]}`,
		map[string]string{"Idempotency-Key": "k1"})
	is.Equal(ans.status, http.StatusServiceUnavailable)
	is.Equal(ans.str("code"), "GCS_WRITE_FAILED")
	is.Equal(len(objects(t, a, "batches/")), 0)     // no partial batch
	is.Equal(len(objects(t, a, "idempotency/")), 0) // the key is free for a retry
	is.Equal(a.tasks.Stats().Created, int64(0))     // nothing queued
	b := get(t, a.base+"/budget", nil)
	is.Equal(b.doc["reservedUsd"], 0.0) // the reservation is released
	is.Equal(b.doc["remainingUsd"], 1.0)
}

// refServer serves reference images for the tests.
func refServer(t *testing.T, routes map[string][]byte) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := routes[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func pngOf(t *testing.T, shade uint8) []byte {
	img := image.NewGray(image.Rect(0, 0, 4, 4))
	for i := range img.Pix {
		img.Pix[i] = shade
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestReferencesAreMergedAndDeduplicated(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := startApp(t, map[string]string{"REFS_ALLOW_LOOPBACK": "true"}, devstack.NewFaults(1))
	red := pngOf(t, 10)
	srv := refServer(t, map[string][]byte{"/a.png": red, "/b.png": pngOf(t, 20), "/copy-of-a.png": red, "/page": []byte("<html>hi</html>")})
	body := fmt.Sprintf(`{"runMode":"dry_run","refs":["%[1]s/a.png"],"rows":[
		{"prompt":"with own refs","refs":["%[1]s/b.png","%[1]s/copy-of-a.png"]},
		{"prompt":"global only"}]}`, srv.URL)
	ans := post(t, a.base+"/batch/images", body, nil)
	is.Equal(ans.status, http.StatusAccepted)
	rows := ans.doc["rows"].([]any)
	r0, r1 := rows[0].(map[string]any), rows[1].(map[string]any)
	is.Equal(r0["refs"], 2.0) // b and the copy of a; a itself is the same image
	dropped := r0["droppedRefs"].([]any)[0].(map[string]any)
	is.Equal(dropped["url"], srv.URL+"/a.png")                                                      // the global duplicate is dropped
	is.True(strings.Contains(dropped["reason"].(string), "duplicate of "+srv.URL+"/copy-of-a.png")) // and says why
	is.Equal(r1["refs"], 1.0)                                                                       // the other row gets the global ref
	is.Equal(len(objects(t, a, "refs/")), 2)                                                        // two distinct contents stored once each

	_, _, done := readToDone(t, openStream(t, ans.str("progressUrl"), ""))
	is.Equal(done.Status, "done") // generate read the stored references

	bad := post(t, a.base+"/batch/images", fmt.Sprintf(`{"runMode":"dry_run","rows":[{"prompt":"x","refs":["%s/page","%s/missing.png"]}]}`, srv.URL, srv.URL), nil)
	is.Equal(bad.status, http.StatusUnprocessableEntity)
	is.Equal(bad.str("code"), "REF_NOT_IMAGE") // the first failure's code
	fields := bad.doc["errors"].([]any)
	is.Equal(len(fields), 2) // every bad reference is named
	is.Equal(fields[0].(map[string]any)["field"], "/rows/0/refs/0")
	is.Equal(fields[1].(map[string]any)["code"], "REF_FETCH_FAILED")
	manifests := 0
	for _, name := range objects(t, a, "batches/") {
		if strings.HasSuffix(name, "/manifest.json") {
			manifests++
		}
	}
	is.Equal(manifests, 1) // only the first batch exists
}

func TestReferencesToPrivateAddressesAreRefused(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := startApp(t, nil, devstack.NewFaults(1)) // REFS_ALLOW_LOOPBACK off, as in the cloud
	srv := refServer(t, map[string][]byte{"/a.png": pngOf(t, 1)})
	tls := strings.Replace(srv.URL, "http://", "https://", 1)
	cases := []struct{ ref, code string }{
		{srv.URL + "/a.png", "REF_NOT_ALLOWED"},                             // plain http
		{tls + "/a.png", "REF_FETCH_FAILED"},                                // loopback over https: refused at dial time
		{"https://169.254.169.254/computeMetadata/v1/", "REF_FETCH_FAILED"}, // the metadata server
		{"file:///etc/passwd", "REF_NOT_ALLOWED"},
	}
	for _, c := range cases {
		ans := post(t, a.base+"/batch/images", fmt.Sprintf(`{"runMode":"dry_run","rows":[{"prompt":"x","refs":[%q]}]}`, c.ref), nil)
		is.Equal(ans.str("code"), c.code) // refused with the right code
	}
	is.Equal(len(objects(t, a, "batches/")), 0) // nothing written
}

// Fifty live submits at once against one user's daily budget: the
// reservations, compare-and-swapped on one account object, never add up to
// more than the limit, and every submit gets a clear answer.
func TestConcurrentLiveSubmitsNeverOverspend(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, _ := liveStack(t, map[string]string{"LOCAL_FAKE_MODEL_DELAY": "1h", "SUBMIT_RATE_PER_MINUTE": "1000"})
	body := `{"runMode":"live","confirm":"CONFIRM","rows":[{"prompt":"x","variants":3}]}` // $0.117: 8 fit in $1
	var wg sync.WaitGroup
	codes := make(chan int, 50)
	for range 50 {
		wg.Go(func() { codes <- post(t, a.base+"/batch/images", body, nil).status })
	}
	wg.Wait()
	close(codes)
	counts := map[int]int{}
	for c := range codes {
		counts[c]++
	}
	is.True(counts[http.StatusAccepted] <= 8)                                                                          // never more than fit
	is.True(counts[http.StatusAccepted] >= 1)                                                                          // and some did
	is.Equal(counts[http.StatusAccepted]+counts[http.StatusPaymentRequired]+counts[http.StatusServiceUnavailable], 50) // the rest are 402 or 503 BUDGET_CONTENDED
	b := get(t, a.base+"/budget", nil)
	reserved := b.doc["reservedUsd"].(float64)
	is.True(reserved <= 1.0)                                                        // the account holds at most the limit
	is.Equal(math.Round(reserved*1e6), float64(counts[http.StatusAccepted]*117000)) // exactly the accepted batches
}

// A retried live submit gets its batch back even when the budget that admitted
// it no longer covers a second copy, or live runs were switched off meanwhile.
func TestRetryOfAnAcceptedSubmitIsAnsweredFirst(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, _ := liveStack(t, map[string]string{"LOCAL_FAKE_MODEL_DELAY": "1h"})
	var rows []string
	for i := range 5 {
		rows = append(rows, fmt.Sprintf(`{"prompt":"p%d","variants":3}`, i))
	}
	body := `{"runMode":"live","confirm":"CONFIRM","rows":[` + strings.Join(rows, ",") + `]}` // $0.585 of $1
	key := map[string]string{"Idempotency-Key": "retry-me"}
	first := post(t, a.base+"/batch/images", body, key)
	is.Equal(first.status, http.StatusAccepted)

	putJSON(t, a, "config/flags.json", map[string]string{"LIVE_RUNS": "off"})
	again := post(t, a.base+"/batch/images", body, key)
	is.Equal(again.status, http.StatusAccepted)          // not 402, not 503
	is.Equal(again.str("batchId"), first.str("batchId")) // the same batch
	b := get(t, a.base+"/budget", nil)
	is.Equal(b.doc["reservedUsd"], 0.585) // reserved once
}
