// Command capacity drives the local stack at rising sustained rates of
// dry-run submits and reports what each rate costs and where it stops
// keeping up. The stack is assembled in this process the way
// functions/cmd/local assembles it: submit, generate and progress built by
// functions/wire over the Cloud Storage emulator and the Cloud Tasks
// stand-in, with -latency added to every Cloud Storage and Cloud Tasks call
// and Cloud Storage's one write per second per object enforced (429).
//
// Each step submits -rate batches of -rows × -variants per second for -step,
// open loop (a new submit every 1/rate seconds whether or not earlier ones
// finished), each by one of -users users in turn, each followed over its
// progress stream to event: done and every image then fetched once through
// its signed URL, as the console does. When a step's submits are all done it
// reports the submits accepted per second, the images finished per second
// (from the step's start to its last done), the submit latency and time to
// done, the Cloud Storage requests by class per second, per image and per
// submit (counted between the storage client and the emulator, as billed),
// the 429 answers, the Cloud Tasks deliveries, and the objects written most.
//
//	go run ./scripts/capacity [-rates 0.5,1,2,4] [-step 30s] [-latency 50ms]
//
// It prints its progress to stderr and a markdown table to stdout, a row per
// step, and stops after the first step that falls behind (a batch failed, or
// batches took three times as long to finish as at the first rate): that
// step's backlog would spoil the next. The machine's load average is printed
// with each row: the placeholder generator and the emulator share the CPU
// with the stack.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/assetgen/assetgen/functions/wire"
	"github.com/assetgen/assetgen/scripts/proc"
	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/client"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/platform"
	"github.com/assetgen/assetgen/shared/urls"
)

const (
	bucket   = "assetgen-capacity"
	queue    = "projects/assetgen-capacity/locations/local/queues/generate"
	dryQueue = queue + "-dry-run"
)

type options struct {
	rates          []float64
	step, drain    time.Duration
	latency        time.Duration
	rows, variants int
	users          int
	concurrent     int64
}

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "capacity:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	var o options
	fs := flag.NewFlagSet("capacity", flag.ContinueOnError)
	rates := fs.String("rates", "0.5,1,2,4", "submits per second of each step, comma-separated")
	fs.DurationVar(&o.step, "step", 30*time.Second, "how long each step submits")
	fs.DurationVar(&o.drain, "drain", 3*time.Minute, "how long a step's last batches may take to finish")
	fs.DurationVar(&o.latency, "latency", 50*time.Millisecond, "latency added to every Cloud Storage and Cloud Tasks call")
	fs.IntVar(&o.rows, "rows", 10, "rows per batch")
	fs.IntVar(&o.variants, "variants", 3, "variants per row")
	fs.IntVar(&o.users, "users", 50, "users the submits rotate over (per-user caps stay out of the way)")
	fs.Int64Var(&o.concurrent, "dispatches", 100, "row tasks each queue runs at once (the stand-in's max concurrent dispatches)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, f := range strings.Split(*rates, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || r <= 0 {
			return fmt.Errorf("bad -rates entry %q", f)
		}
		o.rates = append(o.rates, r)
	}
	s, err := startStack(ctx, o)
	if err != nil {
		return err
	}
	defer s.close()
	logf("stack on %s; storage and tasks latency %s; GOMAXPROCS %d", s.base, o.latency, runtime.GOMAXPROCS(0))

	header(o)
	var steps []result
	for _, rate := range o.rates {
		r, err := s.step(ctx, o, rate)
		if err != nil {
			return err
		}
		row(r)
		steps = append(steps, r)
		// A step that fell behind leaves a backlog the next would inherit:
		// the rate before it is the highest this machine sustains.
		if behind(steps[0], r) {
			logf("step %.2f/s fell behind (failures %d, time to done p95 %s against %s at %.2f/s): stopping", r.rate, r.failed, r.doneP95, steps[0].doneP95, steps[0].rate)
			break
		}
	}
	hot(steps)
	return nil
}

