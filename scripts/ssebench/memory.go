package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/assetgen/assetgen/scripts/proc"
)

// serverProc is a fresh server process (runServer) and its address.
type serverProc struct {
	*proc.Child
	addr string
}

// startServer starts a server process of kind with env added to this one's.
func startServer(ctx context.Context, kind string, env []string) (*serverProc, error) {
	c, line, err := proc.Start(ctx, []string{"-serve", kind}, env...)
	if err != nil {
		return nil, err
	}
	addr, ok := strings.CutPrefix(line, "listening ")
	if !ok {
		c.Stop()
		return nil, fmt.Errorf("%s server: %q", kind, line)
	}
	return &serverProc{Child: c, addr: addr}, nil
}

func (s *serverProc) sample() (sample, error) {
	var sm sample
	line, err := s.Ask("sample")
	if err != nil {
		return sm, err
	}
	return sm, json.Unmarshal([]byte(line), &sm)
}

// wait returns once the server counts n open streams (or gives up after a
// minute) and says how many it counts.
func (s *serverProc) wait(n int) (int, error) {
	line, err := s.Ask("wait " + strconv.Itoa(n))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimPrefix(line, "streams "))
}

// warmup is how many streams a server serves and closes before its baseline.
const warmup = 10

// perStream is one measurement: a fresh server process of one kind holding n
// idle streams.
type perStream struct {
	kind       string
	n, got     int
	rss, heap  float64 // KiB per stream
	before     sample
	after      sample
	goroutines float64 // per stream
}

// measureServer starts a fresh server of kind, opens n streams to it from a
// client process, and returns its growth per stream.
func (b *bench) measureServer(ctx context.Context, kind, path string, env []string, n int, profile string) (perStream, error) {
	r := perStream{kind: kind, n: n}
	s, err := startServer(ctx, kind, env)
	if err != nil {
		return r, err
	}
	defer s.Stop()
	// A warm-up: code run on a server's first request is paged in, and what
	// it builds once (clients' connections, caches) exists, before the
	// baseline is read, so that per stream means per stream.
	warm, _, err := openStreams(ctx, s.addr, path, warmup)
	if err != nil {
		return r, err
	}
	_, _ = s.wait(warmup)
	warm.Stop()
	if open, err := s.wait(0); err != nil || open != 0 {
		return r, fmt.Errorf("%s: %d warm-up streams still open: %v", kind, open, err)
	}
	if r.before, err = s.sample(); err != nil {
		return r, err
	}
	c, got, err := openStreams(ctx, s.addr, path, n)
	if err != nil {
		return r, err
	}
	defer func() {
		c.Stop()
		_, _ = s.wait(0)
	}()
	if got == 0 {
		return r, fmt.Errorf("%s: no stream opened (%s)", kind, c.limit)
	}
	if counted, err := s.wait(got); err != nil || counted != got {
		return r, fmt.Errorf("%s: the server counts %d streams, the client opened %d: %v", kind, counted, got, err)
	}
	if r.after, err = s.sample(); err != nil {
		return r, err
	}
	if profile != "" {
		if _, err := s.Ask("profile " + profile); err != nil {
			return r, err
		}
	}
	r.got = got
	r.rss = (float64(r.after.RSS) - float64(r.before.RSS)) / float64(got) / 1024
	r.heap = (float64(r.after.Heap) - float64(r.before.Heap)) / float64(got) / 1024
	r.goroutines = float64(r.after.Goroutines-r.before.Goroutines) / float64(got)
	return r, nil
}

