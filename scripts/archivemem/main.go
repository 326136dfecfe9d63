// Command archivemem measures the memory GET /batch/{batchId}/archive takes:
// it stores a finished batch of -rows × -variants images of -image-bytes
// each (random bytes: as incompressible as PNGs), serves the submit function
// exactly as deployed (functions/wire) over the production storage client,
// downloads the archive -runs times through the Go client, and samples this
// process's heap (runtime/metrics, every millisecond) while it streams.
//
// The Cloud Storage emulator runs in a child process (this program, started
// again with -serve-emulators), so the heap measured is the archive's
// server side, the storage client and the Go client reading the download;
// not the emulator holding the images.
//
//	go run ./scripts/archivemem [-rows 10] [-variants 3] [-image-bytes 1572864] [-runs 5]
//
// It prints a markdown table to stdout.
package main

import (
	"context"
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
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/assetgen/assetgen/functions/wire"
	"github.com/assetgen/assetgen/scripts/proc"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/client"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/platform"
)

const (
	bucket = "archivemem"
	queue  = "projects/archivemem/locations/local/queues/generate"
)

type options struct {
	rows, variants, runs int
	imageBytes           int
}

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "archivemem:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	var o options
	fs := flag.NewFlagSet("archivemem", flag.ContinueOnError)
	fs.IntVar(&o.rows, "rows", 10, "rows of the batch")
	fs.IntVar(&o.variants, "variants", 3, "variants per row")
	fs.IntVar(&o.imageBytes, "image-bytes", 3<<19, "bytes per image (Gemini's 1024×1024 PNGs are about 1.5 MiB)")
	fs.IntVar(&o.runs, "runs", 5, "archives downloaded")
	serve := fs.Bool("serve-emulators", false, "serve the emulators until stdin closes (the child process)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *serve {
		return serveEmulators()
	}
	if o.rows < 1 || o.variants < 1 || o.imageBytes < 1 || o.runs < 1 {
		return errors.New("-rows, -variants, -image-bytes and -runs must be positive")
	}
	return measure(ctx, o)
}

