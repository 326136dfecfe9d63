package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// chromium finds Debian's Chromium. Without it the browser test skips on a
// developer machine and fails in CI, which installs it (.ci/run).
func uiChromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	msg := "Chromium is not installed (apt-get install -y --no-install-recommends chromium): the console browser test cannot run"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// uiAxeSource is axe-core's browser build, the accessibility audit the
// console is held to: AXE_CORE_JS names the file, else npm's global
// axe-core package (npm install -g axe-core) is used. Without it the browser
// tests skip on a developer machine and fail in CI, which installs it
// (.ci/run).
func uiAxeSource(t *testing.T) string {
	t.Helper()
	axeOnce.Do(func() {
		path := os.Getenv("AXE_CORE_JS")
		if path == "" {
			if out, err := exec.Command("npm", "root", "-g").Output(); err == nil {
				path = filepath.Join(strings.TrimSpace(string(out)), "axe-core", "axe.min.js")
			}
		}
		if path == "" {
			return
		}
		if b, err := os.ReadFile(path); err == nil {
			axeJS = string(b)
		}
	})
	if axeJS == "" {
		msg := "axe-core is not installed (npm install -g axe-core, or AXE_CORE_JS=path/to/axe.min.js): the console's accessibility audit cannot run"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return axeJS
}

var (
	axeOnce sync.Once
	axeJS   string
)

// uiAxeViolation is one rule axe-core found broken, and where.
type uiAxeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// uiAudit runs axe-core's default rules (WCAG 2 A and AA, and best
// practices) on the page as it is now, and fails the test for any
// violation; view names what is shown.
func uiAudit(t *testing.T, ctx context.Context, view string) {
	t.Helper()
	src := uiAxeSource(t)
	if !uiEval[bool](t, ctx, `typeof window.axe === 'object'`) {
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](src)); err != nil {
			t.Fatalf("loading axe-core: %v", err)
		}
	}
	res, err := chromedp.Run(ctx, chromedp.Evaluate[uiAxeResult](`axe.run(document).then(r => ({
		passed: r.passes.length,
		violations: r.violations.map(v => ({
			id: v.id, impact: v.impact || '', help: v.help,
			nodes: v.nodes.map(n => n.target.join(' ') + ' — ' + (n.failureSummary || '').replace(/\s+/g, ' ')),
		})),
	}))`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("running axe-core on %s: %v", view, err)
	}
	if res.Passed == 0 {
		t.Errorf("axe-core on %s checked nothing", view)
	}
	for _, x := range res.Violations {
		t.Errorf("axe-core on %s: %s (%s): %s\n  %s", view, x.ID, x.Impact, x.Help, strings.Join(x.Nodes, "\n  "))
	}
	t.Logf("axe-core on %s: %d rules passed, %d violated", view, res.Passed, len(res.Violations))
}

type uiAxeResult struct {
	Passed     int              `json:"passed"`
	Violations []uiAxeViolation `json:"violations"`
}

// browser starts a headless Chromium with a fresh profile; it is closed
// before the stack stops and before the profile is deleted.
func uiBrowser(t *testing.T, exe string, timeout time.Duration) context.Context {
	t.Helper()
	profile := t.TempDir()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Headless, // also hides scrollbars and mutes audio
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true), // /dev/shm is tiny in containers
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancelTab := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc() // waits for the browser to exit
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting %s: %v", exe, err)
	}
	return ctx
}

// uiErrors collects the page's uncaught exceptions, console errors and
// browser-logged errors other than HTTP statuses (Content-Security-Policy
// violations, for one).
type uiErrors struct {
	mu   sync.Mutex
	list []string
}

func uiWatch(t *testing.T, ctx context.Context) *uiErrors {
	pe := &uiErrors{}
	exceptions := chromedp.Events(ctx, runtime.ExceptionThrown)
	consoleCalls := chromedp.Events(ctx, runtime.ConsoleAPICalled)
	entries := chromedp.Events(ctx, cdplog.EntryAdded)
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev, err := range entries {
			if err != nil {
				return
			}
			// Refused requests (the 400 and 401 the tests provoke) are logged
			// by the network source; everything else at error level counts.
			if e := ev.Entry; e.Level == cdplog.EntryLevelError && e.Source != cdplog.EntrySourceNetwork {
				pe.add(fmt.Sprintf("%s: %s %s", e.Source, e.Text, e.URL))
			}
		}
	}()
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			text := ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil && ev.ExceptionDetails.Exception.Description != "" {
				text += " " + ev.ExceptionDetails.Exception.Description
			}
			pe.add("exception: " + text)
		}
	}()
	go func() {
		for ev, err := range consoleCalls {
			if err != nil {
				return
			}
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				pe.add("console.error: " + strings.Join(parts, " "))
			}
		}
	}()
	return pe
}

func (p *uiErrors) add(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.list = append(p.list, s)
}

func (p *uiErrors) all() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.list...)
}

// choose picks an option of a select the way a user does: the value changes
// and change fires.
func uiChoose(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`(() => { const e = document.querySelector(%q); e.value = %q; e.dispatchEvent(new Event('change', {bubbles: true})); })()`, sel, value))
}

func uiEval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

func uiPoll(t *testing.T, ctx context.Context, what, expr string, timeout time.Duration) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout))); err != nil {
		t.Fatalf("waiting until %s: %v", what, err)
	}
}