// behind reports whether a step did not keep up: a batch failed, or batches
// took three times as long to finish as at the first rate.
func behind(first, r result) bool {
	return r.failed > 0 || r.doneP95 > 3*first.doneP95
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// --- the stack -------------------------------------------------------------

type stack struct {
	base   string
	dir    string
	faults *devstack.Faults
	gcs    *devstack.GCS
	tasks  *devstack.Tasks
	p      *platform.Platform
	srv    *http.Server
	closed chan struct{}
}

// startStack serves submit, generate and progress on one loopback listener, as
// the local stack does, over emulators with o.latency on every call.
func startStack(ctx context.Context, o options) (*stack, error) {
	dir, err := os.MkdirTemp("", "capacity-")
	if err != nil {
		return nil, err
	}
	s := &stack{dir: dir, closed: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.base = "http://" + ln.Addr().String()
	s.faults = devstack.NewFaults(1)
	s.faults.SetLatency(o.latency)
	s.faults.SetWriteLimit(time.Second)
	keyFile := filepath.Join(dir, "signing-key.pem")
	key, err := urls.LoadOrCreateKey(keyFile)
	if err != nil {
		return nil, err
	}
	if s.gcs, err = devstack.StartGCS(devstack.GCSOptions{Addr: "127.0.0.1:0", Root: filepath.Join(dir, "gcs"), Buckets: []string{bucket}, Wrap: s.faults.Wrap, SigningKey: key}); err != nil {
		return nil, err
	}
	log := obs.NewLogger(io.Discard, slog.LevelWarn)
	if s.tasks, err = devstack.StartTasks(devstack.TasksOptions{
		Addr: "127.0.0.1:0", Queue: queue, More: []devstack.QueueOptions{{Name: dryQueue, MaxConcurrent: o.concurrent}},
		MaxConcurrent: o.concurrent, MaxAttempts: 8, Latency: o.latency, Dir: filepath.Join(dir, "tasks"), Log: log,
	}); err != nil {
		return nil, err
	}
	env := map[string]string{
		"BUCKET": bucket, "TASKS_QUEUE": queue, "TASKS_DRY_RUN_QUEUE": dryQueue,
		"STORAGE_EMULATOR_HOST": s.gcs.Addr, "TASKS_EMULATOR_HOST": s.tasks.Addr,
		"GENERATE_URL": s.base + "/tasks/generate", "PUBLIC_BASE_URL": s.base, "SIGNING_KEY_FILE": keyFile,
		"LOG_LEVEL": "warn",
	}
	getenv := func(k string) string { return env[k] }
	cfg, err := config.Load(getenv)
	if err != nil {
		return nil, err
	}
	if s.p, err = platform.Open(ctx, cfg, platform.Options{Getenv: getenv, Log: log}); err != nil {
		return nil, err
	}
	submitH, err := wire.Submit(s.p)
	if err != nil {
		return nil, err
	}
	generateH, err := wire.Generate(s.p)
	if err != nil {
		return nil, err
	}
	progressH, err := wire.Progress(s.p)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/batch", submitH)
	mux.Handle("/batch/", submitH)
	mux.Handle("/tasks/", generateH)
	mux.Handle("/progress/", progressH)
	mux.Handle("/", submitH)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.srv.RegisterOnShutdown(progressH.Close)
	go func() {
		defer close(s.closed)
		_ = s.srv.Serve(ln)
	}()
	ok = true
	return s, nil
}

func (s *stack) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.srv != nil {
		_ = s.srv.Shutdown(ctx)
		<-s.closed
	}
	if s.tasks != nil {
		s.tasks.Close()
	}
	if s.p != nil {
		_ = s.p.Close()
	}
	if s.gcs != nil {
		_ = s.gcs.Close(ctx)
	}
	os.RemoveAll(s.dir)
}

// --- a step ----------------------------------------------------------------

// outcome is one batch of a step.
type outcome struct {
	submit time.Duration // until the submit answered
	done   time.Duration // until event: done (0: never)
	at     time.Time     // when event: done arrived
	images int           // fetched and found to be images
	err    error
}

type result struct {
	rate             float64
	window           time.Duration // first submit to last done
	submitted        int
	accepted         int
	failed           int
	images           int
	submitP50        time.Duration
	submitP95        time.Duration
	doneP50, doneP95 time.Duration
	doneMax          time.Duration
	counts           devstack.Counts
	tasks            devstack.TaskStats
	hot              []hotObject
	load             string
	firstErr         error
}

type hotObject struct {
	kind   string
	writes int
}

// step submits at rate for o.step, waits for every batch (or o.drain more),
// and counts.
func (s *stack) step(ctx context.Context, o options, rate float64) (result, error) {
	logf("step: %.2f submits/s for %s", rate, o.step)
	s.faults.Reset()
	tasksBefore := s.tasks.Stats()
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	n := int(o.step.Seconds() * rate)
	outs := make([]outcome, n)
	var wg sync.WaitGroup
	dctx, cancel := context.WithTimeout(ctx, o.step+o.drain)
	defer cancel()
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i] = s.batch(dctx, o, i, fmt.Sprintf("user-%d", i%o.users))
		}()
	}
	wg.Wait()
	r := result{rate: rate, submitted: n, counts: s.faults.Counts(), load: proc.LoadAverage()}
	after := s.tasks.Stats()
	r.tasks = devstack.TaskStats{Created: after.Created - tasksBefore.Created, Deliveries: after.Deliveries - tasksBefore.Deliveries,
		Failures: after.Failures - tasksBefore.Failures}
	var submits, dones []time.Duration
	last := start
	for _, b := range outs {
		if b.submit > 0 {
			submits = append(submits, b.submit)
		}
		if b.err != nil {
			r.failed++
			if r.firstErr == nil {
				r.firstErr = b.err
			}
		}
		if b.done > 0 {
			r.accepted++
			dones = append(dones, b.done)
			if b.at.After(last) {
				last = b.at
			}
		}
		r.images += b.images
	}
	r.window = last.Sub(start)
	r.submitP50, r.submitP95 = pct(submits, 0.5), pct(submits, 0.95)
	r.doneP50, r.doneP95, r.doneMax = pct(dones, 0.5), pct(dones, 0.95), pct(dones, 1)
	r.hot = hottest(s.faults.WritesOf(""), 8)
	logf("step %.2f/s: %d of %d batches done, %d images in %s (%.1f images/s); storage %+v; tasks %+v; load %s",
		rate, r.accepted, n, r.images, r.window.Round(time.Millisecond), float64(r.images)/r.window.Seconds(), r.counts, r.tasks, r.load)
	if r.firstErr != nil {
		logf("step %.2f/s: first failure: %v", rate, r.firstErr)
	}
	return r, nil
}

