// Command budgetbench measures how many live submits per second the budget
// sustains when Cloud Storage's write limit is enforced: it drives the
// submit path's budget step (budget.Store.Reserve: the user's account, then
// the deployment's daily cap) from -workers concurrent submitters, each
// submit by a user of its own so only the cap is shared, against the
// in-process Cloud Storage emulator with devstack.Faults answering 429 to a
// second write of one object within -write-limit (Cloud Storage's sustained
// one write per second per object). Every reserved batch is settled
// -settle-after later, as a finished batch is, so the cap's shards take the
// settlement writes too. One run per shard count in -shards, each on a fresh
// emulator for -duration.
//
//	go run ./scripts/budgetbench [-shards 1,16] [-workers 32] [-duration 20s]
//
// It prints its progress to stderr and a markdown table to stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/cloud"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/devstack"
)

type options struct {
	shards      []int
	workers     int
	duration    time.Duration
	writeLimit  time.Duration
	settleAfter time.Duration
	patience    time.Duration
}

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "budgetbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	var o options
	fs := flag.NewFlagSet("budgetbench", flag.ContinueOnError)
	shards := fs.String("shards", "1,16", "comma-separated shard counts of the daily cap to measure")
	fs.IntVar(&o.workers, "workers", 32, "concurrent submitters")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "how long each shard count is driven")
	fs.DurationVar(&o.writeLimit, "write-limit", time.Second, "least time between two writes of one object (0: no limit)")
	fs.DurationVar(&o.settleAfter, "settle-after", 2*time.Second, "how long after its reservation a batch is settled")
	fs.DurationVar(&o.patience, "patience", 10*time.Second, "BUDGET_PATIENCE of the store")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, s := range strings.Split(*shards, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-shards: want positive integers, got %q", s)
		}
		o.shards = append(o.shards, n)
	}
	fmt.Println("| shards | workers | live submits/s | p50 | p95 | refused (contended) | settled/s | 429s |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, n := range o.shards {
		r, err := measure(ctx, o, n)
		if err != nil {
			return err
		}
		fmt.Printf("| %d | %d | %.1f | %s | %s | %d | %.1f | %d |\n", n, o.workers, r.perSecond, r.p50.Round(time.Millisecond),
			r.p95.Round(time.Millisecond), r.contended, r.settledPerSecond, r.status429)
	}
	return nil
}

type result struct {
	perSecond, settledPerSecond float64
	p50, p95                    time.Duration
	contended                   int64
	status429                   int64
}

// open starts a fresh emulator behind faults and the production clients on it.
func open(ctx context.Context, faults *devstack.Faults) (*cloud.Clients, func(), error) {
	root, err := os.MkdirTemp("", "budgetbench-")
	if err != nil {
		return nil, nil, err
	}
	const bucket = "budgetbench"
	g, err := devstack.StartGCS(devstack.GCSOptions{Addr: "127.0.0.1:0", Root: root + "/gcs", Buckets: []string{bucket}, Wrap: faults.Wrap})
	if err != nil {
		os.RemoveAll(root)
		return nil, nil, err
	}
	env := map[string]string{"BUCKET": bucket, "STORAGE_EMULATOR_HOST": g.Addr, "SIGNING_KEY_FILE": root + "/key.pem"}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err == nil {
		var c *cloud.Clients
		if c, err = cloud.Open(ctx, cfg); err == nil {
			return c, func() {
				_ = c.Close()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = g.Close(sctx)
				os.RemoveAll(root)
			}, nil
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = g.Close(sctx)
	os.RemoveAll(root)
	return nil, nil, err
}

type reserved struct {
	user, batch string
	at          time.Time
}

func measure(ctx context.Context, o options, shards int) (result, error) {
	faults := devstack.NewFaults(1)
	faults.SetWriteLimit(o.writeLimit)
	c, closeAll, err := open(ctx, faults)
	if err != nil {
		return result{}, err
	}
	defer closeAll()
	// A cap no run can reach: what is measured is the write rate, not refusals.
	store := budget.NewStore(c.Bucket, budget.NewLimits(c.Bucket, 100, time.Minute), budget.Total{LimitUSD: 1e6, Shards: shards}, o.patience)
	day := budget.Day(time.Now())
	price := budget.FromUSD(0.039) * 2

	fmt.Fprintf(os.Stderr, "budgetbench: %d shard(s), %d workers, %s\n", shards, o.workers, o.duration)
	var (
		mu        sync.Mutex
		latencies []time.Duration
		contended atomic.Int64
		settled   atomic.Int64
		seq       atomic.Int64
	)
	toSettle := make(chan reserved, 4096)
	start := time.Now()
	end := start.Add(o.duration)
	var settlers sync.WaitGroup
	for range o.workers {
		settlers.Go(func() {
			for r := range toSettle {
				if d := time.Until(r.at.Add(o.settleAfter)); d > 0 {
					time.Sleep(d) // a batch settles when it finishes, some time after it was accepted
				}
				if _, err := store.Settle(ctx, r.user, day, r.batch, price/2); err == nil {
					settled.Add(1)
				}
			}
		})
	}
	var workers sync.WaitGroup
	for range o.workers {
		workers.Go(func() {
			for time.Now().Before(end) {
				n := seq.Add(1)
				user, id := fmt.Sprintf("user-%d", n), fmt.Sprintf("batch-%d", n)
				t0 := time.Now()
				_, _, err := store.Reserve(ctx, user, day, id, price)
				d := time.Since(t0)
				switch {
				case err == nil:
					mu.Lock()
					latencies = append(latencies, d)
					mu.Unlock()
					toSettle <- reserved{user: user, batch: id, at: time.Now()}
				case errors.Is(err, budget.ErrContended):
					contended.Add(1)
					// A refused reservation leaves what it took to the caller.
					_, _ = store.Release(ctx, user, day, id)
				default:
					fmt.Fprintln(os.Stderr, "budgetbench: reserve:", err)
					_, _ = store.Release(ctx, user, day, id)
				}
			}
		})
	}
	workers.Wait()
	elapsed := time.Since(start)
	settledInRun := settled.Load()
	close(toSettle)
	settlers.Wait()

	slices.Sort(latencies)
	r := result{contended: contended.Load(), status429: faults.Counts().Status429}
	r.perSecond = float64(len(latencies)) / elapsed.Seconds()
	r.settledPerSecond = float64(settledInRun) / elapsed.Seconds()
	if len(latencies) > 0 {
		r.p50 = latencies[len(latencies)/2]
		r.p95 = latencies[len(latencies)*95/100]
	}
	return r, nil
}