func uiDo(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// uiFillRows types one row per prompt (the form starts with one row), each
// with the given number of variants.
func uiFillRows(t *testing.T, ctx context.Context, prompts []string, variants int) {
	t.Helper()
	for i, p := range prompts {
		if i > 0 {
			uiDo(t, ctx, "adding a row", chromedp.Click(chromedp.ID("add-row")))
		}
		row := fmt.Sprintf("#rows > li:nth-child(%d) ", i+1)
		uiDo(t, ctx, "filling row "+fmt.Sprint(i+1),
			chromedp.SendKeys(chromedp.CSS(row+"textarea[data-name=prompt]"), p),
			uiChoose(row+"select[data-name=variants]", fmt.Sprint(variants)))
	}
}

// uiCheckLog asserts that, per row, the versions of rendered row events only
// increase (so none repeats), and returns how many came on each connection.
func uiCheckLog(t *testing.T, log []uiRowEvent) map[int]int {
	t.Helper()
	last := map[int]uiRowEvent{}
	perConn := map[int]int{}
	for _, e := range log {
		if prev, ok := last[e.Row]; ok && e.Version <= prev.Version {
			t.Errorf("row %d went from version %d (connection %d) to %d (connection %d)", e.Row, prev.Version, prev.Conn, e.Version, e.Conn)
		}
		last[e.Row] = e
		perConn[e.Conn]++
	}
	return perConn
}

// uiImagesLoaded is true once n thumbnails have loaded from signed URLs.
func uiImagesLoaded(n int) string {
	return fmt.Sprintf(`(() => {
		const imgs = Array.from(document.querySelectorAll('#grid img'));
		return imgs.length === %d && imgs.every(i => i.complete && i.naturalWidth > 0 && i.src.includes('X-Goog-Signature='));
	})()`, n)
}

// uiNoErrors is true while no cell and no box shows an error.
const uiNoErrors = `document.querySelectorAll('#grid .cell[data-status=failed], #grid .cell[data-image=broken], #grid .error, .problem:not([hidden])').length === 0`

// uiRepoRoot is the directory of go.mod.
func uiRepoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

type uiRowEvent struct {
	Row     int    `json:"row"`
	Version int    `json:"version"`
	Status  string `json:"status"`
	Conn    int    `json:"conn"`
	ID      string `json:"id"`
}

// The console, driven by a real browser against `make run`'s wiring: the live
// run is gated on CONFIRM, a problem document is shown field by field, and a
// dry run of 3 rows × 2 variants fills its grid with six signed thumbnails —
// across a dropped and resumed progress stream, with no row state shown twice
// or out of order.
func TestConsoleEndToEnd(t *testing.T) {
	exe := uiChromium(t)
	uiAxeSource(t)
	began := time.Now()
	// The fake model only makes live runs available, so the CONFIRM gate can be
	// exercised; nothing in this test runs live. One task at a time makes the
	// rows finish 400ms apart, so there is always news after the first image.
	s := startStack(t, map[string]string{"DRY_RUN_DELAY": "400ms", "LOCAL_FAKE_MODEL": "true", "LOCAL_TASKS_MAX_CONCURRENT": "1", "LOCAL_TASKS_DRY_RUN_MAX_CONCURRENT": "1"})
	ctx := uiBrowser(t, exe, 60*time.Second)
	errs := uiWatch(t, ctx)
	t.Logf("stack and browser up in %s", time.Since(began).Round(time.Millisecond))

	uiDo(t, ctx, "opening the console", chromedp.Navigate(s.base+"/"))
	uiPoll(t, ctx, "the console has loaded models and budget", `window.assetgenConsole && window.assetgenConsole.ready`, 10*time.Second)
	if n := uiEval[int](t, ctx, `document.querySelectorAll('#model option').length`); n < 1 {
		t.Fatalf("the model select has %d options", n)
	}
	if b := uiEval[string](t, ctx, `document.getElementById('budget').textContent`); !strings.Contains(b, "remaining of $25.00") {
		t.Errorf("budget line %q does not show the daily budget", b)
	}

	// A live run stays disabled until the box says exactly CONFIRM.
	disabled := `document.getElementById('submit').disabled`
	uiDo(t, ctx, "choosing live", chromedp.Click(chromedp.ID("run-live")))
	if !uiEval[bool](t, ctx, disabled) {
		t.Fatal("submit is enabled for a live run without CONFIRM")
	}
	uiDo(t, ctx, "typing CONFIRM", chromedp.SendKeys(chromedp.ID("confirm"), "CONFIRM"))
	if uiEval[bool](t, ctx, disabled) {
		t.Fatal("submit stays disabled after typing CONFIRM")
	}
	uiDo(t, ctx, "typing past CONFIRM", chromedp.SendKeys(chromedp.ID("confirm"), "!"))
	if !uiEval[bool](t, ctx, disabled) {
		t.Fatal("submit is enabled with CONFIRM! in the box")
	}
	uiDo(t, ctx, "choosing dry run", chromedp.Click(chromedp.ID("run-dry")))
	if uiEval[bool](t, ctx, disabled) {
		t.Fatal("submit is disabled for a dry run")
	}

	// An empty prompt: the API's problem document, field by field.
	uiDo(t, ctx, "submitting an empty row", chromedp.Click(chromedp.ID("submit")))
	uiPoll(t, ctx, "the problem document is shown", `document.getElementById('problem').textContent.includes('VALIDATION_FAILED')`, 5*time.Second)
	problem := uiEval[string](t, ctx, `document.getElementById('problem').textContent`)
	for _, want := range []string{"Row 1 · prompt", "REQUIRED"} {
		if !strings.Contains(problem, want) {
			t.Errorf("problem box %q lacks %q", problem, want)
		}
	}
	if !uiEval[bool](t, ctx, `document.querySelector('#rows textarea[data-name=prompt]').getAttribute('aria-invalid') === 'true'`) {
		t.Error("the empty prompt is not marked invalid")
	}
	uiAudit(t, ctx, "the form with a refusal")

	// 3 rows × 2 variants, dry run.
	prompts := []string{"a lighthouse at dawn", "a red bicycle in the rain", "a bowl of ramen, studio light"}
	uiFillRows(t, ctx, prompts, 2)
	if est := uiEval[string](t, ctx, `document.getElementById('estimate').textContent`); !strings.Contains(est, "6 images") {
		t.Fatalf("estimate %q does not count 6 images", est)
	}
	submitted := time.Now()
	uiDo(t, ctx, "submitting", chromedp.Click(chromedp.ID("submit")))
	uiPoll(t, ctx, "the grid has six cells", `document.querySelectorAll('#grid .cell').length === 6`, 10*time.Second)
	if !uiEval[bool](t, ctx, `document.getElementById('problem').hidden`) {
		t.Fatal("the problem box is still shown after a good submit")
	}
	uiPoll(t, ctx, "a first image is done", `document.querySelector('#grid .cell[data-status=done]') !== null`, 20*time.Second)
	firstDone := time.Since(submitted)

	// Drop the stream mid-batch, wait until the server has made images the
	// page has not seen, then resume.
	lastID := uiEval[string](t, ctx, `window.assetgenConsole.closeStream()`)
	if lastID == "" {
		t.Fatal("no event id before the stream was dropped")
	}
	shown := uiEval[int](t, ctx, `document.querySelectorAll('#grid .cell[data-status=done]').length`)
	if shown >= 6 {
		t.Fatalf("all %d images were shown before the stream was dropped; nothing left to resume", shown)
	}
	uiPoll(t, ctx, "the server has made images the page has not seen", fmt.Sprintf(
		`fetch('/batch/' + window.assetgenConsole.batchId, {cache: 'no-store'}).then(r => r.json()).then(b => b.variantCounts.done > %d)`, shown),
		20*time.Second)
	if now := uiEval[int](t, ctx, `document.querySelectorAll('#grid .cell[data-status=done]').length`); now != shown {
		t.Fatalf("the page showed %d images while its stream was closed, %d before", now, shown)
	}
	if !uiEval[bool](t, ctx, `window.assetgenConsole.reopenStream()`) {
		t.Fatal("reopenStream refused")
	}

	uiPoll(t, ctx, "six thumbnails have loaded from signed URLs", uiImagesLoaded(6), 30*time.Second)
	allDone := time.Since(submitted)
	uiPoll(t, ctx, "the summary lists six stable links", `window.assetgenConsole.finished && !document.getElementById('summary').hidden && document.querySelectorAll('#links a').length === 6`, 10*time.Second)

	if !uiEval[bool](t, ctx, uiNoErrors) {
		t.Error("a cell or a box shows an error")
	}
	uiAudit(t, ctx, "a finished batch")
	if alts := uiEval[[]string](t, ctx, `Array.from(document.querySelectorAll('#grid img')).map(i => i.alt)`); len(alts) != 6 || alts[0] != prompts[0]+" — variant 1" {
		t.Errorf("alt texts %q: want prompt and variant", alts)
	}
	if totals := uiEval[string](t, ctx, `document.getElementById('totals').textContent`); !strings.HasPrefix(totals, "Done — 6 of 6 images made") {
		t.Errorf("totals %q", totals)
	}

	// Every row event the page rendered: per row, versions only increase and
	// none repeats; the resumed stream delivered what was missed.
	log := uiEval[[]uiRowEvent](t, ctx, `window.assetgenConsole.rowLog`)
	resumed := uiCheckLog(t, log)[2]
	last := map[int]uiRowEvent{}
	for _, e := range log {
		last[e.Row] = e
	}
	if len(last) != 3 {
		t.Errorf("row events for %d rows, want 3: %+v", len(last), log)
	}
	for r, e := range last {
		if e.Status != "done" {
			t.Errorf("row %d last rendered as %s", r, e.Status)
		}
	}
	if resumed == 0 {
		t.Errorf("the resumed stream delivered no row event: %+v", log)
	}
	if n := uiEval[int](t, ctx, `window.assetgenConsole.connections`); n != 2 {
		t.Errorf("%d stream connections, want 2 (the first and the resumed one)", n)
	}

	// A stable link works without the page.
	link := uiEval[string](t, ctx, `document.querySelector('#links a').href`)
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/png" {
		t.Errorf("stable link %s: %d %s", link, resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	if e := errs.all(); len(e) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(e, "\n"))
	}

	// The screenshot shows the finished batch and My batches with it.
	uiPoll(t, ctx, "My batches shows the batch's images", `Array.from(document.querySelectorAll('#batch-list .thumbs img')).filter(i => i.complete && i.naturalWidth > 0).length === 4`, 10*time.Second)
	// As wide as the page's content, no margins.
	uiDo(t, ctx, "narrowing the window", chromedp.EmulateViewport(1100, 900))
	shot, err := chromedp.Run(ctx, uiClipShot("#batch", "#history"))
	if err != nil {
		t.Fatal(err)
	}
	if len(shot) > 200<<10 {
		t.Errorf("the screenshot takes %d KiB, more than the README's 200", len(shot)>>10)
	}
	// The screenshot is a test artifact; the README's copy in docs/ is
	// refreshed only on request (UPDATE_SCREENSHOT=1), so tests leave the tree clean.
	root := uiRepoRoot(t)
	shots := []string{filepath.Join(root, "artifacts", "console.png")}
	if os.Getenv("UPDATE_SCREENSHOT") == "1" {
		shots = append(shots, filepath.Join(root, "docs", "console.png"))
	}
	for _, p := range shots {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("first image after %s, all six after %s, %d row events (%d on the resumed stream), test %s",
		firstDone.Round(time.Millisecond), allDone.Round(time.Millisecond), len(log), resumed, time.Since(began).Round(time.Millisecond))
}

// When the stream's token has expired the console mints a new one and resumes
// where it was; reloaded on a finished batch, its stream answers 204 and the
// console renders the final state from GET /batch/{id}.
func TestConsoleRenewsExpiredTokenAndReopensFinishedBatch(t *testing.T) {
	exe := uiChromium(t)
	began := time.Now()
	// Rows take longer than tokens live, so a token expires mid-batch.
	s := startStack(t, map[string]string{"DRY_RUN_DELAY": "4s", "PROGRESS_TOKEN_TTL": "2s"})
	ctx := uiBrowser(t, exe, 60*time.Second)
	errs := uiWatch(t, ctx)

	uiDo(t, ctx, "opening the console", chromedp.Navigate(s.base+"/"))
	uiPoll(t, ctx, "the console is ready", `window.assetgenConsole && window.assetgenConsole.ready`, 10*time.Second)
	uiFillRows(t, ctx, []string{"a paper crane", "a tin robot"}, 1)
	submitted := time.Now()
	uiDo(t, ctx, "submitting", chromedp.Click(chromedp.ID("submit")))
	uiPoll(t, ctx, "a row is running", `window.assetgenConsole.rowLog.length > 0`, 10*time.Second)
	t.Logf("running after %s", time.Since(submitted))
	firstURL := uiEval[string](t, ctx, `window.assetgenConsole.progressUrl`)
	id := uiEval[string](t, ctx, `window.assetgenConsole.batchId`)
	uiEval[string](t, ctx, `window.assetgenConsole.closeStream()`)

	// Wait until the token of the stream URL the page holds has expired.
	uiPoll(t, ctx, "the progress token has expired", `Date.now() > Date.parse(window.assetgenConsole.tokenExpiresAt)`, 10*time.Second)
	resp, err := http.Get(firstURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the expired stream URL answers %d, want 401", resp.StatusCode)
	}
	resp, err = http.Get(s.base + "/batch/" + id)
	if err != nil {
		t.Fatal(err)
	}
	var state struct{ Status string }
	_ = json.NewDecoder(resp.Body).Decode(&state)
	resp.Body.Close()
	t.Logf("expired after %s, batch %s", time.Since(submitted), state.Status)
	if state.Status == "done" {
		t.Fatal("the batch finished before its token expired; the test's timing is off")
	}

	// Reopening with the expired URL fails with 401: the console mints a new
	// token and resumes.
	uiEval[bool](t, ctx, `window.assetgenConsole.reopenStream()`)
	uiPoll(t, ctx, "two thumbnails have loaded", uiImagesLoaded(2), 30*time.Second)
	uiPoll(t, ctx, "the batch is finished", `window.assetgenConsole.finished && document.querySelectorAll('#links a').length === 2`, 10*time.Second)
	if got := uiEval[string](t, ctx, `window.assetgenConsole.progressUrl`); got == firstURL || !strings.Contains(got, "token=") {
		t.Errorf("the stream was not reopened with a fresh token: %s", got)
	}
	if n := uiEval[int](t, ctx, `window.assetgenConsole.connections`); n != 3 {
		t.Errorf("%d stream connections, want 3 (first, refused, renewed)", n)
	}
	perConn := uiCheckLog(t, uiEval[[]uiRowEvent](t, ctx, `window.assetgenConsole.rowLog`))
	if perConn[2] != 0 || perConn[3] == 0 {
		t.Errorf("row events per connection %v: want none on the refused one, some on the renewed one", perConn)
	}
	if !uiEval[bool](t, ctx, uiNoErrors) {
		t.Error("a cell or a box shows an error")
	}

	// Reload: the address names the batch, the new stream answers 204, and the
	// final state comes from GET /batch/{id}.
	if loc := uiEval[string](t, ctx, `location.hash`); loc != "#batch="+id {
		t.Fatalf("the address names %q, not the batch", loc)
	}
	uiDo(t, ctx, "reloading", chromedp.Reload())
	uiPoll(t, ctx, "the reloaded console is ready", `window.assetgenConsole && window.assetgenConsole.ready`, 10*time.Second)
	uiPoll(t, ctx, "the finished batch is rendered", `window.assetgenConsole.finished && document.querySelectorAll('#links a').length === 2`, 10*time.Second)
	uiPoll(t, ctx, "two thumbnails have loaded again", uiImagesLoaded(2), 10*time.Second)
	if n := uiEval[int](t, ctx, `window.assetgenConsole.rowLog.length`); n != 0 {
		t.Errorf("%d row events from a finished batch's stream, want none (204)", n)
	}
	if !uiEval[bool](t, ctx, uiNoErrors) {
		t.Error("a cell or a box shows an error after the reload")
	}
	if e := errs.all(); len(e) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(e, "\n"))
	}
	t.Logf("test %s", time.Since(began).Round(time.Millisecond))
}

