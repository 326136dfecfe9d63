// Command refflood replays the reference-flood attack against the local stack
// and reports what it cost the stack's process: concurrent dry-run submits
// whose every reference is a distinct image of the size limit, served from a
// loopback host, plus one submit whose references never answer. It prints
// the stack's peak RSS (VmHWM) and how every request was answered, and fails
// when a request got no answer or the peak is over -max-rss.
//
// By default it builds and starts the local stack itself (a fresh data dir,
// REFS_ALLOW_LOOPBACK=true); -base and -pid target a running one instead,
// which must allow loopback references.
//
//	go run ./scripts/refflood [-submits 30] [-size 10MiB] [-hanging 5]
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/assetgen/assetgen/scripts/proc"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "refflood:", err)
		os.Exit(1)
	}
}

type options struct {
	base    string
	pid     int
	submits int
	rows    int
	perList int
	size    int64
	hanging int
	maxRSS  int64
	timeout time.Duration
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	var o options
	var size, maxRSS string
	fs := flag.NewFlagSet("refflood", flag.ContinueOnError)
	fs.StringVar(&o.base, "base", "", "origin of a running local stack (empty: build and start one)")
	fs.IntVar(&o.pid, "pid", 0, "process id of the running stack, whose VmHWM is read (with -base)")
	fs.IntVar(&o.submits, "submits", 30, "concurrent flood submits")
	fs.IntVar(&o.rows, "rows", 10, "rows per submit")
	fs.IntVar(&o.perList, "refs-per-list", 6, "references per row and global references per submit")
	fs.StringVar(&size, "size", "10MiB", "size of every reference image")
	fs.IntVar(&o.hanging, "hanging", 5, "references that never answer, one per row of one more submit")
	fs.StringVar(&maxRSS, "max-rss", "512MiB", "fail when the stack's peak RSS exceeds this")
	fs.DurationVar(&o.timeout, "timeout", 90*time.Second, "how long the client waits for one answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if o.size, err = parseSize(size); err != nil {
		return fmt.Errorf("-size: %w", err)
	}
	if o.maxRSS, err = parseSize(maxRSS); err != nil {
		return fmt.Errorf("-max-rss: %w", err)
	}
	if o.hanging > o.rows {
		return fmt.Errorf("-hanging: at most one per row (%d)", o.rows)
	}

	host, err := startHost(o.size)
	if err != nil {
		return err
	}
	defer host.close()

	if o.base == "" {
		st, err := startStack(ctx)
		if err != nil {
			return err
		}
		defer st.stop()
		o.base, o.pid = st.base, st.cmd.Process.Pid
	}
	if o.pid == 0 {
		return errors.New("-pid is needed with -base: the stack's peak RSS is read from /proc/<pid>/status")
	}
	before, err := proc.RSS(o.pid)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "refflood: %d submits × %d references of %s (+1 submit with %d that never answer) against %s (pid %d, RSS %s)\n",
		o.submits, o.rows*o.perList+o.perList, sizeText(o.size), o.hanging, o.base, o.pid, sizeText(before))

	res := flood(ctx, o, host)
	peak, err := proc.PeakRSS(o.pid)
	if err != nil {
		return err
	}
	report(stdout, o, res, host, before, peak)
	switch {
	case res.unanswered > 0:
		return fmt.Errorf("%d requests got no answer", res.unanswered)
	case peak > o.maxRSS:
		return fmt.Errorf("peak RSS %s is over %s", sizeText(peak), sizeText(o.maxRSS))
	}
	return nil
}

// results are the answers of every request.
type results struct {
	mu         sync.Mutex
	status     map[string]int // "flood 202", "hanging 422", ...
	codes      map[string]int // problem codes
	slowest    time.Duration
	hangTook   time.Duration
	unanswered int
	wall       time.Duration
}

func (r *results) add(kind string, status int, code string, took time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.unanswered++
		r.status[kind+" no answer: "+err.Error()]++
		return
	}
	r.status[fmt.Sprintf("%s %d", kind, status)]++
	if code != "" {
		r.codes[code]++
	}
	r.slowest = max(r.slowest, took)
	if kind == "hanging" {
		r.hangTook = took
	}
}

