package submit_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/problem"
)

// newRefsHarness is newHarness over a platform opened with env, which
// reference tests need (loopback references, the instance's limits).
func newRefsHarness(t *testing.T, env map[string]string) *harness {
	t.Helper()
	return newHarnessWith(t, env, nil)
}

// refHost serves a distinct small PNG at every path, counts requests, and
// holds each one until gate (when not nil) is closed.
type refHost struct {
	srv      *httptest.Server
	gate     chan struct{}
	hits     atomic.Int32
	inFlight atomic.Int32
	peak     atomic.Int32
}

func newRefHost(t *testing.T, gate chan struct{}) *refHost {
	h := &refHost{gate: gate}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.hits.Add(1)
		cur := h.inFlight.Add(1)
		defer h.inFlight.Add(-1)
		for p := h.peak.Load(); cur > p && !h.peak.CompareAndSwap(p, cur); p = h.peak.Load() {
		}
		if strings.HasPrefix(r.URL.Path, "/hang") {
			<-r.Context().Done()
			return
		}
		if h.gate != nil {
			<-h.gate
		}
		_, _ = w.Write(distinctPNG(t, r.URL.Path))
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func distinctPNG(t *testing.T, seed string) []byte {
	sum := sha256.Sum256([]byte(seed))
	img := image.NewRGBA(image.Rect(0, 0, 2, 2))
	for i := range 4 {
		img.Set(i%2, i/2, color.RGBA{R: sum[3*i], G: sum[3*i+1], B: sum[3*i+2], A: 255})
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Error(err)
	}
	return b.Bytes()
}

func (hs *harness) objects(t *testing.T, prefix string) []string {
	t.Helper()
	var names []string
	for a, err := range hs.Bucket.List(ctx(t), bucket.Query{Prefix: prefix}) {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, a.Name)
	}
	return names
}

// refsJSON is a JSON array of the host's URLs for paths.
func (h *refHost) refsJSON(paths ...string) string {
	var urls []string
	for _, p := range paths {
		urls = append(urls, fmt.Sprintf("%q", h.srv.URL+p))
	}
	return "[" + strings.Join(urls, ",") + "]"
}

// Lists of up to 20 URLs are accepted and capped, not refused: merged per row
// before global, deduplicated, the first min(6, the model's limit) are kept;
// only those are fetched and stored, and the rest are reported as dropped.
func TestSubmitFetchesOnlyTheRefsTheModelKeeps(t *testing.T) {
	paths := func(prefix string, n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("/%s%d.png", prefix, i))
		}
		return out
	}
	cases := []struct {
		name   string
		model  string
		kept   int
		reason string
	}{
		{"the default model keeps 3", "", 3, "over the limit of 3 references"},
		{"a model taking 14 keeps 6", `"model":"gemini-3-pro-image-preview",`, 6, "over the limit of 6 references"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			hs := newRefsHarness(t, map[string]string{"REFS_ALLOW_LOOPBACK": "true"})
			host := newRefHost(t, nil)
			body := fmt.Sprintf(`{"runMode":"dry_run",%s"refs":%s,"rows":[{"prompt":"p","refs":%s}]}`, c.model,
				host.refsJSON(paths("g", batch.MaxRefsPerList)...), host.refsJSON(paths("r", batch.MaxRefsPerList)...))

			resp := hs.submit(t, "", body)
			is.Equal(resp.Rows[0].Refs, c.kept)                                    // the model's limit, at most 6
			is.Equal(len(resp.Rows[0].DroppedRefs), 2*batch.MaxRefsPerList-c.kept) // the rest, reported
			for _, d := range resp.Rows[0].DroppedRefs {
				is.Equal(d.Reason, c.reason) // as over the limit
			}
			is.Equal(host.hits.Load(), int32(c.kept))         // only the kept ones were fetched
			is.Equal(len(hs.objects(t, layout.Refs)), c.kept) // and stored
			is.Equal(len(hs.objects(t, layout.Staging)), 0)   // nothing left in staging
			m, err := hs.Ledger.Manifest(ctx(t), resp.BatchID)
			is.NoErr(err)
			is.Equal(m.Rows[0].Refs[0].URL, host.srv.URL+"/r0.png") // the row's own first
		})
	}
}

