package generate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/assetgen/assetgen/shared/imagegen"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/ledgerstore"
	"github.com/assetgen/assetgen/shared/metrics"
	"github.com/assetgen/assetgen/shared/models"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/problem"
)

// rowOutcome is how an attempt on a row ended.
type rowOutcome struct {
	row ledger.Row
	// retry is set when some variant failed retryably and another attempt should
	// make it; the row was released rather than finished.
	retry *ledger.Failure
	// superseded is set when another attempt took the row over: this one's
	// results were refused, and it wrote nothing more.
	superseded bool
}

// generateRow makes the row's open variants concurrently (bounded), records the
// results with coalesced writes, and ends with one write that records the last
// results and finishes the row — or releases it for a retry. When req ends, no
// variant starts any more, and those already started are still made and
// recorded within ctx.
func (h *handler) generateRow(ctx, req context.Context, m *ledger.Manifest, start ledgerstore.StoredRow, holder string, gen imagegen.Generator, lastAttempt bool) (rowOutcome, error) {
	claimed := h.now() // the claim has just read the row
	row := start.Row
	mr := m.Rows[row.Index]
	var open []int
	for i, v := range row.Variants {
		if !v.Status.Terminal() {
			open = append(open, i)
		}
	}
	// A previous attempt (of this round, or of the round a retry follows) may
	// have stored images and died before recording them: reuse those instead
	// of paying the model again.
	var stored map[int]string
	if row.Attempts > 1 || row.Round > 0 {
		var err error
		if stored, err = h.store.StoredImages(ctx, m.BatchID, row.Index); err != nil {
			return rowOutcome{}, fmt.Errorf("generate: listing stored images: %w", err)
		}
	}
	refs, err := h.loadRefs(ctx, mr)
	if err != nil {
		return rowOutcome{}, err
	}

	workCtx, stopStarting := context.WithCancel(ctx)
	defer stopStarting()
	stopWithRequest := context.AfterFunc(req, stopStarting)
	defer stopWithRequest()
	results := make(chan ledger.VariantResult, len(open))
	retries := make(chan ledger.Failure, len(open))
	check := &cancelCheck{h: h, m: m, row: row.Index, at: claimed, wave: h.cfg.VariantConcurrency}
	go func() {
		var g errgroup.Group
		g.SetLimit(h.cfg.VariantConcurrency)
		for _, c := range calls(m, row.Index, open, stored) {
			if workCtx.Err() != nil {
				break // cancel requested, row lost, or delivery gone: start nothing new
			}
			g.Go(func() error {
				if workCtx.Err() != nil {
					return nil // stopped while waiting for a slot
				}
				if check.cancelled(ctx) {
					stopStarting()
					return nil
				}
				var outs []outcome
				if c.batch {
					outs = h.batch(ctx, m, row.Index, c.variants, refs, gen)
				} else {
					res, retry := h.variant(ctx, m, row.Index, c.variants[0], stored, refs, gen)
					outs = []outcome{{res, retry}}
				}
				for _, o := range outs {
					if o.retry != nil {
						retries <- *o.retry
					} else {
						results <- o.res
					}
				}
				return nil
			})
		}
		_ = g.Wait()
		close(results)
	}()

	rec := recorder{h: h, m: m, row: row.Index, holder: holder, req: req, stored: start, lastWrite: h.now()}
	return rec.run(ctx, results, retries, stopStarting, lastAttempt)
}

// cancelFresh is how old the claim may be for the first variants to start on
// it without reading the row again.
const cancelFresh = 100 * time.Millisecond

// cancelCheck tells a variant about to call the model whether its row's batch
// was cancelled, so no model call starts after a cancel was recorded. The
// claim read the row: the first wave of variants, starting together right
// after it, relies on that reading; a variant that starts later (after slow
// references, or once a slot frees) reads the row first.
type cancelCheck struct {
	h   *handler
	m   *ledger.Manifest
	row int

	mu        sync.Mutex
	at        time.Time // when the claim read the row
	wave      int       // starts left that the claim's reading covers
	requested bool
}

func (c *cancelCheck) cancelled(ctx context.Context) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.requested {
		return true
	}
	if c.wave > 0 && c.h.now().Sub(c.at) < cancelFresh {
		c.wave--
		return false
	}
	c.wave = 0
	r, _, err := c.h.store.ReadRow(ctx, c.m, c.row)
	if err != nil {
		// Unknown: the model call goes ahead, as it would have before the read;
		// the row's next write still sees the cancel.
		obs.Logger(ctx).Warn("generate: reading the row before a model call failed", "error", err)
		return false
	}
	c.requested = r.CancelRequested || r.Status.Terminal()
	return c.requested
}