// flood sends every submit at once and waits for their answers. Each submit
// has a user of its own: per-user limits (rate, queued rows) are not what is
// measured, the instance's are.
func flood(ctx context.Context, o options, h *host) *results {
	res := &results{status: map[string]int{}, codes: map[string]int{}}
	client := &http.Client{Timeout: o.timeout}
	var wg sync.WaitGroup
	start := time.Now()
	for s := range o.submits {
		var global []string
		for i := range o.perList {
			global = append(global, fmt.Sprintf("%s/img/%d/g%d.png", h.base, s, i))
		}
		var rows []string
		for r := range o.rows {
			var own []string
			for i := range o.perList {
				own = append(own, fmt.Sprintf("%q", fmt.Sprintf("%s/img/%d/r%d-%d.png", h.base, s, r, i)))
			}
			rows = append(rows, fmt.Sprintf(`{"prompt":"flood %d row %d","refs":[%s]}`, s, r, strings.Join(own, ",")))
		}
		body := fmt.Sprintf(`{"runMode":"dry_run","refs":[%s],"rows":[%s]}`, quoteAll(global), strings.Join(rows, ","))
		wg.Go(func() { post(ctx, client, o.base, fmt.Sprintf("flood-%d", s), body, "flood", res) })
	}
	if o.hanging > 0 {
		var rows []string
		for r := range o.hanging {
			rows = append(rows, fmt.Sprintf(`{"prompt":"slow host row %d","refs":["%s/hang/%d.png"]}`, r, h.base, r))
		}
		body := fmt.Sprintf(`{"runMode":"dry_run","rows":[%s]}`, strings.Join(rows, ","))
		wg.Go(func() { post(ctx, client, o.base, "slow-host", body, "hanging", res) })
	}
	wg.Wait()
	res.wall = time.Since(start)
	return res
}

func quoteAll(urls []string) string {
	q := make([]string, len(urls))
	for i, u := range urls {
		q[i] = strconv.Quote(u)
	}
	return strings.Join(q, ",")
}

func post(ctx context.Context, c *http.Client, base, user, body, kind string, res *results) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/batch/images", strings.NewReader(body))
	if err != nil {
		res.add(kind, 0, "", 0, err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Assetgen-User", user)
	resp, err := c.Do(req)
	if err != nil {
		res.add(kind, 0, "", 0, err)
		return
	}
	defer resp.Body.Close()
	doc, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	code := ""
	if _, rest, ok := strings.Cut(string(doc), `"code":"`); ok && resp.StatusCode >= 400 {
		code, _, _ = strings.Cut(rest, `"`)
	}
	res.add(kind, resp.StatusCode, code, time.Since(start), nil)
}

func report(w io.Writer, o options, res *results, h *host, before, peak int64) {
	fmt.Fprintf(w, "\nanswers (wall %s, slowest %s):\n", res.wall.Round(time.Millisecond), res.slowest.Round(time.Millisecond))
	keys := make([]string, 0, len(res.status))
	for k := range res.status {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-40s %d\n", k, res.status[k])
	}
	for code, n := range res.codes {
		fmt.Fprintf(w, "  problem %-32s %d\n", code, n)
	}
	if o.hanging > 0 {
		fmt.Fprintf(w, "  the submit with never-answering references answered after %s\n", res.hangTook.Round(time.Millisecond))
	}
	offered := int64(o.submits) * int64(o.rows*o.perList+o.perList)
	fmt.Fprintf(w, "reference host: %d of %d references requested, %s served\n", h.requests.Load(), offered, sizeText(h.served.Load()))
	fmt.Fprintf(w, "stack process: RSS before %s, peak (VmHWM) %s, limit %s\n", sizeText(before), sizeText(peak), sizeText(o.maxRSS))
}

// host serves distinct images of one size under /img/ (each path its own
// content, generated as it is sent) and never answers under /hang/.
type host struct {
	base     string
	srv      *http.Server
	requests atomic.Int64
	served   atomic.Int64
}

func startHost(size int64) (*host, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &host{base: "http://" + ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /img/", func(w http.ResponseWriter, r *http.Request) {
		h.requests.Add(1)
		n, _ := writeImage(w, r.URL.Path, size)
		h.served.Add(n)
	})
	mux.HandleFunc("GET /hang/", func(w http.ResponseWriter, r *http.Request) {
		h.requests.Add(1)
		<-r.Context().Done()
	})
	h.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = h.srv.Serve(ln) }()
	return h, nil
}