// References that never answer cost a submit REF_RESOLVE_TIMEOUT, then a 422
// that names them; nothing of the batch or its references is left behind.
func TestSubmitRefTimeoutAnswers422NamingSlowURLs(t *testing.T) {
	is := is.New(t)
	hs := newRefsHarness(t, map[string]string{"REFS_ALLOW_LOOPBACK": "true", "REF_RESOLVE_TIMEOUT": "300ms"})
	host := newRefHost(t, nil)
	body := fmt.Sprintf(`{"runMode":"dry_run","rows":[{"prompt":"p","refs":%s},{"prompt":"q","refs":%s}]}`,
		host.refsJSON("/ok.png", "/hang-a.png"), host.refsJSON("/hang-b.png"))

	w := hs.do(http.MethodPost, "/batch/images", "", body)
	is.Equal(w.Code, http.StatusUnprocessableEntity) // 422, not a gateway timeout
	doc := problemOf(t, w)
	is.Equal(doc.Code, problem.RefFetchFailed)
	is.True(strings.Contains(doc.Detail, host.srv.URL+"/hang-a.png")) // the detail names the slow URLs
	is.True(strings.Contains(doc.Detail, host.srv.URL+"/hang-b.png"))
	fields := map[string]string{}
	for _, fe := range doc.Errors {
		fields[fe.Field] = fe.Code
	}
	is.Equal(fields, map[string]string{"/rows/0/refs/1": "REF_FETCH_FAILED", "/rows/1/refs/0": "REF_FETCH_FAILED"}) // each where it was written
	is.Equal(hs.objects(t, layout.Refs), []string(nil))                                                             // no reference stored
	is.Equal(hs.objects(t, layout.Staging), []string(nil))                                                          // none staged
	is.Equal(hs.objects(t, layout.Batches), []string(nil))                                                          // no batch
	is.Equal(hs.Tasks.Stats().Created, int64(0))                                                                    // nothing queued
}

// Concurrent submits share the instance's fetch slots: with REF_MAX_FETCHES=2
// three submits of three references each never have more than two requests
// at the reference host at once.
func TestConcurrentSubmitsShareTheInstanceFetchLimit(t *testing.T) {
	is := is.New(t)
	hs := newRefsHarness(t, map[string]string{"REFS_ALLOW_LOOPBACK": "true", "REF_MAX_FETCHES": "2"})
	gate := make(chan struct{})
	host := newRefHost(t, gate)
	fetcher := hs.Refs()

	var wg sync.WaitGroup
	answers := make([]*httptest.ResponseRecorder, 3)
	for i := range answers {
		body := fmt.Sprintf(`{"runMode":"dry_run","rows":[{"prompt":"p","refs":%s}]}`,
			host.refsJSON(fmt.Sprintf("/%d-a.png", i), fmt.Sprintf("/%d-b.png", i), fmt.Sprintf("/%d-c.png", i)))
		wg.Go(func() { answers[i] = hs.do(http.MethodPost, "/batch/images", "", body) })
	}
	// Every fetch is either at the host or queued on the instance.
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for int(host.inFlight.Load())+fetcher.Queued() != 9 {
		if time.Now().After(deadline) {
			t.Fatalf("fetches at the host %d, queued %d: want 9 in all", host.inFlight.Load(), fetcher.Queued())
		}
		<-tick.C
	}
	is.Equal(host.inFlight.Load(), int32(2)) // the instance's limit, reached and held
	close(gate)
	wg.Wait()
	for _, w := range answers {
		is.Equal(w.Code, http.StatusAccepted) // every submit accepted
		var resp api.SubmitResponse
		is.NoErr(json.Unmarshal(w.Body.Bytes(), &resp))
		is.Equal(resp.Rows[0].Refs, 3)
	}
	is.Equal(host.hits.Load(), int32(9)) // every reference fetched
	is.True(host.peak.Load() <= 2)       // never more than the limit at once
}