// batch submits one dry-run batch as user, follows it to done and fetches
// its images.
func (s *stack) batch(ctx context.Context, o options, i int, user string) outcome {
	c := client.New(s.base)
	c.HTTP = &http.Client{Transport: asUser{user, http.DefaultTransport}}
	req := batch.Request{RunMode: string(ledger.DryRun)}
	for r := range o.rows {
		v := o.variants
		req.Rows = append(req.Rows, batch.RowRequest{Prompt: fmt.Sprintf("capacity batch %d row %d: a lighthouse at dusk", i, r), Variants: &v})
	}
	var out outcome
	sent := time.Now()
	sub, err := c.Submit(ctx, req, "")
	out.submit = time.Since(sent)
	if err != nil {
		out.err = fmt.Errorf("submit: %w", err)
		return out
	}
	final := map[int]api.Row{}
	_, err = c.Follow(ctx, sub.ProgressURL, "", func(ev client.Event) error {
		switch ev.Type {
		case "row":
			var r api.Row
			if err := json.Unmarshal(ev.Data, &r); err != nil {
				return err
			}
			final[r.Index] = r
		case "done":
			out.at = time.Now()
			out.done = out.at.Sub(sent)
		}
		return nil
	})
	if err != nil {
		out.err = fmt.Errorf("batch %s: progress: %w", sub.BatchID, err)
		return out
	}
	for _, r := range final {
		for _, v := range r.Variants {
			if err := fetch(ctx, c.HTTP, v.URL); err != nil {
				out.err = errors.Join(out.err, fmt.Errorf("batch %s row %d variant %d: %w", sub.BatchID, r.Index, v.Index, err))
				continue
			}
			out.images++
		}
	}
	return out
}

// asUser names the local stack's user on every request (AUTH_MODE=none).
type asUser struct {
	user string
	next http.RoundTripper
}

