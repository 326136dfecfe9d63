package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/client"
	"github.com/assetgen/assetgen/shared/ledger"
)

type options struct {
	Base              string
	Streams, Batches  int
	Rows, Variants    int
	Duration, Refresh time.Duration
	Token, TokenFile  string
}

// totals add up every stream of the run.
type totals struct {
	Batches, Finished, GaveUp           int
	Events, Connections, Drops          int
	Reconnects, Refusals, Refreshes     int
	Duplicates, Regressions, Gaps, Late int
	Errors                              []string
}

func (t *totals) add(s tracker) {
	t.Events += s.events
	t.Connections += s.connections
	t.Drops += s.drops
	t.Reconnects += max(s.connections-1, 0)
	t.Refusals += s.refusals
	t.Duplicates += s.duplicates
	t.Regressions += s.regressions
	t.Gaps += s.gaps
	if s.late {
		t.Late++
	}
}

// maxErrors bounds the error lines a run keeps.
const maxErrors = 20

func (t *totals) fail(err error) {
	if len(t.Errors) < maxErrors {
		t.Errors = append(t.Errors, err.Error())
	}
}

func soak(ctx context.Context, o options) (totals, error) {
	var (
		mu  sync.Mutex
		tot totals
	)
	deadline := time.Now().Add(o.Duration)
	g, ctx := errgroup.WithContext(ctx)
	for grp := range o.Batches {
		streams := o.Streams / o.Batches
		if grp < o.Streams%o.Batches {
			streams++
		}
		g.Go(func() error {
			// Every group runs at least one batch, then more until the deadline.
			for n := 0; n == 0 || (time.Now().Before(deadline) && ctx.Err() == nil); n++ {
				res, err := runBatch(ctx, o, grp, n, streams)
				mu.Lock()
				tot.Batches++
				for _, s := range res.streams {
					tot.add(s)
					if s.done {
						tot.Finished++
					}
				}
				tot.Refreshes += res.refreshes
				for _, e := range res.errs {
					tot.GaveUp++
					tot.fail(e)
				}
				mu.Unlock()
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	err := g.Wait()
	return tot, err
}

type batchResult struct {
	streams   []tracker
	refreshes int
	errs      []error
}

// runBatch submits one batch and follows it with n streams to done. A failed
// submit ends the run (err); a stream that gives up is recorded in errs.
func runBatch(ctx context.Context, o options, grp, seq, n int) (batchResult, error) {
	token, err := readToken(o)
	if err != nil {
		return batchResult{}, err
	}
	c := client.New(o.Base)
	c.Token = token
	req := batch.Request{RunMode: string(ledger.DryRun)}
	for r := range o.Rows {
		v := o.Variants
		req.Rows = append(req.Rows, batch.RowRequest{Prompt: fmt.Sprintf("soak group %d batch %d row %d", grp, seq, r), Variants: &v})
	}
	sub, err := submit(ctx, c, req)
	if err != nil {
		return batchResult{}, fmt.Errorf("group %d: submit: %w", grp, err)
	}
	url := newProgressURL(sub.ProgressURL)
	res := batchResult{streams: make([]tracker, n)}
	refreshCtx, stopRefresh := context.WithCancel(ctx)
	refreshed := make(chan int, 1)
	go func() {
		// Mint fresh progress URLs while the streams run: reconnects use the
		// newest, as a page refreshing its token would.
		count := 0
		defer func() { refreshed <- count }()
		t := time.NewTicker(o.Refresh)
		defer t.Stop()
		for {
			select {
			case <-refreshCtx.Done():
				return
			case <-t.C:
			}
			if tok, err := readToken(o); err == nil {
				c.Token = tok
			}
			pt, err := c.ProgressToken(refreshCtx, sub.BatchID)
			if err == nil {
				url.set(pt.ProgressURL)
				count++
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = follow(ctx, url, &res.streams[i])
		}()
	}
	wg.Wait()
	stopRefresh()
	res.refreshes = <-refreshed
	reader := client.New(o.Base)
	reader.Token = c.Token
	final, err := reader.Batch(ctx, sub.BatchID)
	for i := range res.streams {
		if errs[i] != nil {
			res.errs = append(res.errs, fmt.Errorf("batch %s stream %d: %w", sub.BatchID, i, errs[i]))
			continue
		}
		if err != nil {
			res.errs = append(res.errs, fmt.Errorf("batch %s: reading the final state: %w", sub.BatchID, err))
			continue
		}
		res.streams[i].finish(final.Rows)
	}
	return res, nil
}

// progressURL is the URL streams (re)connect to, replaced by refreshes.
type progressURL struct {
	mu  sync.Mutex
	url string
}

func newProgressURL(u string) *progressURL { return &progressURL{url: u} }

func (p *progressURL) get() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.url
}

func (p *progressURL) set(u string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.url = u
}

// maxRefusals bounds the error answers in a row a stream takes before it
// gives up.
const maxRefusals = 10

// follow streams the batch to event: done as EventSource would: a connection
// that ends early is reopened with Last-Event-ID after the suggested delay.
func follow(ctx context.Context, url *progressURL, t *tracker) error {
	lastID := ""
	refusedInARow := 0
	for {
		done, refused, err := connect(ctx, url.get(), &lastID, t)
		if done {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if refused {
			refusedInARow++
			if refusedInARow >= maxRefusals {
				return fmt.Errorf("refused %d times in a row: %w", refusedInARow, err)
			}
		} else {
			refusedInARow = 0
		}
		delay := time.Duration(min(refusedInARow+1, 10)) * 500 * time.Millisecond
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
}

// connect opens one connection and reads it until done or its end.
func connect(ctx context.Context, url string, lastID *string, t *tracker) (done, refused bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, true, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if *lastID != "" {
		req.Header.Set("Last-Event-ID", *lastID)
	}
	t.connections++
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.refusals++
		return false, true, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNoContent:
		// Finished before this connection: everything was delivered earlier,
		// or the gap check after done will say what was not. A first
		// connection that finds the batch finished saw nothing to check.
		t.done = true
		t.late = *lastID == ""
		return true, false, nil
	case resp.StatusCode != http.StatusOK:
		t.refusals++
		return false, true, fmt.Errorf("answered %d", resp.StatusCode)
	}
	events := client.NewEventReader(resp.Body, *lastID)
	for {
		ev, err := events.Next()
		if err != nil {
			t.drops++
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return false, false, err
		}
		*lastID = ev.LastID
		if err := t.event(ev); err != nil {
			return false, false, err
		}
		if ev.Type == "done" {
			return true, false, nil
		}
	}
}

// tracker is one stream's account of what it was sent.
type tracker struct {
	events, connections, drops, refusals int
	duplicates, regressions, gaps        int
	done                                 bool
	late                                 bool // opened after the batch had finished
	ids                                  map[string]bool
	versions                             map[int]int // row index → newest version seen
}

// event records one delivered event.
func (t *tracker) event(ev client.Event) error {
	t.events++
	// Only row events are judged by id: the totals and done events that
	// follow rows repeat the last row's id by design (the id is the state
	// the client holds, which they do not change).
	if ev.Type == "row" && ev.ID != "" {
		if t.ids == nil {
			t.ids = map[string]bool{}
		}
		if t.ids[ev.ID] {
			t.duplicates++
		}
		t.ids[ev.ID] = true
	}
	switch ev.Type {
	case "row":
		var r api.Row
		if err := json.Unmarshal(ev.Data, &r); err != nil {
			return fmt.Errorf("a row event that is not a row: %w", err)
		}
		if t.versions == nil {
			t.versions = map[int]int{}
		}
		if seen, ok := t.versions[r.Index]; ok && r.Version < seen {
			t.regressions++
		}
		t.versions[r.Index] = max(t.versions[r.Index], r.Version)
	case "done":
		t.done = true
	}
	return nil
}

// finish compares what the stream delivered with the batch's final rows: a
// row whose final version it never saw is a gap.
func (t *tracker) finish(rows []api.Row) {
	if t.late {
		return
	}
	for _, r := range rows {
		if seen, ok := t.versions[r.Index]; !ok || seen < r.Version {
			t.gaps++
		}
	}
}

// submit retries a submit the service asks to repeat later (429, 503) after
// its Retry-After, a few times: the soak measures streams, not the rate limit.
func submit(ctx context.Context, c *client.Client, req batch.Request) (api.SubmitResponse, error) {
	for attempt := 1; ; attempt++ {
		sub, err := c.Submit(ctx, req, "")
		var pe *client.ProblemError
		if err == nil || !errors.As(err, &pe) || (pe.Status != http.StatusTooManyRequests && pe.Status != http.StatusServiceUnavailable) || attempt == 10 {
			return sub, err
		}
		timer := time.NewTimer(2 * time.Second)
		select {
		case <-ctx.Done():
			timer.Stop()
			return sub, ctx.Err()
		case <-timer.C:
		}
	}
}