// call is what one model call makes: one variant, or — for a model that
// batches — several.
type call struct {
	variants []int
	batch    bool
}

// calls groups a row's open variants into model calls. A model that makes
// one image per call gets one call per variant. A model that batches
// (Imagen) gets one call for all of them — or one per variant when the row
// names a seed, so each variant's recorded seed makes that image alone.
// Variants an earlier attempt stored are reused without a call.
func calls(m *ledger.Manifest, row int, open []int, stored map[int]string) []call {
	batches := m.ModelAPI == models.GenerateImages
	var out []call
	var shared []int
	for _, v := range open {
		_, reuse := stored[v]
		switch {
		case reuse || !batches:
			out = append(out, call{variants: []int{v}})
		case m.Rows[row].Seed != nil:
			out = append(out, call{variants: []int{v}, batch: true})
		default:
			shared = append(shared, v)
		}
	}
	for len(shared) > 0 {
		n := min(len(shared), imagegen.MaxBatch)
		out = append(out, call{variants: shared[:n], batch: true})
		shared = shared[n:]
	}
	return out
}

// outcome is one variant's end in an attempt: a result, or a retry.
type outcome struct {
	res   ledger.VariantResult
	retry *ledger.Failure
}

// request is what the model is asked for variant v of a row.
func request(m *ledger.Manifest, row, v int, refs []imagegen.RefImage) imagegen.Request {
	mr := m.Rows[row]
	return imagegen.Request{
		Model: m.Model, API: m.ModelAPI, Prompt: mr.Prompt, Variant: v, AspectRatio: mr.AspectRatio,
		ImageSize: mr.ImageSize, Format: mr.OutputFormat, Seed: seedOf(m, row, v), Refs: refs,
	}
}

// seedOf is the seed variant v is asked for: the row's seed plus v; else,
// for a Gemini model, the seed derived from the prompt (what it was always
// sent); else none (Imagen picks its own, and keeps its watermark).
func seedOf(m *ledger.Manifest, row, v int) *int32 {
	mr := m.Rows[row]
	var s int32
	switch {
	case mr.Seed != nil:
		s = imagegen.SeedFor(*mr.Seed, v)
	case m.ModelAPI == models.GenerateImages:
		return nil
	default:
		s = imagegen.VariantSeed(mr.Prompt, v)
	}
	return &s
}

// recorded is a seed as the ledger records it.
func recorded(s *int32) *int64 {
	if s == nil {
		return nil
	}
	v := int64(*s)
	return &v
}

// costOf is what one image of the row costs the batch: its price, for live
// runs only.
func costOf(m *ledger.Manifest, row int) float64 {
	if m.RunMode != ledger.Live {
		return 0
	}
	return m.RowPriceUSD(row)
}

// modelLabel names the model in metrics: the placeholder serves dry runs.
func modelLabel(m *ledger.Manifest) string {
	if m.RunMode != ledger.Live {
		return "placeholder"
	}
	return m.Model
}

// variant makes one image. A retryable failure is returned as retry; anything
// else becomes the variant's result.
func (h *handler) variant(ctx context.Context, m *ledger.Manifest, row, v int, stored map[int]string, refs []imagegen.RefImage, gen imagegen.Generator) (ledger.VariantResult, *ledger.Failure) {
	cost := costOf(m, row)
	req := request(m, row, v, refs)
	if obj, ok := stored[v]; ok {
		return ledger.VariantResult{Index: v, Object: obj, CostUSD: cost, Seed: recorded(req.Seed)}, nil
	}
	if gen == nil {
		return unavailable(m, v), nil
	}
	started := time.Now()
	img, err := gen.Generate(ctx, req)
	took := time.Since(started)
	observe(m, took, err)
	log := obs.Logger(ctx).With("variant", v, "modelLatency", took)
	return h.keep(ctx, log, m, row, v, req.Seed, img, err)
}

