package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"
	"golang.org/x/sync/errgroup"

	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/notify"
)

// Soak settings: ASSETGEN_SOAK=1 runs the soak (make soak); ASSETGEN_SOAK_SEED
// repeats a run's draws (the summary prints the seed it used).
const (
	soakUsers      = 4
	soakSubmits    = 12 // per user
	soakKillRate   = 0.15
	soakFaults     = "error=0.1,lost=0.05"
	soakPriceMicro = 39000 // the fake model's price, $0.039 an image
	soakLimitUSD   = "1"
)

// killer is the Cloud Tasks stand-in's delivery client: it cancels a share of
// the generate requests after a short random delay, as when Cloud Tasks gives
// up on a request or the connection drops while the row is being worked.
type killer struct {
	mu     sync.Mutex
	rng    *rand.Rand
	killed atomic.Int64
}

func (k *killer) draw() (bool, time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.rng.Float64() < soakKillRate, time.Duration(k.rng.Int64N(int64(60 * time.Millisecond)))
}

func (k *killer) RoundTrip(r *http.Request) (*http.Response, error) {
	kill, after := k.draw()
	if !kill {
		return http.DefaultTransport.RoundTrip(r)
	}
	ctx, cancel := context.WithCancel(r.Context())
	timer := time.AfterFunc(after, cancel)
	resp, err := http.DefaultTransport.RoundTrip(r.WithContext(ctx))
	if !timer.Stop() {
		k.killed.Add(1) // cancelled before the answer came
	}
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = cancelOnClose{resp.Body, cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	defer c.cancel()
	return c.ReadCloser.Close()
}

// receiver is a webhook endpoint that counts each delivery id it accepted.
type receiver struct {
	mu  sync.Mutex
	ids map[string]int
}

func (h *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	h.mu.Lock()
	h.ids[r.Header.Get(notify.HeaderDelivery)]++
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// soakBatch is one accepted submit.
type soakBatch struct{ user, id string }

// TestSoak runs many concurrent live batches from a few users against small
// daily budgets, with storage errors and lost answers, every task delivered
// twice, and a share of generate deliveries killed mid-row. Once every batch
// is final it checks the money exactly: what the model made is what was
// charged, per batch and in total, within each user's limit, with nothing
// left reserved, and every effect delivered once.
func TestSoak(t *testing.T) {
	if os.Getenv("ASSETGEN_SOAK") == "" {
		t.Skip("the soak runs with ASSETGEN_SOAK=1 (make soak)")
	}
	is := is.New(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("ASSETGEN_SOAK_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseUint(s, 10, 64)
		is.NoErr(err) // ASSETGEN_SOAK_SEED is a number
	}
	began := time.Now()
	ctx := deadline(t, 8*time.Minute)

	hooks := &receiver{ids: map[string]int{}}
	hook := httptest.NewServer(hooks)
	t.Cleanup(hook.Close)
	sheets, err := devstack.StartSheets("127.0.0.1:0")
	is.NoErr(err)
	t.Cleanup(func() { _ = sheets.Close(context.Background()) })

	spec, err := devstack.ParseStorageFaults(soakFaults)
	is.NoErr(err)
	faults := devstack.NewFaults(seed)
	kill := &killer{rng: rand.New(rand.NewPCG(seed, 1))}
	a := startAppWith(t, map[string]string{
		"LOCAL_FAKE_MODEL": "true", "LOCAL_FAKE_MODEL_DELAY": "20ms", "TASKS_DUPLICATE_DELIVERY": "true",
		"DAILY_BUDGET_USD": soakLimitUSD, "CONFIG_TTL": "0", "REFS_ALLOW_LOOPBACK": "true",
		"SHEETS_API_URL": sheets.URL, "NOTIFY_MAX_ELAPSED": "30s",
		// A lease outlives the slowest attempt on a loaded machine, so no live
		// attempt is taken over (that pays its model calls in flight twice), and
		// the retries of a task span more than a lease, so a lease a killed
		// attempt left behind expires before its task runs out of attempts.
		"ROW_LEASE": "15s", "TASKS_MAX_ATTEMPTS": "12",
	}, options{wrapGCS: faults.Wrap, deliveries: &http.Client{Transport: kill}})

	users := make([]string, soakUsers)
	sheetOf := map[string][]string{}
	for u := range users {
		users[u] = fmt.Sprintf("soak-user-%d", u)
		sheetOf[users[u]] = []string{fmt.Sprintf("1SoakSheet%02dAbCdEfGhIjKlMnOpQrStUvWxYz", u)}
	}
	putJSON(t, a, "config/sheets.json", map[string]any{"users": sheetOf})
	imagesBefore := modelImagesMetric(t, a)
	faults.Apply(spec) // the setup is written; from here on storage misbehaves

	// Every user submits at once; a submit interrupted by a storage fault is
	// retried with its key, as a client does, until it gets an answer.
	var (
		mu       sync.Mutex
		accepted []soakBatch
		refused  int
		retries  int
	)
	draws := rand.New(rand.NewPCG(seed, 2))
	var g errgroup.Group
	for _, user := range users {
		for n := range soakSubmits {
			var rows []string
			for r := range 1 + draws.IntN(3) {
				rows = append(rows, fmt.Sprintf(`{"prompt":"soak %s %d %d","variants":%d}`, user, n, r, 1+draws.IntN(3)))
			}
			body := `{"runMode":"live","confirm":"CONFIRM","webhookUrl":"` + hook.URL + `/hook",` +
				`"sheet":{"spreadsheetId":"` + sheetOf[user][0] + `","range":"Results!A:E"},"rows":[` + strings.Join(rows, ",") + `]}`
			headers := map[string]string{"X-Assetgen-User": user, "Idempotency-Key": fmt.Sprintf("soak-%d-%s-%d", seed, user, n)}
			g.Go(func() error {
				for attempt := 1; ; attempt++ {
					if ctx.Err() != nil {
						return fmt.Errorf("%s submit %d: %w", user, n, ctx.Err())
					}
					ans, err := soakPost(ctx, a.base+"/batch/images", body, headers)
					if err != nil {
						return fmt.Errorf("%s submit %d: %w", user, n, err)
					}
					mu.Lock()
					switch {
					case ans.status == http.StatusAccepted:
						accepted = append(accepted, soakBatch{user, ans.str("batchId")})
						mu.Unlock()
						return nil
					case ans.status == http.StatusPaymentRequired && ans.str("code") == "BUDGET_EXCEEDED":
						refused++
						mu.Unlock()
						return nil
					case ans.status >= 500 || ans.status == http.StatusConflict || ans.status == http.StatusTooManyRequests:
						retries++
						mu.Unlock()
					default:
						mu.Unlock()
						return fmt.Errorf("%s submit %d: %d %v", user, n, ans.status, ans.doc)
					}
					// Back off as a client does: Retry-After when the answer names
					// one, else a doubling delay.
					wait := min(50*time.Millisecond<<min(attempt, 5), time.Second)
					if s, err := strconv.Atoi(ans.header.Get("Retry-After")); err == nil {
						wait = time.Duration(s) * time.Second
					}
					select {
					case <-time.After(wait):
					case <-ctx.Done():
					}
				}
			})
		}
	}
	is.NoErr(g.Wait()) // every submit was answered: accepted or refused for its budget

	// Every task runs to the end (retries included), then every batch is final.
	is.NoErr(a.tasks.WaitIdle(ctx))
	faults.Apply(devstack.StorageFaults{}) // the checks read a healthy bucket
	for _, b := range accepted {
		pollUntil(t, ctx, "batch "+b.id+" to be final", func() bool {
			_, err := a.platform.Ledger.State(ctx, b.id)
			return err == nil
		})
	}

	// Money, per batch: what is recorded done has exactly one image object and
	// is exactly what the batch was charged.
	spentOf := map[string]budget.Micros{} // by batch
	for _, name := range objects(t, a, layout.Budgets) {
		var acct budget.Account
		_, err := a.platform.Bucket.ReadJSON(ctx, name, &acct)
		is.NoErr(err) // the account reads back
		sum := acct.Sum()
		t.Logf("budget %s %s: limit %d spent %d reserved %d (micros)", acct.Day, acct.User, sum.Limit, sum.Spent, sum.Reserved)
		for id, v := range acct.Reserved {
			_, manifestErr := a.platform.Ledger.Manifest(ctx, id)
			_, stateErr := a.platform.Ledger.State(ctx, id)
			t.Errorf("%s still reserves %d micros for batch %s (manifest: %v, state: %v)", acct.User, v, id, manifestErr, stateErr)
		}
		is.True(sum.Spent <= sum.Limit) // spend stays within the limit
		is.Equal(sum.Limit, budget.Micros(1_000_000))
		for id, v := range acct.Spent {
			spentOf[id] += v
		}
	}
	var images, doneImages int64
	statuses := map[ledger.Status]int{}
	for _, b := range accepted {
		final, err := a.platform.Ledger.State(ctx, b.id)
		is.NoErr(err)
		is.True(final.Summary.Status.Terminal()) // every batch is final
		statuses[final.Summary.Status]++
		stored := objects(t, a, ledger.BatchPrefix(b.id)+"images/")
		done := 0
		for r, row := range final.Rows {
			is.True(row.Status.Terminal()) // every row is final
			for v, variant := range row.Variants {
				if variant.Status != ledger.Done {
					continue
				}
				done++
				n := 0
				for _, name := range stored {
					if strings.HasPrefix(name, ledger.ImagePrefix(b.id, r)+strconv.Itoa(v)+".") {
						n++
					}
				}
				if n != 1 {
					t.Errorf("batch %s row %d variant %d is done with %d image objects", b.id, r, v, n)
				}
			}
		}
		images += int64(len(stored))
		doneImages += int64(done)
		if spentOf[b.id] != budget.Micros(done*soakPriceMicro) {
			t.Errorf("batch %s (%s): %d images done, charged %d micros", b.id, b.user, done, spentOf[b.id])
		}
		delete(spentOf, b.id)
	}
	is.Equal(len(spentOf), 0) // nothing charged to a batch that was not accepted

	// Money, in total: every image the model made is charged, exactly.
	made := modelImagesMetric(t, a) - imagesBefore
	is.Equal(made, a.model.Images()) // the metric counts this stack's model
	is.Equal(images, doneImages)     // every stored image is recorded done
	is.Equal(made, doneImages)       // and every image the model made is recorded and charged

	// Effects: each webhook and each sheet row delivered once.
	hooks.mu.Lock()
	defer hooks.mu.Unlock()
	for id, n := range hooks.ids {
		if n != 1 {
			t.Errorf("webhook delivery %q accepted %d times", id, n)
		}
	}
	sheetRows := 0
	for _, user := range users {
		seen := map[any]int{}
		for _, row := range sheets.Rows(sheetOf[user][0], "Results") {
			sheetRows++
			seen[row[len(row)-1]]++
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("sheet row %v of %s written %d times", id, user, n)
			}
		}
	}
	c := faults.Counts()
	ts := a.tasks.Stats()
	t.Logf("soak seed=%d: %d submits, %d batches accepted (%v), %d refused BUDGET_EXCEEDED, %d submit retries; "+
		"storage faults: %d failed, %d lost answers (%d resets); deliveries %d (%d failed, %d killed mid-row, %d dropped); "+
		"model images %d = charged $%.6f; webhooks %d, sheet rows %d; %s",
		seed, soakUsers*soakSubmits, len(accepted), statuses, refused, retries,
		c.Rejected, c.LostAnswers, c.Resets, ts.Deliveries, ts.Failures, kill.killed.Load(), ts.Dropped,
		made, budget.Micros(made*soakPriceMicro).USD(), len(hooks.ids), sheetRows, time.Since(began).Round(time.Second))
}

// modelImagesMetric reads assetgen_local_model_images_total{outcome="image"}
// from the stack's /metrics.
func modelImagesMetric(t *testing.T, a *app) int64 {
	t.Helper()
	resp, err := http.Get(a.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), `assetgen_local_model_images_total{outcome="image"} `); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return int64(n)
		}
	}
	t.Fatal("no assetgen_local_model_images_total in /metrics")
	return 0
}

// soakPost is post for goroutines: it returns its error instead of failing the test.
func soakPost(ctx context.Context, url, body string, headers map[string]string) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	out := answer{status: resp.StatusCode, header: resp.Header}
	_ = json.NewDecoder(resp.Body).Decode(&out.doc)
	return out, nil
}
