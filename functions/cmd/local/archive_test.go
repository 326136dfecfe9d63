package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/client"
	"github.com/assetgen/assetgen/shared/ledger"
)

// unzip opens an archive held in memory.
func unzip(t *testing.T, b []byte) *zip.Reader {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("not a valid archive: %v", err)
	}
	return zr
}

func entry(t *testing.T, zr *zip.Reader, name string) []byte {
	t.Helper()
	f, err := zr.Open(name)
	if err != nil {
		t.Fatalf("no %s in the archive: %v", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func names(zr *zip.Reader) []string {
	var out []string
	for _, f := range zr.File {
		out = append(out, f.Name)
	}
	return out
}

// A finished batch's archive holds every image made, byte for byte, under
// names built from the prompts, and says what became of every variant.
func TestArchiveOfAFinishedBatch(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, _ := liveStack(t, nil)
	long := strings.Repeat("a very long prompt about foxes ", 20)
	body, _ := json.Marshal(map[string]any{"runMode": "live", "confirm": "CONFIRM", "rows": []map[string]any{
		{"prompt": "A red fox — in the snow!", "variants": 2},
		{"prompt": `Crème brûlée / "quoted" \ slash`},
		{"prompt": "日本の猫"},
		{"prompt": long},
		{"prompt": "a fox [blocked-output]", "variants": 2},
	}})
	sub := post(t, a.base+"/batch/images", string(body), nil)
	is.Equal(sub.status, http.StatusAccepted)
	id := sub.str("batchId")
	waitFinished(t, sub.str("progressUrl"))

	var buf bytes.Buffer
	is.NoErr(client.New(a.base).Archive(deadline(t, time.Minute), id, &buf)) // the Go client downloads it whole
	zr := unzip(t, buf.Bytes())
	is.Equal(names(zr), []string{
		"r0-v0-a-red-fox-in-the-snow.png",
		"r0-v1-a-red-fox-in-the-snow.png",
		"r1-v0-creme-brulee-quoted-slash.png",
		"r2-v0.png",
		"r3-v0-a-very-long-prompt-about-foxes-a-very-lo.png", // cut at 40 bytes,
		"manifest.json",
		"results.csv",
	}) // every image made, named r{row}-v{variant}-{slug}, then the records

	// Byte for byte what the bucket holds, stored without recompression.
	ctx := deadline(t, time.Minute)
	m, err := a.platform.Ledger.Manifest(ctx, id)
	is.NoErr(err)
	rows, err := a.platform.Ledger.Rows(ctx, m)
	is.NoErr(err)
	for _, f := range zr.File[:5] {
		var row, variant int
		is.NoErr(scanName(f.Name, &row, &variant))
		stored, err := a.platform.Ledger.ReadObject(ctx, rows[row].Variants[variant].Object)
		is.NoErr(err)
		is.True(bytes.Equal(entry(t, zr, f.Name), stored)) // the stored image, unchanged
		is.Equal(f.Method, zip.Store)                      // not compressed again
	}

	var man api.ArchiveManifest
	is.NoErr(json.Unmarshal(entry(t, zr, "manifest.json"), &man))
	is.Equal(man.BatchID, id)
	is.Equal(man.RunMode, "live")
	is.Equal(man.Model, "gemini-2.5-flash-image")
	is.True(man.CreatedAt.Equal(m.CreatedAt))
	is.Equal(man.Status, ledger.Done) // the batch's status
	is.Equal(man.Variants.Done, 5)    // every image but the blocked ones
	is.Equal(man.Variants.Failed, 2)  // which failed
	is.True(man.Complete)             // nothing more will come
	is.Equal(man.Note, "")
	is.Equal(len(man.Rows), 5)
	is.Equal(man.Rows[3].Prompt, strings.TrimSpace(long)) // prompts as submitted
	is.Equal(man.Rows[0].Variants[1].File, "r0-v1-a-red-fox-in-the-snow.png")
	blocked := man.Rows[4].Variants[0]
	is.Equal(blocked.Status, ledger.Failed)
	is.Equal(blocked.ErrorCode, "MODEL_SAFETY_BLOCKED") // why it failed
	is.Equal(blocked.File, "")                          // no image
	is.Equal(blocked.Link, "")

	lines, err := csv.NewReader(bytes.NewReader(entry(t, zr, "results.csv"))).ReadAll()
	is.NoErr(err) // valid CSV
	is.Equal(lines[0], []string{"row", "variant", "prompt", "status", "error_code", "link"})
	is.Equal(len(lines), 1+7)                                                                 // one line per variant, failed ones too
	is.Equal(lines[3][:5], []string{"1", "0", `Crème brûlée / "quoted" \ slash`, "done", ""}) // quotes survive the escaping
	is.Equal(lines[7][:5], []string{"4", "1", "a fox [blocked-output]", "failed", "MODEL_SAFETY_BLOCKED"})
	is.Equal(lines[7][5], "") // a failed variant has no link
	link := lines[1][5]
	is.True(strings.HasPrefix(link, a.base+"/assets/"+id+"/0/0?token=")) // the stable link, absolute
	is.Equal(link, man.Rows[0].Variants[0].Link)                         // the same in both records
	resp, err := noRedirect.Get(link)
	is.NoErr(err)
	resp.Body.Close()
	is.Equal(resp.StatusCode, http.StatusFound) // and it works without a credential

	// The route itself: a download named after the batch.
	resp, err = http.Get(a.base + "/batch/" + id + "/archive")
	is.NoErr(err)
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	is.Equal(resp.StatusCode, http.StatusOK)
	is.Equal(resp.Header.Get("Content-Type"), "application/zip")
	is.Equal(resp.Header.Get("Content-Disposition"), `attachment; filename="`+id+`.zip"`)
	is.True(n > 0)

	// An image the bucket lost (retention) is recorded as missing, not fatal.
	is.NoErr(a.platform.Storage.Bucket(a.cfg.Bucket).Object(rows[2].Variants[0].Object).Delete(ctx))
	buf.Reset()
	is.NoErr(client.New(a.base).Archive(ctx, id, &buf))
	zr = unzip(t, buf.Bytes())
	is.True(!slices.Contains(names(zr), "r2-v0.png")) // no file for it
	is.NoErr(json.Unmarshal(entry(t, zr, "manifest.json"), &man))
	is.True(man.Rows[2].Variants[0].Missing) // the manifest says so
}

// waitFinished waits until the batch of progressURL is finished: its stream
// reaches done, or answers 204 when the batch finished before it opened.
func waitFinished(t *testing.T, progressURL string) {
	t.Helper()
	s := openStream(t, progressURL, "")
	if s.resp.StatusCode == http.StatusNoContent {
		return
	}
	readToDone(t, s)
}

// scanName reads row and variant back from an image's name.
func scanName(name string, row, variant *int) error {
	_, err := fmt.Sscanf(name, "r%d-v%d", row, variant)
	return err
}

// admitFirst lets the first task delivery through and holds the others until
// gate closes, so a batch stays part-way done.
type admitFirst struct {
	admitted atomic.Bool
	gate     <-chan struct{}
	next     http.RoundTripper
}

func (a *admitFirst) RoundTrip(r *http.Request) (*http.Response, error) {
	if a.admitted.CompareAndSwap(false, true) {
		return a.next.RoundTrip(r)
	}
	return gated{gate: a.gate, next: a.next}.RoundTrip(r)
}

// A running batch's archive holds the images made so far and says the batch
// is not finished.
func TestArchiveOfARunningBatch(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	gate := make(chan struct{})
	a := startAppWith(t, nil, options{deliveries: &http.Client{Transport: &admitFirst{gate: gate, next: http.DefaultTransport}}})
	t.Cleanup(func() { close(gate) })
	sub := (&stack{base: a.base}).submit(t, `{"runMode":"dry_run","rows":[{"prompt":"one","variants":2},{"prompt":"two","variants":2},{"prompt":"three","variants":2}]}`)
	s := openStream(t, sub.ProgressURL, "")
	for doneRow := false; !doneRow; {
		ev, ok := s.next()
		is.True(ok) // the stream reports the admitted row
		var r rowEvent
		doneRow = ev.Type == "row" && json.Unmarshal([]byte(ev.Data), &r) == nil && r.Status == "done"
	}
	s.close()

	var buf bytes.Buffer
	is.NoErr(client.New(a.base).Archive(deadline(t, time.Minute), sub.BatchID, &buf))
	zr := unzip(t, buf.Bytes())
	var man api.ArchiveManifest
	is.NoErr(json.Unmarshal(entry(t, zr, "manifest.json"), &man))
	is.True(!man.Complete)                                              // the batch still runs
	is.Equal(man.Status, ledger.Running)                                // its status when the archive was built
	is.True(strings.Contains(man.Note, "images made by then (2 of 6)")) // the manifest says what is missing
	var want []string
	for _, r := range man.Rows {
		for _, v := range r.Variants {
			if r.Status == ledger.Done {
				is.True(v.File != "") // every image of the finished row is there
				want = append(want, v.File)
				continue
			}
			is.Equal(v.Status, ledger.Queued) // the held rows have not started
			is.Equal(v.File, "")              // and have no file
		}
	}
	is.Equal(len(want), 2)
	is.Equal(names(zr), append(want, "manifest.json", "results.csv")) // only the images made
	lines, err := csv.NewReader(bytes.NewReader(entry(t, zr, "results.csv"))).ReadAll()
	is.NoErr(err)
	is.Equal(len(lines), 1+6) // every variant has its line, made or not
}

// imageReads hands the storage emulator's image reads to hold and serves the
// rest.
func imageReads(hold func(w http.ResponseWriter, r *http.Request, next http.Handler)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && r.URL.Query().Get("alt") == "media" && strings.Contains(r.URL.Path, "/images/") {
				hold(w, r, next)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Archive builds are bounded per user: a third concurrent build of one user
// is refused with Retry-After while another user is served, and a client
// that leaves stops its build's storage reads.
func TestArchiveBuildsAreBoundedPerUser(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	var (
		gate    = make(chan struct{})
		held    = make(chan struct{}, 8)
		left    = make(chan struct{}, 8)
		mu      sync.Mutex
		aliceID string
	)
	hold := func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		mu.Lock()
		gated := aliceID != "" && strings.Contains(r.URL.Path, aliceID)
		mu.Unlock()
		if !gated {
			next.ServeHTTP(w, r)
			return
		}
		held <- struct{}{}
		select {
		case <-gate:
			next.ServeHTTP(w, r)
		case <-r.Context().Done():
			left <- struct{}{}
		}
	}
	a := startAppWith(t, nil, options{wrapGCS: imageReads(hold)})
	t.Cleanup(func() {
		select {
		case <-gate:
		default:
			close(gate)
		}
	})
	st := &stack{base: a.base}
	alice := st.submitAs(t, "alice", `{"runMode":"dry_run","rows":[{"prompt":"alice's"}]}`)
	bob := st.submitAs(t, "bob", `{"runMode":"dry_run","rows":[{"prompt":"bob's"}]}`)
	waitFinished(t, alice.ProgressURL)
	waitFinished(t, bob.ProgressURL)
	mu.Lock()
	aliceID = alice.BatchID
	mu.Unlock()

	archive := func(ctx context.Context, user, id string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/batch/"+id+"/archive", nil)
		req.Header.Set(auth.HeaderUser, user)
		return http.DefaultClient.Do(req)
	}
	type result struct {
		resp *http.Response
		err  error
	}
	first, cancelFirst := context.WithCancel(deadline(t, time.Minute))
	firstDone := make(chan result, 1)
	go func() { r, err := archive(first, "alice", alice.BatchID); firstDone <- result{r, err} }()
	secondDone := make(chan result, 1)
	go func() {
		r, err := archive(deadline(t, time.Minute), "alice", alice.BatchID)
		secondDone <- result{r, err}
	}()
	for range 2 {
		select {
		case <-held: // both builds are reading alice's image
		case <-deadline(t, 30*time.Second).Done():
			t.Fatal("the builds never read the image")
		}
	}

	third, err := archive(deadline(t, time.Minute), "alice", alice.BatchID)
	is.NoErr(err)
	doc, _ := io.ReadAll(third.Body)
	third.Body.Close()
	is.Equal(third.StatusCode, http.StatusTooManyRequests)   // a third build of alice's is refused
	is.True(strings.Contains(string(doc), `"RATE_LIMITED"`)) // with the rate-limit code
	is.Equal(third.Header.Get("Retry-After"), "10")          // and when to come back

	var bobs bytes.Buffer
	c := client.New(a.base)
	c.HTTP = &http.Client{Transport: asUser{user: "bob"}}
	is.NoErr(c.Archive(deadline(t, time.Minute), bob.BatchID, &bobs)) // another user is served meanwhile
	unzip(t, bobs.Bytes())

	cancelFirst() // the first client leaves
	select {
	case <-left: // its build stopped reading the image
	case <-deadline(t, 30*time.Second).Done():
		t.Fatal("the build went on reading after its client left")
	}
	if r := <-firstDone; r.err == nil {
		r.resp.Body.Close()
	}

	close(gate)
	r := <-secondDone
	is.NoErr(r.err)
	b, err := io.ReadAll(r.resp.Body)
	r.resp.Body.Close()
	is.NoErr(err)
	is.Equal(r.resp.StatusCode, http.StatusOK)
	is.Equal(names(unzip(t, b))[0], "r0-v0-alices.png") // the held build finished once its read went on
}

// asUser names the local stack's user on every request.
type asUser struct{ user string }

func (u asUser) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(auth.HeaderUser, u.user)
	return http.DefaultTransport.RoundTrip(r)
}

// submitAs submits body as user.
func (s *stack) submitAs(t *testing.T, user, body string) submitted {
	t.Helper()
	is := is.New(t)
	ans := post(t, s.base+"/batch/images", body, map[string]string{auth.HeaderUser: user})
	is.Equal(ans.status, http.StatusAccepted) // submit accepted
	return submitted{BatchID: ans.str("batchId"), Status: ans.str("status"), ProgressURL: ans.str("progressUrl"), StatusURL: ans.str("statusUrl")}
}

// A storage failure before the first byte answers a problem document; after
// it, the response is cut and the client is told the archive is incomplete,
// never handed one that looks whole.
func TestArchiveFailures(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	var reads atomic.Int64
	var failAt atomic.Int64 // the image read (1-based) that fails; 0: none
	fail := func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if n := reads.Add(1); n == failAt.Load() {
			http.Error(w, `{"error":{"code":403,"message":"denied"}}`, http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	}
	a := startAppWith(t, nil, options{wrapGCS: imageReads(fail)})
	sub := (&stack{base: a.base}).submit(t, `{"runMode":"dry_run","rows":[{"prompt":"one","variants":3}]}`)
	waitFinished(t, sub.ProgressURL)
	ctx := deadline(t, time.Minute)
	c := client.New(a.base)

	reads.Store(0)
	head, err := http.Head(a.base + "/batch/" + sub.BatchID + "/archive")
	is.NoErr(err)
	head.Body.Close()
	is.Equal(head.StatusCode, http.StatusOK)                     // HEAD answers the download's headers
	is.Equal(head.Header.Get("Content-Type"), "application/zip") // as GET would
	is.Equal(reads.Load(), int64(0))                             // without reading a single image

	failAt.Store(1)
	var buf bytes.Buffer
	err = c.Archive(ctx, sub.BatchID, &buf)
	var pe *client.ProblemError
	is.True(errors.As(err, &pe))                         // nothing was sent yet: a problem document
	is.Equal(pe.Status, http.StatusServiceUnavailable)   // storage could not be read
	is.Equal(string(pe.Doc.Code), "STORAGE_UNAVAILABLE") // with its code
	is.Equal(buf.Len(), 0)

	reads.Store(0)
	failAt.Store(3)
	buf.Reset()
	err = c.Archive(ctx, sub.BatchID, &buf)
	is.True(errors.Is(err, client.ErrIncompleteArchive)) // cut mid-stream: the client knows
	is.True(buf.Len() > 0)                               // after images were sent
	_, zerr := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	is.True(zerr != nil) // and what arrived is no archive
	cut := false
	for _, l := range logLines(t, a) {
		cut = cut || l["message"] == "submit: archive cut after it started"
	}
	is.True(cut) // the cut is logged

	failAt.Store(0)
	buf.Reset()
	is.NoErr(c.Archive(ctx, sub.BatchID, &buf)) // with storage back, the archive is whole
	is.Equal(len(unzip(t, buf.Bytes()).File), 3+2)
}