// batch makes several variants of a row with one model call, for a model
// that batches; each image is kept (or fails) on its own. A generator that
// makes one image per call makes them one after another.
func (h *handler) batch(ctx context.Context, m *ledger.Manifest, row int, vs []int, refs []imagegen.RefImage, gen imagegen.Generator) []outcome {
	out := make([]outcome, 0, len(vs))
	b, ok := gen.(imagegen.Batcher)
	if !ok {
		for _, v := range vs {
			res, retry := h.variant(ctx, m, row, v, nil, refs, gen)
			out = append(out, outcome{res, retry})
		}
		return out
	}
	req := request(m, row, vs[0], refs)
	if len(vs) > 1 {
		req.Seed = nil // several images in one call are seeded by the row alone (see calls)
	}
	started := time.Now()
	images, err := b.GenerateBatch(ctx, req, vs)
	took := time.Since(started)
	observe(m, took, err)
	log := obs.Logger(ctx).With("variants", vs, "modelLatency", took)
	for i, v := range vs {
		var img imagegen.Image
		ierr := err
		if err == nil {
			img, ierr = images[i].Image, images[i].Err
			if ierr != nil {
				metrics.ModelFailures.WithLabelValues(modelLabel(m), imagegen.ClassOf(ierr).String()).Inc()
			}
		}
		res, retry := h.keep(ctx, log.With("variant", v), m, row, v, req.Seed, img, ierr)
		out = append(out, outcome{res, retry})
	}
	return out
}

// unavailable is a variant of a run mode this deployment does not serve.
func unavailable(m *ledger.Manifest, v int) ledger.VariantResult {
	f := ledger.Failure{Code: string(problem.FeatureDisabled), Message: fmt.Sprintf("%s generation is not configured on this deployment", m.RunMode)}
	return ledger.VariantResult{Index: v, Failure: &f}
}

// observe counts one model call in the metrics.
func observe(m *ledger.Manifest, took time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = imagegen.ClassOf(err).String()
		metrics.ModelFailures.WithLabelValues(modelLabel(m), result).Inc()
	}
	metrics.ModelLatency.WithLabelValues(modelLabel(m), result).Observe(took.Seconds())
}

// keep turns what the model answered for variant v into its result: the
// image checked and stored, or the failure (a retryable one as retry). An
// answer refused after the call (not a raster image) was still billed.
func (h *handler) keep(ctx context.Context, log *slog.Logger, m *ledger.Manifest, row, v int, seed *int32, img imagegen.Image, err error) (ledger.VariantResult, *ledger.Failure) {
	cost := costOf(m, row)
	billed := 0.0
	if err == nil {
		billed = cost
		if img, err = imagegen.Checked(img); err != nil {
			metrics.ModelFailures.WithLabelValues(modelLabel(m), imagegen.ClassOf(err).String()).Inc()
		}
	}
	if err != nil {
		f := failure(err)
		log.Warn("generate: variant failed", "code", f.Code, "class", imagegen.ClassOf(err).String(), "model", modelLabel(m), "error", err)
		if imagegen.ClassOf(err).Retryable() {
			return ledger.VariantResult{}, &f
		}
		return ledger.VariantResult{Index: v, Failure: &f, CostUSD: billed, Seed: recorded(seed)}, nil
	}
	name := ledger.ImageObject(m.BatchID, row, v, extension(img.MIMEType))
	created, err := h.store.PutImage(ctx, name, img.MIMEType, img.Data)
	if err != nil {
		log.Warn("generate: storing image failed", "error", err)
		return ledger.VariantResult{}, &ledger.Failure{Code: string(problem.CodeOf(err)), Message: "storing the image failed"}
	}
	log.Debug("generate: variant stored", "object", name, "created", created, "bytes", len(img.Data))
	return ledger.VariantResult{Index: v, Object: name, CostUSD: cost, Seed: recorded(seed)}, nil
}

func (h *handler) loadRefs(ctx context.Context, mr ledger.ManifestRow) ([]imagegen.RefImage, error) {
	out := make([]imagegen.RefImage, 0, len(mr.Refs))
	for _, ref := range mr.Refs {
		b, err := h.store.ReadObject(ctx, ref.Object)
		if err != nil {
			return nil, fmt.Errorf("generate: reading reference %s: %w", ref.SHA256, err)
		}
		out = append(out, imagegen.RefImage{MIMEType: ref.MIMEType, Data: b})
	}
	return out, nil
}

func extension(mime string) string {
	switch strings.ToLower(mime) {
	case "image/jpeg":
		return ".jpg"
	case "image/webp":
		return ".webp"
	default:
		return ".png"
	}
}

// recorder writes a row's results. Cloud Storage sustains one write per second
// per object, so results closer than MinWriteGap are coalesced into one write,
// and the last results share the finishing write.
//
// Each write is conditioned on the generation of the recorder's own last write
// (the claim, at first) and applied to the row as it wrote it, without reading
// the row again: while the attempt holds the lease, nobody else writes the row
// but a cancel request or a takeover, and either makes the write meet a newer
// generation, which is then read and judged (a cancel is honoured, a lost lease
// refused).
type recorder struct {
	h      *handler
	m      *ledger.Manifest
	row    int
	holder string
	req    context.Context
	// stored is the row as this attempt last wrote it, at its generation.
	stored    ledgerstore.StoredRow
	lastWrite time.Time
	pending   []ledger.VariantResult
}