// uiOpen starts a browser on the console at base and waits until it has
// loaded the models, the budget and the batch list.
func uiOpen(t *testing.T, exe, base string, timeout time.Duration) (context.Context, *uiErrors) {
	t.Helper()
	ctx := uiBrowser(t, exe, timeout)
	errs := uiWatch(t, ctx)
	uiDo(t, ctx, "opening the console", chromedp.Navigate(base+"/"))
	uiPoll(t, ctx, "the console is ready", `window.assetgenConsole && window.assetgenConsole.ready`, 10*time.Second)
	return ctx, errs
}

// uiSetValue replaces a field's value the way typing would (input fires).
func uiSetValue(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`(() => { const e = document.querySelector(%q); e.value = %q; e.dispatchEvent(new Event('input', {bubbles: true})); })()`, sel, value))
}

// uiNoPageErrors fails the test for anything the page logged as an error.
func uiNoPageErrors(t *testing.T, errs *uiErrors) {
	t.Helper()
	if e := errs.all(); len(e) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(e, "\n"))
	}
}

// uiDownload is a file the browser saved.
type uiDownload struct {
	Name string // the name the page suggested
	Path string
}

// uiDownloads saves the page's downloads in a temporary directory and
// reports each one once it is complete.
type uiDownloads struct {
	mu    sync.Mutex
	names map[string]string
	done  chan uiDownload
}

