package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/matryer/is"
)

// originLog records the Origin header of the image reads the storage
// emulator serves.
type originLog struct {
	mu      sync.Mutex
	origins []string
}

func (l *originLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/images/") && o != "" {
			l.mu.Lock()
			l.origins = append(l.origins, o)
			l.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

func (l *originLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.origins)
}

// frontendChromium finds Debian's Chromium: without it the test skips on a
// developer machine and fails in CI, which installs it.
func frontendChromium(t *testing.T) string {
	t.Helper()
	if path, err := exec.LookPath("chromium"); err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("Chromium is not installed: the frontend snippets cannot be run")
	}
	t.Skip("Chromium is not installed (apt-get install chromium): the frontend snippets cannot be run")
	return ""
}

// frontendBrowser starts a headless Chromium with a fresh profile, closed
// when the test ends.
func frontendBrowser(t *testing.T, exe string, timeout time.Duration) context.Context {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	ctx, cancelTab := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", exe, err)
	}
	return ctx
}

// frontendPage is the page the snippets run in: the gallery the example
// fills, a recorder of the URLs EventSource opens and of uncaught errors,
// then every js block of docs/frontend.md, in order, as one module.
func frontendPage(snippets string) string {
	return `<!doctype html><meta charset="utf-8"><title>frontend quick start</title>
<div id="gallery"></div>
<script>
window.__opened = [];
window.__errors = [];
const NativeEventSource = window.EventSource;
window.EventSource = class extends NativeEventSource {
  constructor(url, init) { super(url, init); window.__opened.push(String(url)); }
};
window.addEventListener('error', (e) => window.__errors.push(String(e.message)));
window.addEventListener('unhandledrejection', (e) => window.__errors.push(String(e.reason && (e.reason.stack || e.reason))));
</script>
<script type="module">
` + snippets + `
window.__doc = { api, submit, follow, cancel, batches, archive, upload, imageBlob, credentials, sub };
</script>
`
}

// run evaluates an async expression in the page and decodes the JSON string
// it resolves to.
func frontendRun(t *testing.T, ctx context.Context, what, expr string, into any) {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := json.Unmarshal([]byte(s), into); err != nil {
		t.Fatalf("%s: %v in %s", what, err, s)
	}
}

