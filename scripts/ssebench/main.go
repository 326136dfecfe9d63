// Command ssebench measures what a progress stream costs:
//
//	a) memory per idle stream, against a floor: for each N in -watchers, -runs
//	   times, a fresh process serving the progress service as deployed
//	   (functions/wire over a platform opened from the configuration, the
//	   whole middleware chain, the progress token in the URL) and a fresh
//	   process serving a bare net/http SSE server (one goroutine per stream
//	   blocked on a one-slot channel, one shared heartbeat) each hold N idle
//	   streams of one running batch, the same request from the same client
//	   process. Each server first serves and closes a few streams (code paged
//	   in, clients connected), then its RSS (VmRSS) and Go heap
//	   (HeapInuse+StackInuse) are read before and after, the least of three
//	   samples each; the growth divided by N is the cost per stream, and ours
//	   ÷ the floor's is the overhead. Goal: ≤ 1.08.
//	b) Cloud Storage requests per second (devstack.Faults counts them between
//	   the storage client and the emulator) over -duration with 1 watcher and
//	   with -rate-watchers watchers of the same running batch, and their ratio.
//	   Goal: ≤ 1.05 — traffic depends on batches, not watchers.
//	c) delay from a ledger write (UpdateRow returning) to the row event reaching
//	   a client: -changes row changes watched by -latency-watchers in-process
//	   clients, at the default PollMin 250 ms / PollMax 2 s (a row is running,
//	   so the tail polls at PollMin). Reported as p50, p95 and max.
//
// The storage emulator runs in this process, outside the servers measured in
// a). Every process raises RLIMIT_NOFILE to its hard limit; if N connections
// hit a machine limit, the run fails saying how many opened. Run it with
//
//	go run ./scripts/ssebench [-watchers 1000,10000] [-runs 3] [-duration 10s] [-memprofile /tmp/heap]
//
// It prints its progress to stderr and markdown tables to stdout.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/assetgen/assetgen/functions/progress"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/client"
	"github.com/assetgen/assetgen/shared/cloud"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/health"
	"github.com/assetgen/assetgen/shared/ledger"
)

const bucket = "assetgen-ssebench"

func main() {
	watchers := flag.String("watchers", "1000,10000", "comma-separated numbers of idle streams for the memory measurement")
	rateWatchers := flag.Int("rate-watchers", 1000, "watchers compared with one for Cloud Storage requests per second")
	duration := flag.Duration("duration", 10*time.Second, "window of each requests-per-second measurement (0 skips it)")
	changes := flag.Int("changes", 200, "row changes timed from ledger write to client (0 skips them)")
	latencyWatchers := flag.Int("latency-watchers", 10, "clients receiving the timed changes")
	child := flag.Bool("child", false, "internal: run as the client process")
	addr := flag.String("addr", "", "internal: the server's host:port (child)")
	path := flag.String("path", "", "internal: the stream's path (child)")
	n := flag.Int("n", 0, "internal: streams to open (child)")
	runs := flag.Int("runs", 3, "memory measurements of each server at each -watchers step")
	memprofile := flag.String("memprofile", "", "write each server's heap profile at each -watchers step to this path plus .KIND.N.runR")
	serve := flag.String("serve", "", "internal: run as a server process of this kind (progress or floor)")
	flag.Parse()

	nofile := raiseNoFile()
	if *serve != "" {
		if err := runServer(*serve, os.Getenv); err != nil {
			fmt.Fprintln(os.Stderr, "ssebench server:", err)
			os.Exit(1)
		}
		return
	}
	if *child {
		if err := runChild(*addr, *path, *n); err != nil {
			fmt.Fprintln(os.Stderr, "ssebench child:", err)
			os.Exit(1)
		}
		return
	}
	var ns []int
	for _, f := range strings.Split(*watchers, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			fmt.Fprintf(os.Stderr, "ssebench: bad -watchers entry %q\n", f)
			os.Exit(2)
		}
		ns = append(ns, v)
	}
	b := bench{nofile: nofile, duration: *duration, memprofile: *memprofile}
	if err := b.run(ns, *runs, *rateWatchers, *changes, *latencyWatchers); err != nil {
		fmt.Fprintln(os.Stderr, "ssebench:", err)
		os.Exit(1)
	}
}