func uiWatchDownloads(t *testing.T, ctx context.Context) *uiDownloads {
	t.Helper()
	dir := t.TempDir()
	d := &uiDownloads{names: map[string]string{}, done: make(chan uiDownload, 16)}
	// One listener sees both kinds of event in order: a download's name
	// arrives before its progress.
	err := chromedp.ListenBrowser(ctx, func(ev any) {
		switch e := ev.(type) {
		case *browser.EventDownloadWillBegin:
			d.mu.Lock()
			d.names[e.GUID] = e.SuggestedFilename
			d.mu.Unlock()
		case *browser.EventDownloadProgress:
			if e.State != browser.DownloadProgressStateCompleted {
				return
			}
			d.mu.Lock()
			name := d.names[e.GUID]
			d.mu.Unlock()
			p := e.FilePath
			if p == "" {
				p = filepath.Join(dir, name)
			}
			d.done <- uiDownload{Name: name, Path: p}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	on := true
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir, EventsEnabled: &on,
	}); err != nil {
		t.Fatal(err)
	}
	return d
}

// next waits for the next completed download.
func (d *uiDownloads) next(t *testing.T, what string, timeout time.Duration) uiDownload {
	t.Helper()
	select {
	case dl := <-d.done:
		return dl
	case <-time.After(timeout):
		t.Fatalf("%s: no download completed within %s", what, timeout)
		return uiDownload{}
	}
}

// uiActive describes the focused element: its id, else its tag and class.
const uiActive = `(() => { const a = document.activeElement; return a ? (a.id ? '#' + a.id : a.tagName.toLowerCase() + '.' + a.className) : ''; })()`

// Each made image opens full size in a dialog that Escape closes, handing the
// focus back; it downloads under the archive's name for it, and its copied
// link is the lasting one (the stable /assets/ link), not the signed URL of
// a few minutes. Download all saves the batch's archive. When the batch
// ended, the focus moved to its summary and the end was announced.
func TestConsoleImageActions(t *testing.T) {
	exe := uiChromium(t)
	uiAxeSource(t)
	s := startStack(t, map[string]string{"DRY_RUN_DELAY": "500ms"})
	ctx, errs := uiOpen(t, exe, s.base, 60*time.Second)
	downloads := uiWatchDownloads(t, ctx)
	// The test reads the clipboard back, as a paste would.
	for _, name := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.CallBrowser(ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: name}, Setting: browser.PermissionSettingGranted, Origin: s.base,
		}); err != nil {
			t.Fatalf("granting %s: %v", name, err)
		}
	}

	uiFillRows(t, ctx, []string{"a lighthouse at dawn", "Crème brûlée, top view"}, 2)
	uiDo(t, ctx, "submitting", chromedp.Click(chromedp.ID("submit")))
	uiPoll(t, ctx, "the focus is on the batch's heading", `window.assetgenConsole.batchId !== '' && document.activeElement === document.getElementById('batch-title')`, 10*time.Second)
	uiPoll(t, ctx, "four thumbnails have loaded", uiImagesLoaded(4), 30*time.Second)
	uiPoll(t, ctx, "the batch is finished", `window.assetgenConsole.finished && !document.getElementById('summary').hidden`, 10*time.Second)
	uiPoll(t, ctx, "the focus is on the summary", `document.activeElement === document.getElementById('summary-title')`, 5*time.Second)
	if a := uiEval[[]string](t, ctx, `window.assetgenConsole.announced`); len(a) == 0 || !strings.HasPrefix(a[len(a)-1], "Batch finished. Done: 4 images made") {
		t.Errorf("announcements %q: want the batch's end last", a)
	}

	// The full-size view.
	uiDo(t, ctx, "opening the second image", chromedp.Click(chromedp.CSS(`#grid .cell[data-row="0"][data-variant="1"] button.view`)))
	uiPoll(t, ctx, "the viewer shows the image", `document.getElementById('viewer').open && document.getElementById('viewer-img').complete && document.getElementById('viewer-img').naturalWidth > 0`, 10*time.Second)
	if title := uiEval[string](t, ctx, `document.getElementById('viewer-title').textContent`); title != "Row 1, variant 2" {
		t.Errorf("viewer title %q", title)
	}
	if !uiEval[bool](t, ctx, `document.getElementById('viewer').contains(document.activeElement)`) {
		t.Errorf("the focus is on %s, outside the open dialog", uiEval[string](t, ctx, uiActive))
	}
	uiPoll(t, ctx, "the viewer shows the lasting link", `document.getElementById('viewer-link').value.includes('/assets/')`, 5*time.Second)
	uiAudit(t, ctx, "the image viewer")
	uiDo(t, ctx, "pressing Escape", chromedp.KeyEvent(kb.Escape))
	uiPoll(t, ctx, "the viewer is closed", `!document.getElementById('viewer').open`, 5*time.Second)
	if !uiEval[bool](t, ctx, `document.activeElement === document.querySelector('#grid .cell[data-row="0"][data-variant="1"] button.view')`) {
		t.Errorf("after Escape the focus is on %s, not on the image that opened the viewer", uiEval[string](t, ctx, uiActive))
	}

	// Copy link: the lasting link, which works without the page.
	uiDo(t, ctx, "copying the first image's link", chromedp.Click(chromedp.CSS(`#grid .cell[data-row="1"][data-variant="0"] button.copy`)))
	uiPoll(t, ctx, "the link is copied", `window.assetgenConsole.lastCopied !== ''`, 5*time.Second)
	copied := uiEval[string](t, ctx, `window.assetgenConsole.lastCopied`)
	id := uiEval[string](t, ctx, `window.assetgenConsole.batchId`)
	if !strings.HasPrefix(copied, s.base+"/assets/"+id+"/1/0?token=") || strings.Contains(copied, "X-Goog-Signature") {
		t.Errorf("copied %q: want the lasting link of row 2, variant 1", copied)
	}
	clip, err := chromedp.Run(ctx, chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise))
	if err != nil || clip != copied {
		t.Errorf("the clipboard holds %q (%v), want %q", clip, err, copied)
	}
	resp, err := http.Get(copied)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/png" {
		t.Errorf("the copied link answers %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	// Download one image, under the name the archive gives it.
	uiDo(t, ctx, "downloading an image", chromedp.Click(chromedp.CSS(`#grid .cell[data-row="1"][data-variant="1"] a.download`)))
	dl := downloads.next(t, "downloading an image", 10*time.Second)
	if dl.Name != "r1-v1-creme-brulee-top-view.png" {
		t.Errorf("the image downloads as %q", dl.Name)
	}
	if b, err := os.ReadFile(dl.Path); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("the downloaded image %s is not a PNG (%v)", dl.Path, err)
	}

	// Download all: the archive, every image and its manifest.
	uiDo(t, ctx, "downloading the archive", chromedp.Click(chromedp.ID("download-all")))
	dl = downloads.next(t, "downloading the archive", 20*time.Second)
	zr, err := zip.OpenReader(dl.Path)
	if err != nil {
		t.Fatalf("the archive %s (%s): %v", dl.Path, dl.Name, err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	zr.Close()
	for _, want := range []string{"manifest.json", "results.csv", "r0-v0-a-lighthouse-at-dawn.png", "r1-v1-creme-brulee-top-view.png"} {
		if !slices.Contains(names, want) {
			t.Errorf("the archive %s holds %q, not %s", dl.Name, names, want)
		}
	}
	uiAudit(t, ctx, "a finished batch with its tools")
	uiNoPageErrors(t, errs)
}

// uiRow is a form row as the page holds it.
type uiRow struct {
	Prompt      string `json:"prompt"`
	Variants    int    `json:"variants"`
	AspectRatio string `json:"aspectRatio"`
	Refs        string `json:"refs"`
}

const uiFormRows = `Array.from(document.querySelectorAll('#rows > li')).map(li => ({
	prompt: li.querySelector('[data-name=prompt]').value,
	variants: Number(li.querySelector('[data-name=variants]').value),
	aspectRatio: li.querySelector('[data-name=aspectRatio]').value,
	refs: li.querySelector('[data-name=refs]').value,
}))`

// uiFieldError is the error text linked to a field (aria-describedby), and
// whether the field is marked invalid.
func uiFieldError(t *testing.T, ctx context.Context, sel string) (string, bool) {
	t.Helper()
	v := uiEval[[]string](t, ctx, fmt.Sprintf(`(() => {
		const f = document.querySelector(%q);
		const text = (f.getAttribute('aria-describedby') || '').split(/\s+/).filter(Boolean)
			.map(id => document.getElementById(id)).filter(e => e && e.classList.contains('field-error'))
			.map(e => e.textContent).join(' | ');
		return [text, String(f.getAttribute('aria-invalid') === 'true')];
	})()`, sel))
	return v[0], v[1] == "true"
}

// The form is a draft that survives a reload; rows pasted as CSV (a header,
// quoted fields with commas and quotes, refs split on spaces or |) are added
// to it (Ctrl+Enter in the CSV box adds them, and submits nothing), and a
// CSV mistake is shown next to the CSV box. The API's field errors are shown
// next to their fields, linked for screen readers, naming the bad reference,
// and each goes away once its field is edited.
func TestConsoleDraftCSVAndFieldErrors(t *testing.T) {
	exe := uiChromium(t)
	uiAxeSource(t)
	s := startStack(t, nil)
	ctx, errs := uiOpen(t, exe, s.base, 60*time.Second)

	uiDo(t, ctx, "filling the first row",
		chromedp.SendKeys(chromedp.CSS(`#rows > li:nth-child(1) textarea[data-name=prompt]`), "a koi pond at night"),
		uiChoose(`#rows > li:nth-child(1) select[data-name=variants]`, "2"),
		uiChoose(`#rows > li:nth-child(1) select[data-name=aspectRatio]`, "3:2"),
		chromedp.SendKeys(chromedp.ID("global-refs"), "https://example.com/style.png"))
	uiDo(t, ctx, "reloading", chromedp.Reload())
	uiPoll(t, ctx, "the reloaded console is ready", `window.assetgenConsole && window.assetgenConsole.ready`, 10*time.Second)
	rows := uiEval[[]uiRow](t, ctx, uiFormRows)
	if want := []uiRow{{Prompt: "a koi pond at night", Variants: 2, AspectRatio: "3:2"}}; !slices.Equal(rows, want) {
		t.Errorf("after a reload the rows are %+v, want %+v", rows, want)
	}
	if refs := uiEval[string](t, ctx, `document.getElementById('global-refs').value`); refs != "https://example.com/style.png" {
		t.Errorf("after a reload the references for every row are %q", refs)
	}

	// A CSV mistake, next to the CSV box.
	uiDo(t, ctx, "opening the CSV box", chromedp.Click(chromedp.CSS(`#csv summary`)))
	uiDo(t, ctx, "pasting a bad CSV", uiSetValue("#csv-text", "prompt,variants\nsix cats,5\n"), chromedp.Click(chromedp.ID("csv-add")))
	if msg, invalid := uiFieldError(t, ctx, "#csv-text"); !invalid || !strings.Contains(msg, "Line 2: variants must be 1, 2 or 3") {
		t.Errorf("the CSV box shows %q (invalid %v)", msg, invalid)
	}
	if n := uiEval[int](t, ctx, `document.querySelectorAll('#rows > li').length`); n != 1 {
		t.Errorf("a bad CSV added rows: %d", n)
	}
	uiAudit(t, ctx, "the form with a CSV mistake")
	csv := "prompt,variants,aspectRatio,refs\n" +
		`"a cat, sitting",2,16:9,https://example.com/a.png|https://example.com/b.png` + "\n" +
		`"the ""best"" dog",1,,https://example.com/c.png https://example.com/d.png` + "\n" +
		"plain fox,3,1:1,\n"
	uiDo(t, ctx, "typing a good CSV", uiSetValue("#csv-text", csv))
	if _, invalid := uiFieldError(t, ctx, "#csv-text"); invalid {
		t.Error("the CSV box stays invalid once edited")
	}
	uiDo(t, ctx, "adding the CSV rows with Ctrl+Enter", chromedp.Focus(chromedp.ID("csv-text")), chromedp.KeyEvent(kb.Enter, chromedp.KeyModifiers(chromedp.ModifierCtrl)))
	if !uiEval[bool](t, ctx, `document.getElementById('batch').hidden && document.getElementById('problem').hidden`) {
		t.Error("Ctrl+Enter in the CSV box submitted the form")
	}
	rows = uiEval[[]uiRow](t, ctx, uiFormRows)
	want := []uiRow{
		{Prompt: "a koi pond at night", Variants: 2, AspectRatio: "3:2"},
		{Prompt: "a cat, sitting", Variants: 2, AspectRatio: "16:9", Refs: "https://example.com/a.png\nhttps://example.com/b.png"},
		{Prompt: `the "best" dog`, Variants: 1, Refs: "https://example.com/c.png\nhttps://example.com/d.png"},
		{Prompt: "plain fox", Variants: 3, AspectRatio: "1:1"},
	}
	if !slices.Equal(rows, want) {
		t.Errorf("after the CSV the rows are\n%+v\nwant\n%+v", rows, want)
	}
	if !uiEval[bool](t, ctx, `document.activeElement === document.querySelector('#rows > li:nth-child(2) textarea[data-name=prompt]')`) {
		t.Errorf("after adding rows the focus is on %s, want the first added prompt", uiEval[string](t, ctx, uiActive))
	}
	if est := uiEval[string](t, ctx, `document.getElementById('estimate').textContent`); !strings.Contains(est, "8 images") {
		t.Errorf("estimate %q does not count 8 images", est)
	}

	// The API refuses: an http reference in row 3 and an empty prompt in row 4.
	uiDo(t, ctx, "breaking rows 3 and 4",
		uiSetValue(`#rows > li:nth-child(3) textarea[data-name=refs]`, "https://example.com/c.png http://example.com/cat.png"),
		uiSetValue(`#rows > li:nth-child(4) textarea[data-name=prompt]`, ""),
		chromedp.Click(chromedp.ID("submit")))
	uiPoll(t, ctx, "the refusal is shown", `!document.getElementById('problem').hidden`, 10*time.Second)
	refsSel := `#rows > li:nth-child(3) textarea[data-name=refs]`
	promptSel := `#rows > li:nth-child(4) textarea[data-name=prompt]`
	if msg, invalid := uiFieldError(t, ctx, refsSel); !invalid || !strings.Contains(msg, "Reference 2 http://example.com/cat.png") || !strings.Contains(msg, "https://") {
		t.Errorf("row 3's references show %q (invalid %v): want the bad URL named", msg, invalid)
	}
	if msg, invalid := uiFieldError(t, ctx, promptSel); !invalid || !strings.Contains(msg, "REQUIRED") {
		t.Errorf("row 4's prompt shows %q (invalid %v)", msg, invalid)
	}
	if msg, invalid := uiFieldError(t, ctx, `#rows > li:nth-child(1) textarea[data-name=prompt]`); invalid || msg != "" {
		t.Errorf("row 1's good prompt shows %q (invalid %v)", msg, invalid)
	}
	if n := uiEval[int](t, ctx, `document.querySelectorAll('#problem a.field-name').length`); n < 2 {
		t.Errorf("the box at the top links %d fields, want both", n)
	}
	uiAudit(t, ctx, "the form with field errors")

	// Fixing a field clears its error only.
	uiDo(t, ctx, "fixing row 3's reference", uiSetValue(refsSel, "https://example.com/c.png"))
	if msg, invalid := uiFieldError(t, ctx, refsSel); invalid || msg != "" {
		t.Errorf("row 3's fixed references still show %q (invalid %v)", msg, invalid)
	}
	if n := uiEval[int](t, ctx, `document.querySelectorAll('.field-error[id$="-refs-error"]').length`); n != 0 {
		t.Errorf("%d reference errors left in the page", n)
	}
	if _, invalid := uiFieldError(t, ctx, promptSel); !invalid {
		t.Error("row 4's prompt error went away with row 3's fix")
	}
	uiDo(t, ctx, "fixing row 4's prompt", chromedp.SendKeys(chromedp.CSS(promptSel), "a fox"))
	if _, invalid := uiFieldError(t, ctx, promptSel); invalid {
		t.Error("row 4's prompt stays invalid once typed in")
	}
	uiNoPageErrors(t, errs)
}

// uiDrop drops a file of the given type on the element sel, as a drag from
// the desktop does.
func uiDrop(sel, name, mime string, content []byte) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
		const bytes = Uint8Array.from(atob(%q), c => c.charCodeAt(0));
		const dt = new DataTransfer();
		dt.items.add(new File([bytes], %q, {type: %q}));
		const zone = document.querySelector(%q);
		for (const type of ['dragenter', 'dragover', 'drop']) {
			zone.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: dt}));
		}
	})()`, base64.StdEncoding.EncodeToString(content), name, mime, sel))
}

// Reference images are uploaded from the file picker or dropped on a
// references field (POST /uploads, then a PUT to the signed URL), and their
// gs:// references go where they were added; a file that is not an image is
// refused next to the field. Ctrl+Enter submits. Run again refills a cleared
// form with the batch as it was submitted: prompts, variants, aspect ratios
// and references.
func TestConsoleUploadsShortcutAndRunAgain(t *testing.T) {
	exe := uiChromium(t)
	uiAxeSource(t)
	a := startAppWith(t, map[string]string{"DRY_RUN_DELAY": "100ms"}, options{})
	ctx, errs := uiOpen(t, exe, a.base, 60*time.Second)
	uploads := "gs://" + a.cfg.Bucket + "/uploads/"

	picked := filepath.Join(t.TempDir(), "teapot.png")
	if err := os.WriteFile(picked, pngOf(t, 90), 0o600); err != nil {
		t.Fatal(err)
	}
	row1 := `#rows > li:nth-child(1) `
	uiDo(t, ctx, "filling row 1 and picking its reference",
		chromedp.SendKeys(chromedp.CSS(row1+`textarea[data-name=prompt]`), "a teapot"),
		uiChoose(row1+`select[data-name=aspectRatio]`, "16:9"),
		chromedp.SetUploadFiles(chromedp.CSS(row1+`input.file`), []string{picked}))
	uiPoll(t, ctx, "row 1 holds the uploaded reference", fmt.Sprintf(`document.querySelector(%q).value.startsWith(%q)`, row1+`textarea[data-name=refs]`, uploads), 15*time.Second)
	if st := uiEval[string](t, ctx, `document.querySelector('#rows > li:nth-child(1) .upload-status').textContent`); !strings.HasPrefix(st, "Uploaded teapot.png") {
		t.Errorf("row 1's upload status %q", st)
	}
	uiDo(t, ctx, "dropping a reference for every row", uiDrop(`[data-drop="global-refs"]`, "style.png", "image/png", pngOf(t, 200)))
	uiPoll(t, ctx, "the dropped reference is listed", fmt.Sprintf(`document.getElementById('global-refs').value.startsWith(%q)`, uploads), 15*time.Second)
	uiDo(t, ctx, "dropping a text file", uiDrop(`[data-drop="global-refs"]`, "notes.txt", "text/plain", []byte("not an image")))
	if msg, invalid := uiFieldError(t, ctx, "#global-refs"); !invalid || !strings.Contains(msg, "notes.txt is not a PNG, JPEG or WebP image") {
		t.Errorf("the references field shows %q (invalid %v) for a text file", msg, invalid)
	}
	uiAudit(t, ctx, "the form with uploads")
	rowRef := uiEval[string](t, ctx, `document.querySelector('#rows > li:nth-child(1) textarea[data-name=refs]').value`)
	globalRef := uiEval[string](t, ctx, `document.getElementById('global-refs').value`)

	uiDo(t, ctx, "adding row 2", chromedp.Click(chromedp.ID("add-row")),
		chromedp.SendKeys(chromedp.CSS(`#rows > li:nth-child(2) textarea[data-name=prompt]`), "a kettle"),
		uiChoose(`#rows > li:nth-child(2) select[data-name=variants]`, "2"))
	uiDo(t, ctx, "pressing Ctrl+Enter in row 2's prompt", chromedp.KeyEvent(kb.Enter, chromedp.KeyModifiers(chromedp.ModifierCtrl)))
	uiPoll(t, ctx, "the batch is submitted", `window.assetgenConsole.batchId !== ''`, 10*time.Second)
	id := uiEval[string](t, ctx, `window.assetgenConsole.batchId`)
	uiPoll(t, ctx, "three thumbnails have loaded", uiImagesLoaded(3), 30*time.Second)
	uiPoll(t, ctx, "the batch is finished", `window.assetgenConsole.finished`, 10*time.Second)

	m, err := a.platform.Ledger.Manifest(deadline(t, 10*time.Second), id)
	if err != nil {
		t.Fatal(err)
	}
	refURLs := func(i int) []string {
		var out []string
		for _, r := range m.Rows[i].Refs {
			out = append(out, r.URL)
		}
		return out
	}
	if got := refURLs(0); !slices.Equal(got, []string{rowRef, globalRef}) || m.Rows[0].AspectRatio != "16:9" {
		t.Errorf("row 1 recorded refs %q and aspect ratio %q: want its own %q, then %q, and 16:9", got, m.Rows[0].AspectRatio, rowRef, globalRef)
	}
	if got := refURLs(1); !slices.Equal(got, []string{globalRef}) || m.Rows[1].Variants != 2 {
		t.Errorf("row 2 recorded refs %q and %d variants", got, m.Rows[1].Variants)
	}

	// Run again: the cleared form holds the batch again.
	uiDo(t, ctx, "clearing the form", chromedp.Click(chromedp.ID("clear-form")))
	if rows := uiEval[[]uiRow](t, ctx, uiFormRows); !slices.Equal(rows, []uiRow{{Variants: 1}}) {
		t.Fatalf("the cleared form holds %+v", rows)
	}
	uiDo(t, ctx, "running the batch again", chromedp.Click(chromedp.ID("run-again")))
	uiPoll(t, ctx, "the focus is on the form", `document.activeElement === document.getElementById('new-batch-title')`, 5*time.Second)
	want := []uiRow{{Prompt: "a teapot", Variants: 1, AspectRatio: "16:9", Refs: rowRef}, {Prompt: "a kettle", Variants: 2}}
	if rows := uiEval[[]uiRow](t, ctx, uiFormRows); !slices.Equal(rows, want) {
		t.Errorf("run again filled the form with\n%+v\nwant\n%+v", rows, want)
	}
	if refs := uiEval[string](t, ctx, `document.getElementById('global-refs').value`); refs != globalRef {
		t.Errorf("run again filled the references for every row with %q", refs)
	}
	if a := uiEval[[]string](t, ctx, `window.assetgenConsole.announced`); !strings.HasPrefix(a[len(a)-1], "The form holds batch "+id+" again: 2 rows.") {
		t.Errorf("last announcement %q", a[len(a)-1])
	}
	uiNoPageErrors(t, errs)
}

