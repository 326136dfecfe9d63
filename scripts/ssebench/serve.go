package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/assetgen/assetgen/functions/wire"
	"github.com/assetgen/assetgen/scripts/proc"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/platform"
)

// Servers measured side by side, each in a fresh process of this binary
// (-serve KIND), so neither inherits the other's heap or stacks.
const (
	// kindProgress is the progress service as deployed: functions/wire over
	// a platform opened from the configuration, with its whole middleware
	// chain, authenticated by the progress token in the URL.
	kindProgress = "progress"
	// kindFloor is a bare net/http SSE server: one goroutine per stream
	// blocked on a one-slot channel, one shared heartbeat ticker.
	kindFloor = "floor"
)

// sample is a server process's memory, read after a few collections.
type sample struct {
	RSS        uint64 `json:"rss"`  // VmRSS, bytes
	Heap       uint64 `json:"heap"` // HeapInuse + StackInuse
	HeapInuse  uint64 `json:"heapInuse"`
	HeapAlloc  uint64 `json:"heapAlloc"` // live objects: HeapInuse less the free slots of in-use spans
	StackInuse uint64 `json:"stackInuse"`
	Goroutines int    `json:"goroutines"`
}

func measure() sample {
	// Each collection may halve an idle goroutine's oversized stack: a few of
	// them give the steady state a long-running server reaches.
	for range 4 {
		runtime.GC()
	}
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, _ := proc.RSS(os.Getpid())
	return sample{RSS: uint64(rss), Heap: ms.HeapInuse + ms.StackInuse, HeapInuse: ms.HeapInuse, HeapAlloc: ms.HeapAlloc, StackInuse: ms.StackInuse, Goroutines: runtime.NumGoroutine()}
}

// quietest is the least of three samples a tenth of a second apart, field by
// field: a progress tail's poll in flight (its goroutines, buffers and
// connections) is not what an idle stream costs, and a sample may catch one.
func quietest() sample {
	q := measure()
	for range 2 {
		time.Sleep(100 * time.Millisecond)
		m := measure()
		q.RSS, q.Heap, q.HeapInuse = min(q.RSS, m.RSS), min(q.Heap, m.Heap), min(q.HeapInuse, m.HeapInuse)
		q.HeapAlloc, q.StackInuse, q.Goroutines = min(q.HeapAlloc, m.HeapAlloc), min(q.StackInuse, m.StackInuse), min(q.Goroutines, m.Goroutines)
	}
	return q
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("heap").WriteTo(f, 0)
}

// runServer is a server process: it serves kind on a loopback port, prints
// "listening ADDR", then answers the parent's commands on stdin, one a line:
//
//	sample         → a JSON sample of its memory
//	wait N         → "streams K" once K = N streams are open (or after a minute)
//	profile PATH   → writes a heap profile to PATH, then "ok"
//
// It exits when stdin closes.
func runServer(kind string, getenv func(string) string) error {
	if getenv("SSEBENCH_PROFILE") != "" {
		// Every allocation recorded: exact profiles, at a cost in memory that
		// makes such a run's numbers incomparable with an unprofiled one.
		runtime.MemProfileRate = 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var (
		handler http.Handler
		streams func() int
	)
	switch kind {
	case kindProgress:
		cfg, err := config.Load(getenv)
		if err != nil {
			return err
		}
		log := obs.NewLogger(io.Discard, slog.LevelInfo)
		p, err := platform.Open(context.Background(), cfg, platform.Options{Getenv: getenv, Log: log})
		if err != nil {
			return err
		}
		defer p.Close()
		svc, err := wire.Progress(p)
		if err != nil {
			return err
		}
		handler, streams = svc, func() int { return svc.Stats().Watchers }
	case kindFloor:
		f := newFloor(30 * time.Second)
		defer f.stop()
		handler, streams = f, f.streams
	default:
		return fmt.Errorf("unknown server %q", kind)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("listening %s\n", ln.Addr())

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "sample":
			b, _ := json.Marshal(quietest())
			fmt.Printf("%s\n", b)
		case "wait":
			n, _ := strconv.Atoi(arg)
			deadline := time.Now().Add(time.Minute)
			for streams() != n && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			fmt.Printf("streams %d\n", streams())
		case "profile":
			measure()
			if err := writeHeapProfile(arg); err != nil {
				return err
			}
			fmt.Println("ok")
		default:
			return fmt.Errorf("unknown command %q", cmd)
		}
	}
	return in.Err()
}

// floor is the bare net/http SSE server a progress stream is compared with:
// what any Go SSE server pays per idle stream (net/http's connection, request
// and buffers, one handler goroutine) and nothing more.
type floor struct {
	mu    sync.Mutex
	subs  map[chan []byte]struct{}
	open  atomic.Int64
	done  chan struct{}
	ticks *time.Ticker
}

func newFloor(heartbeat time.Duration) *floor {
	f := &floor{subs: map[chan []byte]struct{}{}, done: make(chan struct{}), ticks: time.NewTicker(heartbeat)}
	go f.heartbeat()
	return f
}

func (f *floor) streams() int { return int(f.open.Load()) }

func (f *floor) stop() {
	f.ticks.Stop()
	close(f.done)
}

// heartbeat offers every stream a ping; one that has not taken the last one
// skips this one.
func (f *floor) heartbeat() {
	ping := []byte("event: ping\ndata: {}\n\n")
	for {
		select {
		case <-f.done:
			return
		case <-f.ticks.C:
		}
		f.mu.Lock()
		for c := range f.subs {
			select {
			case c <- ping:
			default:
			}
		}
		f.mu.Unlock()
	}
}

func (f *floor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := make(chan []byte, 1)
	f.mu.Lock()
	f.subs[c] = struct{}{}
	f.mu.Unlock()
	f.open.Add(1)
	defer func() {
		f.mu.Lock()
		delete(f.subs, c)
		f.mu.Unlock()
		f.open.Add(-1)
	}()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "retry: 2000\n\nid: 1\nevent: batch\ndata: {}\n\n")
	if rc.Flush() != nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case b := <-c:
			if _, err := w.Write(b); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
	}
}