func (rec *recorder) run(ctx context.Context, results <-chan ledger.VariantResult, retries <-chan ledger.Failure, stopStarting func(), lastAttempt bool) (rowOutcome, error) {
	var timer *time.Timer
	var flush <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return rowOutcome{}, problem.Wrap(problem.Internal, ctx.Err(), "the attempt ran out of time")
		case res, ok := <-results:
			if !ok {
				return rec.finish(ctx, retries, lastAttempt)
			}
			rec.pending = append(rec.pending, res)
			if flush == nil {
				// Variants started together finish close together: wait up to one
				// write gap for the others, so they share the row's final write. A
				// write spent on the first would push that final write a whole gap
				// later; only a straggler gets an intermediate write.
				timer = time.NewTimer(max(rec.h.cfg.MinWriteGap, time.Until(rec.lastWrite.Add(rec.h.cfg.MinWriteGap))))
				flush = timer.C
			}
		case <-flush:
			flush = nil
			row, err := rec.write(ctx, func(r ledger.Row) (ledger.Row, error) {
				return ledger.RecordVariants(r, rec.h.op(ctx, rec.holder), rec.holder, rec.pending)
			})
			if errors.Is(err, ledger.ErrLeaseLost) {
				stopStarting()
				return rowOutcome{superseded: true}, nil
			}
			if err != nil {
				// Not fatal: the results stay pending and go out with the next write.
				obs.Logger(ctx).Warn("generate: recording variants failed; will retry", "error", err)
				continue
			}
			rec.pending = nil
			if row.CancelRequested {
				stopStarting()
			}
		}
	}
}

// finish writes the last results together with the row's end: finished, or
// released for a retry when a variant failed retryably and attempts remain.
func (rec *recorder) finish(ctx context.Context, retries <-chan ledger.Failure, lastAttempt bool) (rowOutcome, error) {
	var retry *ledger.Failure
	select {
	case f := <-retries:
		retry = &f
	default:
	}
	if retry == nil && rec.req.Err() != nil {
		// The delivery ended: variants it did not start are another attempt's.
		retry = &ledger.Failure{Code: string(problem.Internal), Message: "the delivery ended before every variant was made"}
	}
	if err := sleepUntil(ctx, rec.lastWrite.Add(rec.h.cfg.MinWriteGap)); err != nil {
		return rowOutcome{}, problem.Wrap(problem.Internal, err, "the attempt ran out of time")
	}
	row, err := rec.write(ctx, func(r ledger.Row) (ledger.Row, error) {
		if r.Status.Terminal() {
			return r, ledger.ErrNoChange
		}
		op := rec.h.op(ctx, rec.holder)
		next, err := ledger.RecordVariants(r, op, rec.holder, rec.pending)
		if errors.Is(err, ledger.ErrNoChange) {
			next, err = r, nil
		}
		if err != nil {
			return r, err
		}
		if retry != nil && unfinished(next) && !lastAttempt && !next.CancelRequested {
			return ledger.Release(next, op, rec.holder, *retry)
		}
		if retry != nil && lastAttempt {
			final := ledger.GaveUp(*retry, next.Attempts)
			return ledger.Finish(next, op, rec.holder, &final)
		}
		return ledger.Finish(next, op, rec.holder, retry)
	})
	if errors.Is(err, ledger.ErrLeaseLost) {
		return rowOutcome{superseded: true}, nil
	}
	if err != nil {
		return rowOutcome{}, fmt.Errorf("generate: recording the row: %w", err)
	}
	out := rowOutcome{row: row}
	if !row.Status.Terminal() {
		out.retry = retry
	}
	return out, nil
}

// unfinished reports whether some variant of r is still open.
func unfinished(r ledger.Row) bool {
	for _, v := range r.Variants {
		if !v.Status.Terminal() {
			return true
		}
	}
	return false
}

func (rec *recorder) write(ctx context.Context, fn func(ledger.Row) (ledger.Row, error)) (ledger.Row, error) {
	stored, err := rec.h.store.UpdateRowFrom(ctx, rec.m, rec.row, rec.stored, fn)
	if err == nil {
		rec.stored = stored
		rec.lastWrite = rec.h.now()
	}
	return stored.Row, err
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