// uiMoney formats dollars as the console does: 2 or 3 decimals.
func uiMoney(x float64) string {
	s := strconv.FormatFloat(x, 'f', 3, 64)
	return "$" + strings.TrimSuffix(s, "0")
}

// uiCancellation is the cancel answer's account, as the page keeps it.
type uiCancellation struct {
	Kept              int     `json:"kept"`
	ChargedUSD        float64 `json:"chargedUsd"`
	MayStillMake      int     `json:"mayStillMake"`
	MayStillChargeUSD float64 `json:"mayStillChargeUsd"`
	ReleasedUSD       float64 `json:"releasedUsd"`
	Finished          bool    `json:"finished"`
}

// uiLiveBatch submits a live batch of one variant per prompt through the
// form, confirmed, and waits until its first image is made.
func uiLiveBatch(t *testing.T, ctx context.Context, prompts []string) {
	t.Helper()
	uiFillRows(t, ctx, prompts, 1)
	uiDo(t, ctx, "choosing a confirmed live run", chromedp.Click(chromedp.ID("run-live")), chromedp.SendKeys(chromedp.ID("confirm"), "CONFIRM"))
	uiDo(t, ctx, "submitting", chromedp.Click(chromedp.ID("submit")))
	uiPoll(t, ctx, "the batch is submitted", `window.assetgenConsole.batchId !== ''`, 10*time.Second)
}