// The JavaScript of docs/frontend.md, as written, in Chromium on a page of
// another origin than the API (a dev server's), with CORS_ORIGINS naming it:
// the example submits as an X-Assetgen-User (so the preflight must allow it)
// and shows every image with its lasting link; follow resumes through expired
// tokens and ended streams without losing or repeating a row; a validation
// error arrives as its problem document; cancel answers its account; the list
// pages; an upload's ref works in a batch; the archive and an image download.
func TestFrontendSnippetsRunInABrowser(t *testing.T) {
	exe := frontendChromium(t)
	is := is.New(t)
	var code []string
	for _, b := range docBlocks(t, "docs/frontend.md") {
		if b.label == "js" {
			is.Equal(b.lang, "js")
			code = append(code, b.text)
		}
	}
	is.True(len(code) >= 6)
	snippets := strings.Join(code, "\n")
	const documented = "const API = 'http://127.0.0.1:8080';"
	is.True(strings.Contains(snippets, documented)) // the snippets name make run's address

	// The dev server's origin must be known before the stack starts (for
	// CORS_ORIGINS) and the stack's address before the page is served.
	var page string
	dev := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, page)
	}))
	origin := "http://" + dev.Listener.Addr().String()
	origins := &originLog{}
	// Tokens that expire within a second and streams that end after one make
	// follow resume several times in a batch that takes five.
	a := startAppWith(t, map[string]string{
		"CORS_ORIGINS": origin, "DRY_RUN_DELAY": "5s", "PROGRESS_TOKEN_TTL": "1s",
		"SSE_MAX_DURATION": "1s", "SSE_RETRY": "100ms",
	}, options{wrapGCS: origins.wrap})
	page = frontendPage(strings.Replace(snippets, documented, "const API = '"+a.base+"';", 1))
	dev.Start()
	t.Cleanup(dev.Close)

	ctx := frontendBrowser(t, exe, 90*time.Second)
	// Without the browser's cache every read of an image reaches the bucket,
	// which records its Origin.
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.SetCacheDisabled, network.SetCacheDisabledParams{CacheDisabled: true}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(dev.URL+"/")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`window.__doc !== undefined || window.__errors.length > 0`,
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("the example's submit: %v", err)
	}
	var startErrors []string
	frontendRun(t, ctx, "reading the page's errors", `Promise.resolve(JSON.stringify(window.__errors))`, &startErrors)
	if len(startErrors) > 0 {
		t.Fatalf("the snippets failed in the page: %q", startErrors)
	}

	// Every scenario but the example's own runs here; the list last, since it
	// acts as another user.
	var got struct {
		Resume struct {
			Log    [][3]any `json:"log"`
			Status string   `json:"status"`
			Done   int      `json:"done"`
			Opened []string `json:"opened"`
		} `json:"resume"`
		Cancel struct {
			Cancel map[string]any `json:"cancel"`
			Final  string         `json:"final"`
		} `json:"cancel"`
		Invalid struct {
			Code   string `json:"code"`
			Errors []struct {
				Field, Code string
			} `json:"errors"`
		} `json:"invalid"`
		Upload struct {
			Ref  string `json:"ref"`
			Refs int    `json:"refs"`
		} `json:"upload"`
		List struct {
			IDs  []string `json:"ids"`
			Seen []string `json:"seen"`
		} `json:"list"`
	}
	frontendRun(t, ctx, "the scenarios", `(async () => {
  const { api, submit, follow, cancel, batches, upload, credentials } = window.__doc;
  const followed = (s, row) => new Promise((finished, error) => follow(s.batchId, s.progressUrl, { row, finished, error }));
  const resume = (async () => {
    const s = await submit({ runMode: 'dry_run', rows: [{ prompt: 'resume', variants: 2 }, { prompt: 'resume too' }] });
    const log = [];
    const b = await followed(s, (r) => log.push([r.index, r.version, r.status]));
    return { log, status: b.status, done: b.variantCounts.done, opened: window.__opened.filter((u) => u.includes(s.batchId)) };
  })();
  const cancelled = (async () => {
    const s = await submit({ runMode: 'dry_run', rows: [{ prompt: 'cancel me', variants: 2 }] });
    const answer = await cancel(s.batchId);
    return { cancel: answer.cancel, final: (await followed(s)).status };
  })();
  const invalid = submit({ runMode: 'dry_run', rows: [{ prompt: '' }] }).then(() => ({}), (err) => err.problem);
  const uploaded = (async () => {
    const canvas = Object.assign(document.createElement('canvas'), { width: 64, height: 64 });
    const g = canvas.getContext('2d');
    g.fillStyle = '#c33';
    g.fillRect(0, 0, 64, 64);
    const png = await new Promise((ok) => canvas.toBlob(ok, 'image/png'));
    const ref = await upload(new File([png], 'ref.png', { type: 'image/png' }));
    const s = await submit({ runMode: 'dry_run', rows: [{ prompt: 'with my own reference', refs: [ref] }] });
    return { ref, refs: s.rows[0].refs };
  })();
  const out = { resume: await resume, cancel: await cancelled, invalid: await invalid, upload: await uploaded };
  credentials['X-Assetgen-User'] = 'lister';
  try {
    const ids = [];
    for (const p of ['first', 'second', 'third']) ids.push((await submit({ runMode: 'dry_run', rows: [{ prompt: p }] })).batchId);
    const seen = [];
    for await (const b of batches({ limit: 2 })) seen.push(b.batchId);
    out.list = { ids, seen };
  } finally {
    credentials['X-Assetgen-User'] = 'alice';
  }
  return JSON.stringify(out);
})()`, &got)

	// follow: done, every row version once, resumed with a fresh token where it was.
	is.Equal(got.Resume.Status, "done") // the batch was followed to the end
	is.Equal(got.Resume.Done, 3)        // with its 2 + 1 images
	seen := map[string]bool{}
	final := map[string]string{}
	for _, e := range got.Resume.Log {
		key := fmt.Sprint(e[0], "@", e[1])
		is.True(!seen[key]) // no row version arrived twice, across every reconnect
		seen[key] = true
		final[fmt.Sprint(e[0])] = e[2].(string)
	}
	is.Equal(final, map[string]string{"0": "done", "1": "done"}) // nothing lost: each row's last event is done
	resumed := 0
	for _, u := range got.Resume.Opened {
		if strings.Contains(u, "lastEventId=") {
			resumed++
		}
	}
	is.True(resumed > 0) // a fresh token reopened the stream where it was

	// A refused submit is its problem document.
	is.Equal(got.Invalid.Code, "VALIDATION_FAILED")
	is.Equal(len(got.Invalid.Errors), 1)
	is.Equal(got.Invalid.Errors[0].Field, "/rows/0/prompt") // the field, as a JSON pointer
	is.Equal(got.Invalid.Errors[0].Code, "REQUIRED")

	// Cancel's account, and the batch ends cancelled.
	for _, k := range []string{"kept", "chargedUsd", "mayStillMake", "mayStillChargeUsd", "releasedUsd", "finished"} {
		_, ok := got.Cancel.Cancel[k]
		is.True(ok) // the cancel answer's account has each documented member
	}
	// The batch ends cancelled — or done, when the cancel came too late to
	// stop anything: both variants were made or being made when it answered.
	if got.Cancel.Final != "cancelled" {
		is.Equal(got.Cancel.Final, "done")
		is.Equal(got.Cancel.Cancel["kept"].(float64)+got.Cancel.Cancel["mayStillMake"].(float64), 2.0)
	}

	// An upload PUT from the page, its ref used in a batch.
	is.True(strings.HasPrefix(got.Upload.Ref, "gs://assetgen-local/uploads/"))
	is.Equal(got.Upload.Refs, 1) // the batch kept the uploaded reference

	// The list, newest first, over two pages of two.
	slices.Reverse(got.List.IDs)
	is.Equal(got.List.Seen, got.List.IDs)

	// The example: every image shown from its signed URL, each with its
	// lasting link once the batch finished.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => {
  const imgs = [...document.querySelectorAll('#gallery img')];
  return imgs.length === 3 && imgs.every((i) => i.complete && i.naturalWidth > 0 && i.dataset.link);
})()`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the example's gallery: %v", err)
	}
	var shown struct {
		Links []string `json:"links"`
		Srcs  []string `json:"srcs"`
	}
	frontendRun(t, ctx, "reading the gallery", `Promise.resolve(JSON.stringify({
  links: [...document.querySelectorAll('#gallery img')].map((i) => i.dataset.link),
  srcs: [...document.querySelectorAll('#gallery img')].map((i) => i.src),
}))`, &shown)
	for i := range shown.Links {
		is.True(strings.HasPrefix(shown.Links[i], a.base+"/assets/"))       // a lasting link, on the API's origin
		is.True(strings.HasPrefix(shown.Srcs[i], "http://"+a.gcs.Addr+"/")) // the image, from the storage emulator's origin
	}

	// Downloads: the archive, an image through its url; and what the bucket
	// sees when a page fetches a link instead.
	var dl struct {
		ZipType, Magic, ImageType, LinkType string
	}
	frontendRun(t, ctx, "downloading", `(async () => {
  const { api, archive, imageBlob, sub } = window.__doc;
  const b = await api('/batch/' + sub.batchId);
  const zip = await archive(sub.batchId);
  const magic = String.fromCharCode(...new Uint8Array(await zip.slice(0, 2).arrayBuffer()));
  const image = await imageBlob(b.rows[0].variants[0]);
  const viaLink = await fetch(b.rows[0].variants[0].link);
  return JSON.stringify({ ZipType: zip.type, Magic: magic, ImageType: image.type, LinkType: (await viaLink.blob()).type });
})()`, &dl)
	is.Equal(dl.ZipType, "application/zip")
	is.Equal(dl.Magic, "PK")            // a ZIP
	is.Equal(dl.ImageType, "image/png") // the image, read across origins
	is.Equal(dl.LinkType, "image/png")
	bucketSaw := origins.all()
	is.True(slices.Contains(bucketSaw, origin)) // a fetch of the url comes from the page's origin
	is.True(slices.Contains(bucketSaw, "null")) // a fetch of the link reaches the bucket from Origin: null

	var pageErrors []string
	frontendRun(t, ctx, "reading the page's errors", `Promise.resolve(JSON.stringify(window.__errors))`, &pageErrors)
	is.Equal(len(pageErrors), 0) // no uncaught error or rejection
}