func (a asUser) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(auth.HeaderUser, a.user)
	return a.next.RoundTrip(r)
}

var pngMagic = []byte("\x89PNG\r\n\x1a\n")

func fetch(ctx context.Context, hc *http.Client, url string) error {
	if url == "" {
		return errors.New("a variant without a URL")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	head := make([]byte, len(pngMagic))
	if _, err := io.ReadFull(resp.Body, head); err != nil || resp.StatusCode != http.StatusOK || string(head) != string(pngMagic) {
		return fmt.Errorf("GET image: status %d, %v", resp.StatusCode, err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(p*float64(len(ds))))].Round(time.Millisecond)
}

// hottest groups the objects written by what they are (batch ids and
// indexes replaced by placeholders) and returns the kinds whose single most
// written object was written most.
func hottest(writes map[string]int, n int) []hotObject {
	most := map[string]int{}
	for name, w := range writes {
		k := kindOf(name)
		most[k] = max(most[k], w)
	}
	var out []hotObject
	for _, k := range slices.Sorted(maps.Keys(most)) {
		out = append(out, hotObject{k, most[k]})
	}
	slices.SortStableFunc(out, func(a, b hotObject) int { return cmp.Compare(b.writes, a.writes) })
	return out[:min(n, len(out))]
}

// kindOf names an object by its path with every id-like segment replaced.
func kindOf(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		switch {
		case batch.ValidID(p):
			parts[i] = "{id}"
		case strings.HasPrefix(p, "state-"):
			parts[i] = "state-{time}.json"
		case len(p) > 24:
			parts[i] = "{…}"
		case strings.HasPrefix(p, "r") && strings.Contains(p, "-v"):
			parts[i] = "{image}"
		case strings.HasSuffix(p, ".json") && strings.Trim(strings.TrimSuffix(p, ".json"), "0123456789") == "":
			parts[i] = "{row}.json"
		}
	}
	return strings.Join(parts, "/")
}

// --- the report ------------------------------------------------------------

func header(o options) {
	fmt.Printf("\ncapacity: %s, GOMAXPROCS %d; %d × %d dry-run batches from %d users; %s on every Cloud Storage and Cloud Tasks call, 1 write/s per object enforced; %d dispatches at once per queue\n\n",
		runtime.Version(), runtime.GOMAXPROCS(0), o.rows, o.variants, o.users, o.latency, o.concurrent)
	fmt.Println("| offered submits/s | batches done | accepted submits/s | images/s | submit p50 / p95 | time to done p50 / p95 / max | storage writes/s | lists/s | reads/s | 429s | class A per image | class B per image | storage ops per batch (A / B) | tasks delivered/s | load average |")
	fmt.Println("|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|")
}

func row(r result) {
	secs := r.window.Seconds()
	img := float64(max(r.images, 1))
	sub := float64(max(r.accepted, 1))
	fmt.Printf("| %.2f | %d / %d | %.2f | %.1f | %s / %s | %s / %s / %s | %.1f | %.1f | %.1f | %d | %.3f | %.2f | %.1f / %.1f | %.1f | %s |\n",
		r.rate, r.accepted, r.submitted, float64(r.accepted)/secs, float64(r.images)/secs,
		r.submitP50, r.submitP95, r.doneP50, r.doneP95, r.doneMax,
		float64(r.counts.Writes)/secs, float64(r.counts.Lists)/secs, float64(r.counts.Reads)/secs, r.counts.Status429,
		float64(r.counts.ClassA())/img, float64(r.counts.Reads)/img,
		float64(r.counts.ClassA())/sub, float64(r.counts.Reads)/sub,
		float64(r.tasks.Deliveries)/secs, r.load)
}

func hot(steps []result) {
	fmt.Println()
	fmt.Println("Most-written object of each kind, per step (writes over the step):")
	fmt.Println()
	for _, r := range steps {
		var parts []string
		for _, h := range r.hot {
			parts = append(parts, fmt.Sprintf("`%s` %d", h.kind, h.writes))
		}
		fmt.Printf("- %.2f submits/s: %s\n", r.rate, strings.Join(parts, ", "))
	}
}