// serveEmulators is the child: the storage emulator and the tasks stand-in,
// their addresses on one line of stdout, until the parent closes stdin.
func serveEmulators() error {
	root, err := os.MkdirTemp("", "archivemem-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	g, err := devstack.StartGCS(devstack.GCSOptions{Addr: "127.0.0.1:0", Root: root, Buckets: []string{bucket}})
	if err != nil {
		return err
	}
	t, err := devstack.StartTasks(devstack.TasksOptions{Addr: "127.0.0.1:0", Queue: queue})
	if err != nil {
		return err
	}
	fmt.Println(g.Addr, t.Addr)
	_, _ = io.Copy(io.Discard, os.Stdin)
	t.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return g.Close(sctx)
}

// emulators starts the child and returns its addresses.
func emulators(ctx context.Context) (gcs, tasks string, stop func(), err error) {
	c, line, err := proc.Start(ctx, []string{"-serve-emulators"})
	if err != nil {
		return "", "", nil, err
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		c.Stop()
		return "", "", nil, fmt.Errorf("the emulators did not start: %q", line)
	}
	return f[0], f[1], c.Stop, nil
}

func measure(ctx context.Context, o options) error {
	gcs, tasks, stop, err := emulators(ctx)
	if err != nil {
		return err
	}
	defer stop()
	dir, err := os.MkdirTemp("", "archivemem-key-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	env := map[string]string{
		"BUCKET": bucket, "TASKS_QUEUE": queue, "TASKS_DRY_RUN_QUEUE": queue, "GENERATE_URL": "http://127.0.0.1:1/tasks/generate",
		"STORAGE_EMULATOR_HOST": gcs, "TASKS_EMULATOR_HOST": tasks, "SIGNING_KEY_FILE": dir + "/key.pem", "LOG_LEVEL": "warn",
	}
	getenv := func(k string) string { return env[k] }
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	p, err := platform.Open(ctx, cfg, platform.Options{Getenv: getenv, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer p.Close()
	h, err := wire.Submit(p)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	fmt.Fprintf(os.Stderr, "archivemem: storing %d×%d images of %d bytes\n", o.rows, o.variants, o.imageBytes)
	id, err := seed(ctx, p, o)
	if err != nil {
		return err
	}
	c := client.New("http://" + ln.Addr().String())
	images := int64(o.rows * o.variants * o.imageBytes)
	fmt.Println("| images | image bytes | archive bytes | peak heap above idle | allocated per archive | time per archive |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|")
	var peaks []uint64
	for i := range o.runs {
		r, err := download(ctx, c, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "archivemem: run %d: peak %s, allocated %s, %s\n", i+1, mib(r.peak), mib(r.allocated), r.took.Round(time.Millisecond))
		fmt.Printf("| %d | %s | %s | %s | %s | %s |\n", o.rows*o.variants, mib(uint64(images)), mib(uint64(r.size)), mib(r.peak), mib(r.allocated), r.took.Round(time.Millisecond))
		peaks = append(peaks, r.peak)
	}
	fmt.Fprintf(os.Stderr, "archivemem: largest peak %s for %s of images (%.2f%%)\n", mib(slices.Max(peaks)), mib(uint64(images)), 100*float64(slices.Max(peaks))/float64(images))
	return nil
}

// seed stores a finished batch of the local user's: its manifest, every
// image, and every row done.
func seed(ctx context.Context, p *platform.Platform, o options) (string, error) {
	m := &ledger.Manifest{Schema: 1, BatchID: batch.NewID(), Owner: auth.LocalUser, RunMode: ledger.DryRun,
		Model: "gemini-2.5-flash-image", CreatedAt: time.Now().UTC()}
	for i := range o.rows {
		m.Rows = append(m.Rows, ledger.ManifestRow{Index: i, Prompt: fmt.Sprintf("Prompt number %d: a red fox in the snow, photographed at dawn", i), Variants: o.variants, AspectRatio: "1:1"})
	}
	if err := p.Ledger.CreateManifest(ctx, m); err != nil {
		return "", err
	}
	rng := rand.NewChaCha8([32]byte{1})
	img := make([]byte, o.imageBytes)
	for i := range o.rows {
		objects := make([]string, o.variants)
		for v := range o.variants {
			_, _ = rng.Read(img)
			objects[v] = ledger.ImageObject(m.BatchID, i, v, ".png")
			if _, err := p.Ledger.PutImage(ctx, objects[v], "image/png", img); err != nil {
				return "", err
			}
		}
		_, err := p.Ledger.UpdateRow(ctx, m, i, func(r ledger.Row) (ledger.Row, error) {
			r = r.Clone()
			r.Status = ledger.Done
			for v := range r.Variants {
				r.Variants[v] = ledger.Variant{Status: ledger.Done, Object: objects[v]}
			}
			return r, nil
		})
		if err != nil {
			return "", err
		}
	}
	return m.BatchID, nil
}

type result struct {
	size            int64
	peak, allocated uint64
	took            time.Duration
}

// download fetches the archive once, sampling the heap while it streams.
func download(ctx context.Context, c *client.Client, id string) (result, error) {
	runtime.GC()
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(samples)
	idle, allocs := samples[0].Value.Uint64(), samples[1].Value.Uint64()
	var (
		peak uint64
		wg   sync.WaitGroup
	)
	done := make(chan struct{})
	wg.Go(func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	n := &counter{}
	start := time.Now()
	err := c.Archive(ctx, id, n)
	took := time.Since(start)
	close(done)
	wg.Wait()
	if err != nil {
		return result{}, err
	}
	metrics.Read(samples)
	return result{size: n.n, peak: peak - min(peak, idle), allocated: samples[1].Value.Uint64() - allocs, took: took}, nil
}

// counter counts what it is given and keeps nothing.
type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func mib(b uint64) string { return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20)) }