// compareMemory measures, runs times for each n, a fresh progress server and
// a fresh floor server holding n idle streams of one running batch, the two
// back to back so that they share the machine's conditions.
func (b *bench) compareMemory(ctx context.Context, ns []int, runs int) error {
	tok, _ := b.tokens.Mint(b.m.BatchID, b.m.Owner)
	progressPath := "/progress/" + b.m.BatchID + "?token=" + tok
	env := []string{
		"BUCKET=" + bucket, "STORAGE_EMULATOR_HOST=" + b.gcsAddr, "SIGNING_KEY_FILE=" + b.keyFile,
		"SSE_MAX_STREAMS_PER_USER=1000000", "LOG_LEVEL=info",
	}
	if b.memprofile != "" {
		env = append(env, "SSEBENCH_PROFILE=1")
	}
	type pair struct{ floor, ours perStream }
	results := map[int][]pair{}
	for run := 1; run <= runs; run++ {
		for _, n := range ns {
			var p pair
			for _, kind := range []string{kindFloor, kindProgress} {
				// The same request to both: the floor ignores its path.
				path := progressPath
				profile := ""
				if b.memprofile != "" {
					profile = fmt.Sprintf("%s.%s.%d.run%d", b.memprofile, kind, n, run)
				}
				logf("memory: run %d, %s server, %d streams", run, kind, n)
				r, err := b.measureServer(ctx, kind, path, env, n, profile)
				if err != nil {
					return err
				}
				logf("memory: %s %d streams: RSS %.1f KiB/stream (%d → %d KiB), heap+stacks %.1f KiB/stream (heap %d → %d KiB of which live objects %.2f KiB/stream, stacks %d → %d KiB), %.2f goroutines/stream",
					kind, r.got, r.rss, r.before.RSS>>10, r.after.RSS>>10, r.heap,
					r.before.HeapInuse>>10, r.after.HeapInuse>>10, (float64(r.after.HeapAlloc)-float64(r.before.HeapAlloc))/float64(r.got)/1024,
					r.before.StackInuse>>10, r.after.StackInuse>>10, r.goroutines)
				if kind == kindFloor {
					p.floor = r
				} else {
					p.ours = r
				}
			}
			results[n] = append(results[n], p)
		}
	}
	for _, n := range ns {
		var ratios []float64
		for i, p := range results[n] {
			ratio := p.ours.rss / p.floor.rss
			ratios = append(ratios, ratio)
			b.memRows = append(b.memRows, fmt.Sprintf("| %d | %d | %.2f | %.2f | **%.3f** | %.2f | %.2f | %.3f | %.0f / %.0f |",
				n, i+1, p.floor.rss, p.ours.rss, ratio, p.floor.heap, p.ours.heap, p.ours.heap/p.floor.heap,
				p.floor.goroutines, p.ours.goroutines))
		}
		slices.Sort(ratios)
		b.row(fmt.Sprintf("RSS per idle stream ÷ the floor's, %d streams, median of %d runs", n, len(ratios)),
			fmt.Sprintf("%.3f", ratios[len(ratios)/2]), "≤ 1.08")
	}
	return nil
}

// --- the client process --------------------------------------------------------

// clientProc is a client process (runChild) holding streams open; Stop
// closes them and waits for it to exit.
type clientProc struct {
	*proc.Child
	limit string // why fewer streams than asked opened
}

// openStreams starts a client process that opens n streams of path on addr,
// and returns once it is done connecting, with how many it opened.
func openStreams(ctx context.Context, addr, path string, n int) (*clientProc, int, error) {
	// The child prints "ready <opened> <first error>" once done connecting.
	ch, line, err := proc.Start(ctx, []string{"-child", "-addr", addr, "-path", path, "-n", strconv.Itoa(n)})
	if err != nil {
		return nil, 0, fmt.Errorf("child: %w", err)
	}
	c := &clientProc{Child: ch}
	f := strings.SplitN(line, " ", 3)
	if len(f) < 2 || f[0] != "ready" {
		c.Stop()
		return nil, 0, fmt.Errorf("child: %q", line)
	}
	got, _ := strconv.Atoi(f[1])
	if len(f) == 3 {
		c.limit = f[2]
	}
	return c, got, nil
}

// waitHub waits until the in-process hub counts n watchers.
func (b *bench) waitHub(n int) error {
	deadline := time.Now().Add(time.Minute)
	for b.hub.Stats().Watchers != n {
		if time.Now().After(deadline) {
			return fmt.Errorf("the hub counts %+v, expected %d watchers", b.hub.Stats(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