func (h *host) close() { _ = h.srv.Close() }

// pngHead is a 64×64 RGBA PNG's signature and IHDR; pngTail an empty IDAT
// stream's end and IEND. Between them a private ancillary chunk of
// pseudo-random bytes (seeded by the path) brings the file to its size.
var (
	pngHead = func() []byte {
		ihdr := []byte("IHDR\x00\x00\x00\x40\x00\x00\x00\x40\x08\x06\x00\x00\x00")
		b := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0d")
		b = append(b, ihdr...)
		return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(ihdr))
	}()
	pngTail = func() []byte {
		iend := []byte("IEND")
		b := []byte("\x00\x00\x00\x00")
		b = append(b, iend...)
		return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(iend))
	}()
)

func writeImage(w http.ResponseWriter, path string, size int64) (int64, error) {
	pad := max(size-int64(len(pngHead)+len(pngTail)+12), 0)
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Content-Length", strconv.FormatInt(int64(len(pngHead)+len(pngTail))+12+pad, 10))
	bw := bufio.NewWriterSize(w, 64<<10)
	n, _ := bw.Write(pngHead)
	total := int64(n)
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(pad))
	copy(hdr[4:], "prVt")
	crc := crc32.NewIEEE()
	_, _ = crc.Write(hdr[4:])
	n, _ = bw.Write(hdr[:])
	total += int64(n)
	seed := crc32.ChecksumIEEE([]byte(path))
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	buf := make([]byte, 32<<10)
	for left := pad; left > 0; {
		chunk := buf[:min(int64(len(buf)), left)]
		_, _ = rng.Read(chunk)
		_, _ = crc.Write(chunk)
		m, err := bw.Write(chunk)
		total += int64(m)
		if err != nil {
			return total, err
		}
		left -= int64(m)
	}
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc.Sum32())
	n, _ = bw.Write(sum[:])
	total += int64(n)
	n, _ = bw.Write(pngTail)
	total += int64(n)
	return total, bw.Flush()
}

// stack is the local stack, built and started for the run.
type stack struct {
	cmd  *exec.Cmd
	dir  string
	base string
	done chan error
}

func startStack(ctx context.Context) (*stack, error) {
	dir, err := os.MkdirTemp("", "refflood-*")
	if err != nil {
		return nil, err
	}
	st := &stack{dir: dir, done: make(chan error, 1)}
	bin := filepath.Join(dir, "local")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./functions/cmd/local")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("building the local stack: %w", err)
	}
	ports := make([]string, 3)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
	st.base = "http://127.0.0.1:" + ports[0]
	st.cmd = exec.Command(bin)
	st.cmd.Env = append(os.Environ(),
		"PORT="+ports[0], "LOCAL_GCS_ADDR=127.0.0.1:"+ports[1], "LOCAL_TASKS_ADDR=127.0.0.1:"+ports[2],
		"DATA_DIR="+filepath.Join(dir, "data"), "REFS_ALLOW_LOOPBACK=true", "LOG_LEVEL=warn")
	st.cmd.Stdout, st.cmd.Stderr = io.Discard, os.Stderr
	if err := st.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	go func() { st.done <- st.cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(st.base + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return st, nil
			}
		}
		select {
		case err := <-st.done:
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("the local stack exited: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			st.stop()
			return nil, errors.New("the local stack did not come up within 60s")
		}
	}
}

func (st *stack) stop() {
	_ = st.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-st.done:
	case <-time.After(30 * time.Second):
		_ = st.cmd.Process.Kill()
		<-st.done
	}
	_ = os.RemoveAll(st.dir)
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	return port, err
}

func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}, {"", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("want a size such as 10MiB, got %q", s)
			}
			return n * u.mult, nil
		}
	}
	return 0, fmt.Errorf("want a size such as 10MiB, got %q", s)
}

func sizeText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}