// uiCancelBatch cancels the watched batch through the confirmation dialog
// and returns what the cancel answer said it left.
func uiCancelBatch(t *testing.T, ctx context.Context) uiCancellation {
	t.Helper()
	uiDo(t, ctx, "asking to cancel", chromedp.Click(chromedp.ID("cancel")))
	uiPoll(t, ctx, "the confirmation is open", `document.getElementById('cancel-dialog').open`, 5*time.Second)
	uiDo(t, ctx, "confirming the cancel", chromedp.Click(chromedp.ID("cancel-confirm")))
	uiPoll(t, ctx, "the cancel's account is shown", `!document.getElementById('cancel-result').hidden`, 10*time.Second)
	return uiEval[uiCancellation](t, ctx, `window.assetgenConsole.cancellation`)
}

// A live batch whose stream is open but whose rows do not move says so after
// the threshold (shortened here), and no more once the threshold is longer
// than the wait. Before a cancel, the page says what it keeps and charges:
// made images are kept and charged, running variants finish; Escape leaves
// the batch running. After it, the page says what the cancel answer counted:
// kept, may still be made, released.
func TestConsoleStallNoticeAndCancelWording(t *testing.T) {
	exe := uiChromium(t)
	uiAxeSource(t)
	// The fake model takes 2s an image, one row at a time: 2s without news.
	s := startStack(t, map[string]string{"LOCAL_FAKE_MODEL": "true", "LOCAL_FAKE_MODEL_DELAY": "2s", "LOCAL_TASKS_MAX_CONCURRENT": "1"})
	ctx, errs := uiOpen(t, exe, s.base, 90*time.Second)
	uiEval[int](t, ctx, `window.assetgenConsole.stallAfterMs = 800`)

	// Five rows: however slow the steps below, some are still queued when
	// the cancel comes.
	uiLiveBatch(t, ctx, []string{"a copper kettle", "a glass teapot", "a tin cup", "a clay jug", "a wooden bowl"})
	uiPoll(t, ctx, "the page says no row has moved", `!document.getElementById('stall').hidden`, 10*time.Second)
	stall := uiEval[string](t, ctx, `document.getElementById('stall').textContent`)
	if !regexp.MustCompile(`^No progress for \d+ s: the stream is connected`).MatchString(stall) {
		t.Errorf("stall notice %q", stall)
	}
	if a := uiEval[[]string](t, ctx, `window.assetgenConsole.announced`); !slices.ContainsFunc(a, func(s string) bool { return strings.HasPrefix(s, "No progress for ") }) {
		t.Errorf("the stall was not announced: %q", a)
	}
	uiAudit(t, ctx, "a running batch with the stall notice")
	uiEval[int](t, ctx, `window.assetgenConsole.stallAfterMs = 60000`)
	uiPoll(t, ctx, "the notice goes under a longer threshold", `document.getElementById('stall').hidden`, 5*time.Second)

	uiPoll(t, ctx, "a first image is made", `document.querySelectorAll('#grid .cell[data-status=done]').length >= 1`, 20*time.Second)
	uiDo(t, ctx, "asking to cancel", chromedp.Click(chromedp.ID("cancel")))
	uiPoll(t, ctx, "the confirmation is open", `document.getElementById('cancel-dialog').open`, 5*time.Second)
	before := uiEval[string](t, ctx, `document.getElementById('cancel-dialog-text').textContent`)
	for _, want := range []string{"so far) are kept and charged", "being generated right now", "finish and are kept, and charged too", "Rows not started yet are cancelled and not charged"} {
		if !strings.Contains(before, want) {
			t.Errorf("the confirmation %q does not say %q", before, want)
		}
	}
	if got := uiEval[string](t, ctx, uiActive); got != "#cancel-keep" {
		t.Errorf("the confirmation opens with the focus on %s, want Keep running", got)
	}
	uiAudit(t, ctx, "the cancel confirmation")
	uiDo(t, ctx, "pressing Escape", chromedp.KeyEvent(kb.Escape))
	uiPoll(t, ctx, "the confirmation is closed", `!document.getElementById('cancel-dialog').open`, 5*time.Second)
	if got := uiEval[string](t, ctx, uiActive); got != "#cancel" {
		t.Errorf("after Escape the focus is on %s, want the cancel button", got)
	}
	if uiEval[bool](t, ctx, `window.assetgenConsole.cancellation !== null || document.getElementById('cancel').disabled`) {
		t.Fatal("Escape cancelled the batch")
	}

	cn := uiCancelBatch(t, ctx)
	after := uiEval[string](t, ctx, `document.getElementById('cancel-result').textContent`)
	if cn.Kept < 1 {
		t.Errorf("the cancel kept %d images; one was made before it", cn.Kept)
	}
	wants := []string{"Cancelled. ", fmt.Sprintf("%d image", cn.Kept), "kept and charged (" + uiMoney(cn.ChargedUSD) + ")", uiMoney(cn.ReleasedUSD) + " of the reservation is released"}
	if cn.MayStillMake > 0 {
		wants = append(wants, fmt.Sprintf("Up to %d more image", cn.MayStillMake), "charged up to "+uiMoney(cn.MayStillChargeUSD))
	} else {
		wants = append(wants, "Nothing more will be made.")
	}
	for _, want := range wants {
		if !strings.Contains(after, want) {
			t.Errorf("after the cancel the page says %q, not %q (answer %+v)", after, want, cn)
		}
	}
	// The focus is on the cancel's account, or on the summary when the
	// batch ended with the cancel.
	if got := uiEval[string](t, ctx, uiActive); got != "#cancel-result" && got != "#summary-title" {
		t.Errorf("after the cancel the focus is on %s, want its account", got)
	}
	uiPoll(t, ctx, "the batch ends cancelled", `window.assetgenConsole.finished && document.getElementById('totals').dataset.status === 'cancelled'`, 20*time.Second)
	uiPoll(t, ctx, "the focus is on the summary", `document.activeElement === document.getElementById('summary-title')`, 5*time.Second)
	if r := uiEval[string](t, ctx, `document.getElementById('retry').hidden ? '' : document.getElementById('retry').textContent`); !regexp.MustCompile(`^Retry \d+ failed images?$`).MatchString(r) {
		t.Errorf("retry button %q after a cancel; totals %q, summary %q", r, uiEval[string](t, ctx, `document.getElementById('totals').textContent`), uiEval[string](t, ctx, `document.getElementById('summary-text').textContent`))
	}
	uiAudit(t, ctx, "a cancelled batch")
	uiNoPageErrors(t, errs)
}