// raiseNoFile lifts the open-files limit to its hard maximum and returns it.
func raiseNoFile() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	lim.Cur = lim.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	return lim.Cur
}

type bench struct {
	nofile     uint64
	duration   time.Duration
	memprofile string

	faults  *devstack.Faults
	clients *cloud.Clients
	tokens  *auth.Tokens
	gcsAddr string
	keyFile string
	hub     *progress.Hub
	addr    string
	m       *ledger.Manifest
	rows    []string // result table rows
	memRows []string // memory table rows
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

func (b *bench) row(measure, value, goal string) {
	b.rows = append(b.rows, fmt.Sprintf("| %s | %s | %s |", measure, value, goal))
}

func (b *bench) run(ns []int, runs, rateWatchers, changes, latencyWatchers int) error {
	ctx := context.Background()
	stop, err := b.start(ctx)
	if err != nil {
		return err
	}
	defer stop()
	logf("serving on %s, RLIMIT_NOFILE %d, GOMAXPROCS %d", b.addr, b.nofile, runtime.GOMAXPROCS(0))

	if err := b.compareMemory(ctx, ns, runs); err != nil {
		return err
	}
	if b.duration > 0 {
		if err := b.requestRate(ctx, rateWatchers); err != nil {
			return err
		}
	}
	if changes > 0 {
		if err := b.latency(ctx, changes, latencyWatchers); err != nil {
			return err
		}
	}

	fmt.Printf("\nssebench: %s, %s/%s, GOMAXPROCS %d, RLIMIT_NOFILE %d; hub: Heartbeat 30s, PollMin 250ms, PollMax 2s\n\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), b.nofile)
	fmt.Println("Memory per idle stream (KiB), each server a fresh process:")
	fmt.Println()
	fmt.Println("| streams | run | floor RSS | progress RSS | RSS ratio | floor heap+stacks | progress heap+stacks | heap ratio | goroutines per stream (floor / progress) |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, r := range b.memRows {
		fmt.Println(r)
	}
	fmt.Println()
	fmt.Println("| measurement | result | goal |")
	fmt.Println("|---|---|---|")
	for _, r := range b.rows {
		fmt.Println(r)
	}
	return nil
}

// start runs the emulator, the clients, a hub and its server, and creates one
// running batch.
func (b *bench) start(ctx context.Context) (func(), error) {
	root, err := os.MkdirTemp("", "ssebench-*")
	if err != nil {
		return nil, err
	}
	b.faults = devstack.NewFaults(1)
	g, err := devstack.StartGCS(devstack.GCSOptions{Addr: "127.0.0.1:0", Root: root + "/gcs", Buckets: []string{bucket}, Wrap: b.faults.Wrap})
	if err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	b.gcsAddr, b.keyFile = g.Addr, root+"/key.pem"
	env := map[string]string{"BUCKET": bucket, "STORAGE_EMULATOR_HOST": g.Addr, "SIGNING_KEY_FILE": b.keyFile}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		return nil, err
	}
	if b.clients, err = cloud.Open(ctx, cfg); err != nil {
		return nil, err
	}
	// The server processes derive the same token key from the same file.
	if b.tokens, err = auth.TokensFromConfig(cfg); err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := progress.New(progress.Config{
		PollMin: 250 * time.Millisecond, PollMax: 2 * time.Second,
		Heartbeat: 30 * time.Second, MaxDuration: 59 * time.Minute, Retry: 2 * time.Second,
		RefreshBefore: 5 * time.Minute, WriteTimeout: 30 * time.Second,
	}, progress.Deps{Store: b.clients.Ledger, Sign: b.clients.Signer.Sign, Auth: auth.None{}, Ready: health.NewReadiness(5 * time.Second), Log: log})
	b.hub = svc.Hub
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b.addr = ln.Addr().String()
	srv := &http.Server{Handler: svc, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()

	b.m = &ledger.Manifest{Schema: 1, BatchID: batch.NewID(), Owner: auth.LocalUser, RunMode: ledger.DryRun,
		Model: "gemini-2.5-flash-image", CreatedAt: time.Now().UTC()}
	for i := range 10 {
		b.m.Rows = append(b.m.Rows, ledger.ManifestRow{Index: i, Prompt: fmt.Sprintf("row %d: a lighthouse at dusk, watercolour", i), Variants: 2, AspectRatio: "1:1"})
	}
	if err := b.clients.Ledger.CreateManifest(ctx, b.m); err != nil {
		return nil, err
	}
	// Row 0 is being generated: the tail polls at PollMin.
	if _, err := b.startRow(ctx, 0); err != nil {
		return nil, err
	}
	return func() {
		b.hub.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.hub.WaitIdle(sctx)
		_ = srv.Shutdown(sctx)
		_ = b.clients.Close()
		_ = g.Close(sctx)
		os.RemoveAll(root)
	}, nil
}

// startRow leases a row (again): a new version while it runs.
func (b *bench) startRow(ctx context.Context, row int) (ledger.Row, error) {
	return b.clients.Ledger.UpdateRow(ctx, b.m, row, func(r ledger.Row) (ledger.Row, error) {
		return ledger.Start(r, ledger.Op{Actor: "ssebench", Now: time.Now().UTC()}, "ssebench", time.Hour)
	})
}

// runChild opens n streams to addr, reads them (discarding), reports how many
// opened, and closes them when stdin closes.
func runChild(addr, path string, n int) error {
	var (
		mu       sync.Mutex
		conns    []net.Conn
		firstErr error
	)
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nAccept: text/event-stream\r\n\r\n")
	open := func() error {
		conn, err := net.DialTimeout("tcp", addr, 30*time.Second)
		if err != nil {
			return err
		}
		if _, err := conn.Write(req); err != nil {
			conn.Close()
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReaderSize(conn, 1024)
		status, err := br.ReadString('\n')
		if err != nil || !strings.Contains(status, " 200 ") {
			conn.Close()
			return fmt.Errorf("status %q: %v", strings.TrimSpace(status), err)
		}
		_ = conn.SetReadDeadline(time.Time{})
		mu.Lock()
		conns = append(conns, conn)
		mu.Unlock()
		go func() { _, _ = io.Copy(io.Discard, br) }()
		return nil
	}
	sem := make(chan struct{}, 128)
	var wg sync.WaitGroup
	for range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := open(); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	msg := fmt.Sprintf("ready %d", len(conns))
	if firstErr != nil {
		msg += " " + strings.ReplaceAll(firstErr.Error(), "\n", " ")
	}
	fmt.Println(msg)
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	return nil
}

// --- b) Cloud Storage requests per second ---------------------------------------

func (b *bench) requestRate(ctx context.Context, many int) error {
	type rate struct {
		n               int
		connect, counts devstack.Counts
	}
	var out []rate
	for _, n := range []int{1, many} {
		logf("requests: %d watcher(s) for %s", n, b.duration)
		b.faults.Reset()
		c, got, err := openStreams(ctx, b.addr, "/progress/"+b.m.BatchID, n)
		if err != nil {
			return err
		}
		stop := func() {
			c.Stop()
			sctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := b.hub.WaitIdle(sctx); err != nil {
				logf("streams still open after the client exited: %+v", b.hub.Stats())
			}
		}
		if got != n {
			stop()
			return fmt.Errorf("requests: only %d of %d streams opened (%s)", got, n, c.limit)
		}
		if err := b.waitHub(n); err != nil {
			stop()
			return err
		}
		connect := b.faults.Counts()
		b.faults.Reset()
		time.Sleep(b.duration)
		counts := b.faults.Counts()
		stop()
		out = append(out, rate{n, connect, counts})
	}
	per := func(c devstack.Counts) float64 {
		return float64(c.Lists+c.Reads+c.Writes) / b.duration.Seconds()
	}
	for _, r := range out {
		b.row(fmt.Sprintf("Cloud Storage requests/s, %d watcher(s), %s", r.n, b.duration),
			fmt.Sprintf("%.2f (lists %d, reads %d, writes %d)", per(r.counts), r.counts.Lists, r.counts.Reads, r.counts.Writes), "")
	}
	ratio := per(out[1].counts) / per(out[0].counts)
	b.row(fmt.Sprintf("requests ratio %d : 1 watchers", many), fmt.Sprintf("%.3f", ratio), "≤ 1.05")
	for _, r := range out {
		b.row(fmt.Sprintf("Cloud Storage requests to open %d stream(s) of a batch no stream watched", r.n),
			fmt.Sprintf("%d (lists %d, reads %d)", r.connect.Lists+r.connect.Reads, r.connect.Lists, r.connect.Reads), "")
	}
	return nil
}

// --- c) ledger write → event delay -----------------------------------------------

type receipt struct {
	row, version int
	at           time.Time
}

func (b *bench) latency(ctx context.Context, changes, watchers int) error {
	logf("latency: %d changes, %d watchers", changes, watchers)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan receipt, 1024)
	errc := make(chan error, watchers)
	for range watchers {
		go func() { errc <- follow(ctx, "http://"+b.addr+"/progress/"+b.m.BatchID, got) }()
	}
	deadline := time.Now().Add(time.Minute)
	for b.hub.Stats().Watchers != watchers {
		if time.Now().After(deadline) {
			return fmt.Errorf("latency: the hub counts %+v", b.hub.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Let every client read its snapshot.
	time.Sleep(500 * time.Millisecond)
	drain(got)

	var delays []time.Duration
	for i := range changes {
		row := 1 + i%(len(b.m.Rows)-1)
		r, err := b.startRow(ctx, row)
		if err != nil {
			return err
		}
		written := time.Now()
		seen := 0
		timeout := time.After(30 * time.Second)
		for seen < watchers {
			select {
			case rc := <-got:
				if rc.row == row && rc.version == r.Version {
					delays = append(delays, rc.at.Sub(written))
					seen++
				}
			case err := <-errc:
				return fmt.Errorf("latency: a client stopped: %v", err)
			case <-timeout:
				return fmt.Errorf("latency: change %d (row %d v%d) reached %d of %d clients in 30s", i, row, r.Version, seen, watchers)
			}
		}
		// Land the next write at a random point of the poll cycle.
		time.Sleep(rand.N(250 * time.Millisecond))
	}
	cancel()
	slices.Sort(delays)
	pct := func(p float64) time.Duration {
		return delays[min(len(delays)-1, int(p*float64(len(delays))))].Round(time.Millisecond)
	}
	b.row(fmt.Sprintf("ledger write → event, %d changes × %d watchers (PollMin 250ms)", changes, watchers),
		fmt.Sprintf("p50 %s, p95 %s, max %s", pct(0.50), pct(0.95), delays[len(delays)-1].Round(time.Millisecond)), "p95 ≤ PollMin + a read")
	return nil
}

func drain(c chan receipt) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// follow reads one stream and reports every row event it receives.
func follow(ctx context.Context, url string, got chan<- receipt) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	events := client.NewEventReader(resp.Body, "")
	for {
		ev, err := events.Next()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, io.EOF):
			return errors.New("stream ended")
		case err != nil:
			return err
		case ev.Type != "row":
			continue
		}
		at := time.Now()
		var r struct{ Index, Version int }
		if err := json.Unmarshal(ev.Data, &r); err != nil {
			return err
		}
		select {
		case got <- receipt{r.Index, r.Version, at}:
		case <-ctx.Done():
			return nil
		}
	}
}