// Retry failed re-runs a finished batch's cancelled variants under the same
// batch id after the typed confirmation a live run needs; the images made
// before keep their lasting links, and every image ends made.
func TestConsoleRetryFailed(t *testing.T) {
	exe := uiChromium(t)
	uiAxeSource(t)
	s := startStack(t, map[string]string{"LOCAL_FAKE_MODEL": "true", "LOCAL_FAKE_MODEL_DELAY": "1s", "LOCAL_TASKS_MAX_CONCURRENT": "1"})
	ctx, errs := uiOpen(t, exe, s.base, 90*time.Second)

	prompts := []string{"a red kite", "a blue kite", "a green kite", "a white kite"}
	uiLiveBatch(t, ctx, prompts)
	id := uiEval[string](t, ctx, `window.assetgenConsole.batchId`)
	uiPoll(t, ctx, "a first image is made", `document.querySelectorAll('#grid .cell[data-status=done]').length >= 1`, 20*time.Second)
	uiCancelBatch(t, ctx)
	uiPoll(t, ctx, "the batch ends cancelled", `window.assetgenConsole.finished && !document.getElementById('retry').hidden`, 20*time.Second)
	before := uiEval[map[string]string](t, ctx, `Object.fromEntries(Array.from(document.querySelectorAll('#links a')).map(a => [a.textContent, new URL(a.href).pathname]))`)
	made := len(before)
	if made < 1 || made >= len(prompts) {
		t.Fatalf("%d images made before the cancel finished, want from 1 to %d", made, len(prompts)-1)
	}

	uiDo(t, ctx, "asking to retry", chromedp.Click(chromedp.ID("retry")))
	uiPoll(t, ctx, "the retry confirmation is open", `document.getElementById('retry-dialog').open`, 5*time.Second)
	if !uiEval[bool](t, ctx, `document.getElementById('retry-go').disabled`) {
		t.Error("a live retry is enabled before CONFIRM is typed")
	}
	text := uiEval[string](t, ctx, `document.getElementById('retry-dialog-text').textContent`)
	if !strings.Contains(text, fmt.Sprintf("re-runs %d failed or cancelled image", len(prompts)-made)) || !strings.Contains(text, "charged to your daily budget") {
		t.Errorf("the retry confirmation says %q", text)
	}
	uiAudit(t, ctx, "the retry confirmation")
	uiDo(t, ctx, "typing CONFIRM", chromedp.SendKeys(chromedp.ID("retry-confirm"), "CONFIRM"))
	uiDo(t, ctx, "retrying", chromedp.Click(chromedp.ID("retry-go")))
	uiPoll(t, ctx, "the retry runs or is refused", `!window.assetgenConsole.finished || document.querySelector('#batch .problem:not([hidden])') !== null`, 20*time.Second)
	if p := uiEval[string](t, ctx, `(document.querySelector('#batch .problem:not([hidden])') || {}).textContent || ''`); p != "" {
		t.Fatalf("the retry was refused: %s", p)
	}
	if got := uiEval[string](t, ctx, `window.assetgenConsole.batchId`); got != id {
		t.Errorf("the retry watches batch %s, want the same batch %s", got, id)
	}
	uiPoll(t, ctx, "four thumbnails have loaded", uiImagesLoaded(4), 30*time.Second)
	uiPoll(t, ctx, "the retried batch is done", `window.assetgenConsole.finished && document.querySelectorAll('#links a').length === 4`, 20*time.Second)
	// A row that was generating when the cancel came stays cancelled with
	// its image made: nothing of it is retried.
	if totals := uiEval[string](t, ctx, `document.getElementById('totals').textContent`); !regexp.MustCompile(`^(Done|Cancelled) — 4 of 4 images made`).MatchString(totals) {
		t.Errorf("totals after the retry %q", totals)
	}
	after := uiEval[map[string]string](t, ctx, `Object.fromEntries(Array.from(document.querySelectorAll('#links a')).map(a => [a.textContent, new URL(a.href).pathname]))`)
	for label, path := range before {
		if after[label] != path {
			t.Errorf("%s: link %s before the retry, %s after", label, path, after[label])
		}
	}
	if !uiEval[bool](t, ctx, `document.getElementById('retry').hidden`) {
		t.Error("Retry failed is offered for a batch with nothing to retry")
	}
	resp, err := http.Get(s.base + "/batch/" + id + "/history")
	if err != nil {
		t.Fatal(err)
	}
	var hist struct {
		Snapshots []struct{ Event string } `json:"snapshots"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&hist)
	resp.Body.Close()
	if !slices.ContainsFunc(hist.Snapshots, func(s struct{ Event string }) bool { return s.Event == "retried" }) {
		t.Errorf("the history's snapshots %+v do not list the retry", hist.Snapshots)
	}
	uiNoPageErrors(t, errs)
}

// uiListItem is one entry of My batches as the page shows it.
type uiListItem struct {
	ID     string `json:"id"`
	Title  string `json:"title"`
	Status string `json:"status"`
	Counts string `json:"counts"`
	Cost   string `json:"cost"`
	Thumbs int    `json:"thumbs"`
	Loaded int    `json:"loaded"`
}

const uiList = `Array.from(document.querySelectorAll('#batch-list > li')).map(li => ({
	id: li.dataset.batch,
	title: li.querySelector('h3 a').textContent,
	status: li.querySelector('.badge').textContent,
	counts: li.querySelector('.counts').textContent,
	cost: li.querySelector('.cost').textContent,
	thumbs: li.querySelectorAll('.thumbs img').length,
	loaded: Array.from(li.querySelectorAll('.thumbs img')).filter(i => i.complete && i.naturalWidth > 0).length,
}))`

// My batches lists the user's batches newest first, with status, images made,
// cost and thumbnails, a page at a time (the page size is shortened here):
// Show older batches follows nextCursor and moves the focus to the first
// batch it added. Opening a batch shows it; Run again on a batch submitted
// elsewhere refills the form with its prompts and variants.
func TestConsoleMyBatches(t *testing.T) {
	exe := uiChromium(t)
	uiAxeSource(t)
	s := startStack(t, nil)
	var ids []string
	for _, body := range []string{
		`{"runMode":"dry_run","rows":[{"prompt":"an old map","variants":2}]}`,
		`{"runMode":"dry_run","rows":[{"prompt":"a paper boat","variants":1},{"prompt":"a paper plane","variants":2}]}`,
		`{"runMode":"dry_run","rows":[{"prompt":"a brass compass","variants":3}]}`,
	} {
		sub := s.submit(t, body)
		readToDone(t, openStream(t, sub.ProgressURL, ""))
		ids = append(ids, sub.BatchID)
	}

	ctx, errs := uiOpen(t, exe, s.base, 60*time.Second)
	uiEval[int](t, ctx, `window.assetgenConsole.listPageSize = 2`)
	uiDo(t, ctx, "refreshing the list", chromedp.Click(chromedp.ID("list-refresh")))
	uiPoll(t, ctx, "the first page's thumbnails have loaded", `(() => {
		const items = document.querySelectorAll('#batch-list > li');
		return items.length === 2 && Array.from(items).every(li => {
			const imgs = li.querySelectorAll('.thumbs img');
			return imgs.length > 0 && Array.from(imgs).every(i => i.complete && i.naturalWidth > 0);
		});
	})()`, 15*time.Second)
	got := uiEval[[]uiListItem](t, ctx, uiList)
	want := []uiListItem{
		{ID: ids[2], Title: "a brass compass", Status: "done", Counts: "3 of 3 images made", Cost: "Cost $0.00 (dry run)", Thumbs: 3, Loaded: 3},
		{ID: ids[1], Title: "a paper boat (+1 row)", Status: "done", Counts: "3 of 3 images made", Cost: "Cost $0.00 (dry run)", Thumbs: 3, Loaded: 3},
	}
	if !slices.Equal(got, want) {
		t.Errorf("the first page lists\n%+v\nwant\n%+v", got, want)
	}
	if uiEval[bool](t, ctx, `document.getElementById('list-more').hidden`) {
		t.Fatal("no way to the older batches")
	}
	uiAudit(t, ctx, "My batches")

	uiDo(t, ctx, "showing older batches", chromedp.Click(chromedp.ID("list-more")))
	uiPoll(t, ctx, "the second page is listed", `document.querySelectorAll('#batch-list > li').length === 3 && document.getElementById('list-more').hidden`, 10*time.Second)
	if !uiEval[bool](t, ctx, `document.activeElement === document.querySelector('#batch-list > li:nth-child(3) h3 a')`) {
		t.Errorf("after Show older batches the focus is on %s, want the first batch added", uiEval[string](t, ctx, uiActive))
	}
	if st := uiEval[string](t, ctx, `document.getElementById('list-state').textContent`); st != "Showing 3 batches, newest first." {
		t.Errorf("list state %q", st)
	}
	uiPoll(t, ctx, "the oldest batch is named by its prompt", `document.querySelector('#batch-list > li:nth-child(3) h3 a').textContent === 'an old map'`, 10*time.Second)

	uiDo(t, ctx, "opening the middle batch", chromedp.Click(chromedp.CSS(`#batch-list > li:nth-child(2) h3 a`)))
	uiPoll(t, ctx, "the batch is shown", fmt.Sprintf(`window.assetgenConsole.batchId === %q && window.assetgenConsole.finished`, ids[1]), 10*time.Second)
	uiPoll(t, ctx, "its three images have loaded", uiImagesLoaded(3), 10*time.Second)
	if h := uiEval[string](t, ctx, `location.hash`); h != "#batch="+ids[1] {
		t.Errorf("the address names %q", h)
	}
	if n := uiEval[int](t, ctx, `document.querySelectorAll('#grid > li').length`); n != 2 {
		t.Errorf("the batch shows %d rows, want 2", n)
	}

	uiDo(t, ctx, "running the oldest batch again", chromedp.Click(chromedp.CSS(`#batch-list > li:nth-child(3) .item-actions button`)))
	uiPoll(t, ctx, "the form holds the batch", `document.querySelector('#rows textarea[data-name=prompt]').value === 'an old map'`, 10*time.Second)
	if rows := uiEval[[]uiRow](t, ctx, uiFormRows); !slices.Equal(rows, []uiRow{{Prompt: "an old map", Variants: 2}}) {
		t.Errorf("run again filled the form with %+v", rows)
	}
	if a := uiEval[[]string](t, ctx, `window.assetgenConsole.announced`); !strings.Contains(a[len(a)-1], "not submitted from this browser") {
		t.Errorf("last announcement %q does not say what is missing", a[len(a)-1])
	}
	uiNoPageErrors(t, errs)
}

// uiNoSideways is true while the page is no wider than the viewport.
const uiNoSideways = `document.documentElement.scrollWidth <= window.innerWidth && document.body.scrollWidth <= window.innerWidth`

// uiWholeImages is true once n images of the grid have loaded and each is
// shown whole: inside the viewport, at its own proportions, not cropped.
func uiWholeImages(n int) string {
	return fmt.Sprintf(`(() => {
		const vw = window.innerWidth;
		const imgs = Array.from(document.querySelectorAll('#grid img'));
		return imgs.length === %d && imgs.every(i => {
			if (!i.complete || i.naturalWidth === 0) return false;
			const r = i.getBoundingClientRect();
			const fit = getComputedStyle(i).objectFit;
			return r.left >= 0 && r.right <= vw && r.width > 0 &&
				Math.abs(r.width / r.height - i.naturalWidth / i.naturalHeight) < 0.02 &&
				(fit === 'fill' || fit === 'contain' || fit === 'none');
		});
	})()`, n)
}

// On a 390 px wide phone the console never scrolls sideways — the form, a
// batch with wide and tall images, the image viewer, My batches — and the
// grid shows every image whole.
func TestConsolePhoneViewport(t *testing.T) {
	exe := uiChromium(t)
	uiAxeSource(t)
	s := startStack(t, nil)
	ctx := uiBrowser(t, exe, 60*time.Second)
	errs := uiWatch(t, ctx)
	uiDo(t, ctx, "emulating a 390 px phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	uiDo(t, ctx, "opening the console", chromedp.Navigate(s.base+"/"))
	uiPoll(t, ctx, "the console is ready", `window.assetgenConsole && window.assetgenConsole.ready`, 10*time.Second)
	if w := uiEval[int](t, ctx, `window.innerWidth`); w != 390 {
		t.Fatalf("the viewport is %d px wide, want 390", w)
	}
	if !uiEval[bool](t, ctx, uiNoSideways) {
		t.Errorf("the form is %d px wide on a 390 px phone", uiEval[int](t, ctx, `document.documentElement.scrollWidth`))
	}
	uiDo(t, ctx, "opening the CSV box", chromedp.Click(chromedp.CSS(`#csv summary`)))
	uiFillRows(t, ctx, []string{"a very long prompt about a panoramic mountain range at sunrise with mist in every valley", "a tall lighthouse"}, 3)
	uiDo(t, ctx, "choosing aspect ratios",
		uiChoose(`#rows > li:nth-child(1) select[data-name=aspectRatio]`, "21:9"),
		uiChoose(`#rows > li:nth-child(2) select[data-name=aspectRatio]`, "9:16"),
		uiSetValue(`#rows > li:nth-child(2) textarea[data-name=refs]`, "https://example.com/a-very-long-reference-image-url-that-does-not-wrap-by-itself.png"))
	uiDo(t, ctx, "submitting with an http reference", uiSetValue("#global-refs", "http://example.com/a-long-path/with/no/spaces/in/it/anywhere.png"), chromedp.Click(chromedp.ID("submit")))
	uiPoll(t, ctx, "the refusal is shown", `!document.getElementById('problem').hidden`, 10*time.Second)
	if !uiEval[bool](t, ctx, uiNoSideways) {
		t.Errorf("the form with its errors is %d px wide on a 390 px phone", uiEval[int](t, ctx, `document.documentElement.scrollWidth`))
	}
	uiAudit(t, ctx, "the form on a phone")

	uiDo(t, ctx, "fixing the references and submitting", uiSetValue("#global-refs", ""),
		uiSetValue(`#rows > li:nth-child(2) textarea[data-name=refs]`, ""), chromedp.Click(chromedp.ID("submit")))
	uiPoll(t, ctx, "six whole images are shown", uiWholeImages(6), 30*time.Second)
	uiPoll(t, ctx, "the batch is finished", `window.assetgenConsole.finished && !document.getElementById('summary').hidden`, 10*time.Second)
	ratios := uiEval[[]float64](t, ctx, `Array.from(document.querySelectorAll('#grid img')).map(i => i.naturalWidth / i.naturalHeight)`)
	if ratios[0] < 2 || ratios[5] > 0.6 {
		t.Errorf("image proportions %v: want wide images in row 1 and tall ones in row 2", ratios)
	}
	if !uiEval[bool](t, ctx, uiNoSideways) {
		t.Errorf("the batch is %d px wide on a 390 px phone", uiEval[int](t, ctx, `document.documentElement.scrollWidth`))
	}
	uiAudit(t, ctx, "a finished batch on a phone")

	uiArtifact(t, ctx, "console-phone.png")

	uiDo(t, ctx, "opening an image", chromedp.Click(chromedp.CSS(`#grid .cell[data-row="0"][data-variant="0"] button.view`)))
	uiPoll(t, ctx, "the viewer shows the image", `document.getElementById('viewer').open && document.getElementById('viewer-img').naturalWidth > 0`, 10*time.Second)
	if !uiEval[bool](t, ctx, `(() => { const r = document.getElementById('viewer').getBoundingClientRect(); const i = document.getElementById('viewer-img').getBoundingClientRect(); return r.left >= 0 && r.right <= innerWidth && i.left >= r.left && i.right <= r.right; })()`) {
		t.Error("the viewer or its image is wider than the phone")
	}
	if !uiEval[bool](t, ctx, uiNoSideways) {
		t.Errorf("with the viewer open the page is %d px wide", uiEval[int](t, ctx, `document.documentElement.scrollWidth`))
	}
	uiDo(t, ctx, "closing the viewer", chromedp.KeyEvent(kb.Escape))
	uiPoll(t, ctx, "My batches lists the batch", `document.querySelectorAll('#batch-list .thumbs img').length > 0`, 10*time.Second)
	if !uiEval[bool](t, ctx, uiNoSideways) {
		t.Errorf("My batches is %d px wide on a 390 px phone", uiEval[int](t, ctx, `document.documentElement.scrollWidth`))
	}
	uiNoPageErrors(t, errs)
}

// uiArtifact saves a screenshot of the whole page under artifacts/ (ignored
// by git), for a person to look at.
func uiArtifact(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(uiRepoRoot(t), "artifacts", name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, shot, 0o644); err != nil {
		t.Fatal(err)
	}
}

// uiClipShot takes a PNG screenshot of the page from the top of the element
// first to the bottom of the element last, the page's full width.
func uiClipShot(first, last string) chromedp.Action[[]byte] {
	return func(ctx context.Context, t *chromedp.Target) ([]byte, error) {
		box, err := chromedp.Evaluate[[]float64](fmt.Sprintf(`(() => {
			const a = document.querySelector(%q).getBoundingClientRect(), b = document.querySelector(%q).getBoundingClientRect();
			return [a.top + scrollY - 12, b.bottom - a.top + 24, document.documentElement.clientWidth];
		})()`, first, last))(ctx, t)
		if err != nil {
			return nil, err
		}
		r, err := cdp.Call(ctx, t, page.CaptureScreenshot, page.CaptureScreenshotParams{
			Format: page.CaptureScreenshotFormatPng, CaptureBeyondViewport: &[]bool{true}[0],
			Clip: &page.Viewport{X: 0, Y: max(0, box[0]), Width: box[2], Height: box[1], Scale: 0.8},
		})
		if err != nil {
			return nil, err
		}
		return r.Data, nil
	}
}

// The form follows the selected model: its image sizes (with their prices),
// its output formats and whether it takes a seed; a batch submitted with
// them is made at that size, in that format, with that seed.
func TestConsoleFormFollowsTheModel(t *testing.T) {
	exe := uiChromium(t)
	uiAxeSource(t)
	s := startStack(t, nil)
	ctx, errs := uiOpen(t, exe, s.base, 60*time.Second)

	options := func(id string) []string {
		return uiEval[[]string](t, ctx, `Array.from(document.getElementById('`+id+`').options).map((o) => o.value)`)
	}
	uiDo(t, ctx, "choosing Imagen 4", uiChoose("#model", "imagen-4.0-generate-001"))
	if got := options("image-size"); !slices.Equal(got, []string{"", "2K"}) {
		t.Errorf("Imagen 4's sizes are %q, want the default (1K) and 2K", got)
	}
	if got := options("output-format"); !slices.Contains(got, "jpeg") {
		t.Errorf("Imagen 4's formats are %q, want jpeg among them", got)
	}
	if uiEval[bool](t, ctx, `document.querySelector('#rows > li:nth-child(1) .field.seed').hidden`) {
		t.Error("Imagen 4 takes a seed, but the row's seed field is hidden")
	}
	uiDo(t, ctx, "choosing 2K", uiChoose("#image-size", "2K"))
	if hint := uiEval[string](t, ctx, `document.getElementById('image-size-hint').textContent`); !strings.Contains(hint, "2K") {
		t.Errorf("the size hint says %q, want the 2K price", hint)
	}
	uiAudit(t, ctx, "the form for Imagen 4")
	uiDo(t, ctx, "a JPEG row with a seed",
		uiChoose("#output-format", "jpeg"),
		chromedp.SendKeys(chromedp.CSS(`#rows > li:nth-child(1) textarea[data-name=prompt]`), "a lighthouse"),
		chromedp.SendKeys(chromedp.CSS(`#rows > li:nth-child(1) input[data-name=seed]`), "7"),
		chromedp.Click(chromedp.ID("submit")))
	uiPoll(t, ctx, "the batch is finished", `window.assetgenConsole.finished && document.querySelectorAll('#links a').length === 1`, 20*time.Second)
	id := uiEval[string](t, ctx, `location.hash.replace('#batch=', '')`)
	b := get(t, s.base+"/batch/"+id, nil)
	v := variantAt(b, 0, 0)
	if v["seed"] != 7.0 {
		t.Errorf("the variant's seed is %v, want 7", v["seed"])
	}
	if u := pathOf(t, v["url"]); !strings.HasSuffix(u, ".jpg") {
		t.Errorf("the image is %s, want a JPEG", u)
	}

	uiDo(t, ctx, "choosing Gemini 2.5 Flash Image", uiChoose("#model", "gemini-2.5-flash-image"))
	if uiEval[bool](t, ctx, `!document.getElementById('image-size').disabled || !document.getElementById('output-format').disabled`) {
		t.Error("a model with one size and one format still offers a choice")
	}
	uiNoPageErrors(t, errs)
}
