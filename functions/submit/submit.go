package submit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/batchindex"
	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/flags"
	"github.com/assetgen/assetgen/shared/idempotency"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/metrics"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/problem"
	"github.com/assetgen/assetgen/shared/queue"
	"github.com/assetgen/assetgen/shared/refs"
)

// HeaderIdempotencyKey makes a submit safe to retry.
const HeaderIdempotencyKey = "Idempotency-Key"

func (s *server) handleSubmit() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := s.submit(w, r)
		if err != nil {
			metrics.Submits.WithLabelValues("unknown", string(problem.CodeOf(err))).Inc()
			problem.Write(w, r, err)
			return
		}
		obs.Annotate(r.Context(), "batchId", resp.BatchID)
		metrics.Submits.WithLabelValues(resp.RunMode, "accepted").Inc()
		w.Header().Set("Location", resp.StatusURL)
		api.WriteJSON(w, http.StatusAccepted, resp)
	})
}

// submission is one submit in progress: what it checked, and how to undo what
// it wrote should a later step fail.
type submission struct {
	user     string
	key      string
	bodyHash string
	spec     batch.Spec
	model    string
	price    float64
	estimate budget.Micros
	// day is the UTC day whose budget the batch reserves on: today, or the
	// day the key's first attempt fixed.
	day string
	// retryOf is the batch an earlier attempt with the same key began.
	retryOf string
	// claimedID is the batch the key is bound to, once claimed; created says
	// whether this request's claim made the record (only it may forget it).
	claimedID string
	created   bool
	refs      []refs.RowRefs
	// account is the caller's budget after this batch, for the answer.
	account *budget.Account
	// m is the batch once recorded; existed says an earlier attempt with the
	// key recorded it.
	m       *ledger.Manifest
	existed bool
	// count is the caller's queued rows being counted, until the cap is
	// applied; countBeside says the batch is written while it is counted.
	count       *queuedCount
	countBeside bool
	// queuing is set once a task of the batch may exist: from then on a
	// failure cancels the batch through the ledger instead of undoing it.
	queuing bool
	undo    []func(context.Context)
}

// writeTimeout bounds a submit's writes. They run detached from the client's
// connection: a client that goes away mid-submit must not cut a batch in half.
const writeTimeout = 30 * time.Second

// repairTimeout bounds what a failed submit does about what it wrote.
const repairTimeout = 15 * time.Second

// submit runs the checks in their fixed order — decode and validate, typed
// confirmation, feature flags, queued-row cap, budget — before anything is
// written (the cap may wait until the batch's first writes: beforeWrites);
// then it records and queues the batch (write).
func (s *server) submit(w http.ResponseWriter, r *http.Request) (resp api.SubmitResponse, err error) {
	ctx := r.Context()
	p, _ := auth.From(ctx)
	sub := &submission{user: p.UserID, key: r.Header.Get(HeaderIdempotencyKey), day: budget.Day(s.now())}
	if err := checkKey(sub.key); err != nil {
		return resp, err
	}
	body, err := api.ReadBody(w, r, api.MaxBody)
	if err != nil {
		return resp, err
	}
	sub.bodyHash = idempotency.BodyHash(body)
	var req batch.Request
	if sub.spec, req, err = s.validate(body); err != nil {
		return resp, err
	}
	if err := batch.CheckConfirm(req); err != nil {
		return resp, err
	}
	// The flags are a cached copy; a batch they allow is counted at once,
	// beside the key's look-up and whatever else comes before its writes.
	flagsErr := s.checkFlags(ctx, sub)
	if flagsErr == nil {
		sub.count = s.startCount(ctx, sub.user)
	}
	// A retry of an accepted submit gets its batch back before any other check:
	// the batch exists and is reserved, whatever the flags or the budget say now.
	if sub.key != "" {
		rec, live, err := s.Keys.Peek(ctx, sub.user, sub.key)
		switch {
		case err != nil:
			sub.count.drop()
			return resp, fmt.Errorf("submit: reading the idempotency key: %w", err)
		case live && rec.BodySHA256 != sub.bodyHash:
			sub.count.drop()
			return resp, conflict()
		case live && rec.Committed:
			sub.count.drop()
			sub.day = budgetDay(rec)
			return s.replay(ctx, r, sub, rec.BatchID)
		case live:
			sub.count.drop()
			sub.count = nil
			sub.retryOf = rec.BatchID // an earlier attempt got part-way: finish it
		}
	}
	model, _ := s.cfg.Rules.Models.Lookup(sub.spec.Model)
	sub.model, sub.price = model.Name, sub.spec.PriceUSD
	// Dry runs report what the batch would cost live; only live runs reserve
	// it. Each row costs its own size's price per image.
	for _, r := range sub.spec.Rows {
		sub.estimate += budget.FromUSD(r.PriceUSD) * budget.Micros(r.Variants)
	}
	if sub.retryOf == "" {
		if flagsErr != nil {
			return resp, flagsErr
		}
		if sh := sub.spec.Sheet; sh != nil {
			if err := s.sheets.allow(ctx, sub.user, sh.SpreadsheetID); err != nil {
				return resp, s.capFirst(ctx, sub, err)
			}
		}
		if sub.spec.RunMode == ledger.Live {
			if err := s.preflight(ctx, sub); err != nil {
				return resp, s.capFirst(ctx, sub, err)
			}
		}
	}
	rctx, err := s.checkUploads(ctx, req, sub.spec, sub.user)
	if err != nil {
		return resp, s.capFirst(ctx, sub, err)
	}
	if sub.refs, err = s.resolveRefs(rctx, req, sub.spec, min(batch.MaxMergedRefs, model.MaxRefs)); err != nil {
		return resp, s.capFirst(ctx, sub, err)
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	if err := s.beforeWrites(wctx, sub); err != nil {
		return resp, err
	}
	return s.write(wctx, r, sub)
}

// write claims the key, reserves the budget, records the batch, queues its
// rows and commits the key. A failure before any task may exist undoes every
// write, so no partial batch, reservation or key is left behind. Once a task
// may exist — it may run at once, even while this submit still runs — nothing
// is undone: the batch is cancelled through the ledger instead, completion
// settles what its tasks made, and the key keeps naming the batch, so a retry
// with it gets the same batch back.
func (s *server) write(ctx context.Context, r *http.Request, sub *submission) (resp api.SubmitResponse, err error) {
	defer func() {
		if sub.countBeside {
			s.hints.end(sub.user)
		}
		if err != nil {
			err = s.repair(ctx, r, sub, err)
		}
	}()
	batchID, committed, err := s.claim(ctx, sub)
	if err != nil {
		return resp, err
	}
	if committed {
		return s.replay(ctx, r, sub, batchID)
	}
	m, err := s.record(ctx, sub, batchID)
	// A batch written while it was counted is held to the cap now, before
	// any of its tasks can exist; the cap's refusal is the answer even when
	// a write failed too, and either way the rollback removes the batch.
	if cerr := s.besideWrites(ctx, sub, batchID); cerr != nil {
		return resp, cerr
	}
	if err != nil {
		return resp, err
	}
	sub.m = m
	// A batch an earlier attempt recorded is answered as it stands, and only
	// its rows still to run are queued (again: task names are per row, so a
	// row already queued is not queued twice).
	var rows []ledger.Row
	if sub.existed {
		if rows, err = s.Store.Rows(ctx, m); err != nil {
			return resp, fmt.Errorf("submit: reading the rows of the batch: %w", err)
		}
	}
	if sub.key != "" {
		err := s.Keys.BeginQueuing(ctx, sub.user, sub.key, m.BatchID)
		if errors.Is(err, idempotency.ErrLost) {
			// The key's first attempt failed and rolled the batch back meanwhile.
			return resp, problem.Wrap(problem.GCSWriteFailed, err, "another request with this Idempotency-Key failed meanwhile; retry with the same key")
		}
		if err != nil {
			return resp, fmt.Errorf("submit: marking the idempotency key: %w", err)
		}
	}
	sub.queuing = true
	// The caller's budget goes into the answer; a live batch's reservation
	// returned it already, a dry run's is read while the tasks are queued.
	var tasks []queue.Task
	for i, row := range m.Rows {
		if rows == nil || !rows[i].Status.Terminal() {
			tasks = append(tasks, queue.Task{BatchID: m.BatchID, Row: row.Index})
		}
	}
	if err := s.enqueue(ctx, sub, tasks); err != nil {
		return resp, fmt.Errorf("submit: queueing the batch: %w", err)
	}
	if err := s.commitKey(ctx, sub); err != nil {
		return resp, err
	}
	sub.undo = nil
	if !sub.existed && s.cfg.MaxQueuedRows > 0 {
		s.hints.accepted(sub.user, len(m.Rows), s.now())
	}
	obs.Logger(ctx).Info("submit: batch accepted", "batchId", m.BatchID, "rows", len(m.Rows), "images", m.Images(),
		"runMode", m.RunMode, "estimateUsd", m.EstimateUSD, "retried", sub.existed)
	return s.answer(r, m, sub.account, rows), nil
}

// validate decodes and validates the body, reporting decoding and validation
// errors together.
func (s *server) validate(body []byte) (batch.Spec, batch.Request, error) {
	req, fieldErrs, err := batch.Decode(body)
	if err != nil {
		return batch.Spec{}, req, err
	}
	spec, err := batch.Validate(req, s.cfg.Rules)
	if len(fieldErrs) == 0 {
		return spec, req, err
	}
	var pe *problem.Error
	if errors.As(err, &pe) {
		fieldErrs = append(fieldErrs, pe.Fields...)
	}
	return batch.Spec{}, req, &problem.Error{
		Code: problem.ValidationFailed, Detail: fmt.Sprintf("%d field(s) are invalid", len(fieldErrs)), Fields: fieldErrs,
	}
}

func (s *server) checkFlags(ctx context.Context, sub *submission) error {
	if !s.Flags.Enabled(ctx, flags.BatchAPI, sub.user) {
		return problem.New(problem.FeatureDisabled, "the batch API is not enabled for this account yet")
	}
	if sub.spec.RunMode == ledger.Live {
		if !s.cfg.LiveAvailable {
			return problem.New(problem.FeatureDisabled, "live generation is not configured on this deployment")
		}
		if !s.Flags.Enabled(ctx, flags.LiveRuns, sub.user) {
			return problem.New(problem.FeatureDisabled, "live runs are switched off; dry runs still work")
		}
	}
	return nil
}

// resolveRefs fetches, checks and stores the batch's reference images, and
// merges them per row under limit (only what the limit keeps is fetched).
// Nothing of the batch is written yet: a bad or slow reference fails the
// submit whole.
func (s *server) resolveRefs(ctx context.Context, req batch.Request, spec batch.Spec, limit int) ([]refs.RowRefs, error) {
	rows := make([][]string, len(spec.Rows))
	any := false
	for i, r := range spec.Rows {
		rows[i] = r.RefURLs
		any = any || len(r.RefURLs) > 0
	}
	if !any {
		return nil, nil
	}
	out, st, err := s.Refs.Resolve(ctx, s.Bucket, rows, limit, batch.RefLocator(req))
	if err != nil {
		// How many fetches wait on the instance tells a slow host from a busy instance.
		obs.Logger(ctx).Info("submit: references not resolved", "code", problem.CodeOf(err), "queuedFetches", s.Refs.Queued())
		return nil, err
	}
	metrics.RefsSubmitted.Add(float64(st.Submitted))
	metrics.RefsUnique.Add(float64(st.UniqueContents))
	metrics.RefsUploaded.Add(float64(st.Uploaded))
	obs.Logger(ctx).Info("submit: references resolved", "submitted", st.Submitted, "distinctUrls", st.DistinctURLs,
		"uniqueContents", st.UniqueContents, "uploaded", st.Uploaded, "dedupRate", st.DedupRate())
	return out, nil
}

// preflight refuses a live batch the budget cannot cover, before any write. The
// reservation later enforces the same limit atomically. The caller's budget
// and the deployment's are read at once; the caller's refusal comes first.
func (s *server) preflight(ctx context.Context, sub *submission) error {
	var g errgroup.Group
	var total error
	g.Go(func() error {
		total = s.preflightTotal(ctx, sub)
		return nil
	})
	acct, err := s.Budgets.Get(ctx, sub.user, sub.day)
	_ = g.Wait()
	if err != nil {
		return fmt.Errorf("submit: reading the budget: %w", err)
	}
	if t := acct.Sum(); sub.estimate > t.Remaining {
		return exceeded(sub.estimate, t)
	}
	return total
}

func exceeded(estimate budget.Micros, t budget.Totals) error {
	return &problem.Error{
		Code:   problem.BudgetExceeded,
		Detail: fmt.Sprintf("this batch is estimated at $%.3f; $%.3f of today's $%.2f remains", estimate.USD(), t.Remaining.USD(), t.Limit.USD()),
		Extra: map[string]any{
			"limit": limitUser, "estimateUsd": estimate.USD(), "limitUsd": t.Limit.USD(), "reservedUsd": t.Reserved.USD(),
			"spentUsd": t.Spent.USD(), "remainingUsd": t.Remaining.USD(),
		},
	}
}

// checkKey refuses an Idempotency-Key header that is set but malformed.
func checkKey(key string) error {
	if key == "" || idempotency.ValidKey(key) {
		return nil
	}
	return &problem.Error{Code: problem.ValidationFailed, Detail: "the Idempotency-Key header must be 1 to 255 printable ASCII characters",
		Fields: []problem.FieldError{{Field: "/headers/Idempotency-Key", Code: problem.FieldInvalidValue, Detail: "1 to 255 printable ASCII characters"}}}
}

func conflict() error {
	return problem.New(problem.IdempotencyConflict, "this Idempotency-Key was used with a different request body in the last 24 hours")
}

// claim picks the batch id. With an Idempotency-Key, the key's record decides:
// a new key binds a new id and today's budget day; an uncommitted record is
// finished under its id and on its day; a committed one (a concurrent twin got
// there first) is answered again.
func (s *server) claim(ctx context.Context, sub *submission) (id string, committed bool, err error) {
	id = batch.NewID()
	if sub.key == "" {
		return id, false, nil
	}
	rec, created, err := s.Keys.Claim(ctx, sub.user, sub.key, idempotency.Record{BodySHA256: sub.bodyHash, BatchID: id, BudgetDay: sub.day})
	if errors.Is(err, idempotency.ErrConflict) {
		return "", false, conflict()
	}
	if err != nil {
		return "", false, fmt.Errorf("submit: claiming the idempotency key: %w", err)
	}
	sub.claimedID, sub.created, sub.day = rec.BatchID, created, budgetDay(rec)
	return rec.BatchID, rec.Committed, nil
}

// budgetDay is the day a key's batch reserves on: the one its first claim
// fixed (records written before the day was stored: the day they were made).
func budgetDay(rec idempotency.Record) string {
	if rec.BudgetDay != "" {
		return rec.BudgetDay
	}
	return budget.Day(rec.CreatedAt)
}

// replay answers a retry of an accepted submit with its batch as it stands.
func (s *server) replay(ctx context.Context, r *http.Request, sub *submission, batchID string) (api.SubmitResponse, error) {
	m, err := s.Store.Manifest(ctx, batchID)
	if err != nil {
		return api.SubmitResponse{}, fmt.Errorf("submit: reading the batch of the idempotency key: %w", err)
	}
	rows, err := s.Store.Rows(ctx, m)
	if err != nil {
		return api.SubmitResponse{}, fmt.Errorf("submit: reading the rows of the batch: %w", err)
	}
	acct, _ := s.Budgets.Get(ctx, sub.user, sub.day)
	return s.answer(r, m, &acct, rows), nil
}

// record reserves the budget (live runs) and writes the manifest.
func (s *server) record(ctx context.Context, sub *submission, batchID string) (*ledger.Manifest, error) {
	m := &ledger.Manifest{
		Schema: 1, BatchID: batchID, Owner: sub.user, RunMode: sub.spec.RunMode, Model: sub.model, ModelAPI: sub.spec.ModelAPI,
		CreatedAt: s.now().UTC(), RequestID: obs.RequestID(ctx), PriceUSD: sub.price, EstimateUSD: sub.estimate.USD(),
		Notify: ledger.Notify{WebhookURL: sub.spec.WebhookURL},
	}
	if sh := sub.spec.Sheet; sh != nil {
		m.Notify.SpreadsheetID, m.Notify.SheetRange = sh.SpreadsheetID, sh.Range
	}
	for i, row := range sub.spec.Rows {
		price := row.PriceUSD
		mr := ledger.ManifestRow{
			Index: row.Index, ID: row.ID, Prompt: row.Prompt, Variants: row.Variants, AspectRatio: row.AspectRatio,
			ImageSize: row.ImageSize, OutputFormat: row.OutputFormat, Seed: row.Seed, PriceUSD: &price,
		}
		if i < len(sub.refs) {
			mr.Refs, mr.DroppedRefs = sub.refs[i].Refs, sub.refs[i].Dropped
		}
		m.Rows = append(m.Rows, mr)
	}
	if sub.spec.RunMode == ledger.Live {
		m.BudgetDay = sub.day
		if err := s.reserve(ctx, sub, batchID); err != nil {
			return nil, err
		}
	}
	// Undone even if the write's outcome is unknown (it may have landed), but
	// never a manifest an earlier attempt wrote. The batch leaves its owner's
	// list before its objects go.
	index := batchindex.New(s.Bucket)
	var listed int64 // the entry's generation, when this call made it
	undo := func(ctx context.Context) {
		if err := index.RemoveAt(ctx, m.Owner, batchID, listed); err != nil {
			obs.Logger(ctx).Error("submit: rollback could not unlist the batch; the lifecycle rule of users/ removes the entry", "batchId", batchID, "error", err)
		}
		if err := s.Store.DeleteBatch(ctx, batchID); err != nil {
			obs.Logger(ctx).Error("submit: rollback failed; the housekeeping job removes what is left", "batchId", batchID, "error", err)
		}
	}
	batchUndo := len(sub.undo)
	sub.undo = append(sub.undo, undo)
	// The accepted state, the batch's entry in its owner's list and its
	// queued-row marker are written beside the manifest, in the same round
	// trip, and before any task exists: no row can start before the state,
	// and completion always finds the marker to clear. The entry and the
	// marker are create-once under names the batch id fixes, so a retried
	// submit lists and counts the batch once.
	var g errgroup.Group
	var lerr, merr error
	var marked func(context.Context)
	g.Go(func() error { return s.accept(ctx, m) })
	g.Go(func() error {
		listed, lerr = index.Add(ctx, batchindex.FromManifest(m))
		return nil
	})
	g.Go(func() error {
		marked, merr = s.markQueued(ctx, m)
		return nil
	})
	err := s.Store.CreateManifest(ctx, m)
	aerr := g.Wait()
	// A marker whose write failed is undone with the batch, unless the
	// batch is an earlier attempt's: the marker may be that attempt's too.
	if marked != nil && (merr == nil || !errors.Is(err, ledger.ErrExists)) {
		sub.undo = append(sub.undo, marked)
	}
	if err == nil && aerr != nil {
		return nil, fmt.Errorf("submit: recording the accepted state: %w", aerr)
	}
	if err == nil && merr != nil {
		return nil, merr
	}
	if errors.Is(err, ledger.ErrExists) {
		// A retry of a submit that got this far: same key, same body. The
		// batch is not this call's to undo (a marker it made still is).
		sub.undo = slices.Delete(sub.undo, batchUndo, batchUndo+1)
		sub.existed = true
		if merr != nil {
			return nil, merr
		}
		if lerr != nil {
			// The batch stands unlisted; a retry with the key lists it.
			return nil, fmt.Errorf("submit: %w", lerr)
		}
		return s.Store.Manifest(ctx, batchID)
	}
	if err != nil {
		return nil, fmt.Errorf("submit: recording the batch: %w", err)
	}
	if lerr != nil {
		return nil, fmt.Errorf("submit: %w", lerr)
	}
	return m, nil
}

// reserve holds sub's estimate on the caller's budget for the day, under the
// reservation id (a batch's id, or a retry round's), and adds its release to
// the undo list when the reservation is this call's to undo.
func (s *server) reserve(ctx context.Context, sub *submission, id string) error {
	acct, created, err := s.Budgets.Reserve(ctx, sub.user, sub.day, id, sub.estimate)
	sub.account = &acct
	release := func(ctx context.Context) {
		if _, err := s.Budgets.Release(ctx, sub.user, sub.day, id); err != nil {
			obs.Logger(ctx).Error("submit: releasing the reservation failed; it holds that budget until the UTC day ends", "reservation", id, "error", err)
		}
	}
	// Only the reservation this call made is this call's to release; one
	// whose write failed without an answer may have landed all the same, so
	// it is released too (releasing nothing changes nothing). An id no
	// earlier attempt used is this call's whatever Reserve could tell: its
	// reservation may have been found only after the patience ran out. A
	// refusal by the user's budget wrote nothing; one by the cap leaves
	// what it took for this rollback, which runs only when no other
	// attempt can be counting on it.
	own := sub.key == "" || sub.created
	byUser, byCap := errors.Is(err, budget.ErrExceeded), errors.Is(err, budget.ErrTotalExceeded)
	if created || !byUser && (own || err != nil && !byCap) {
		sub.undo = append(sub.undo, release)
	}
	switch {
	case errors.Is(err, budget.ErrTotalExceeded):
		return totalExceeded(sub.estimate, err)
	case errors.Is(err, budget.ErrExceeded):
		acct, _ := s.Budgets.Get(ctx, sub.user, sub.day)
		return exceeded(sub.estimate, acct.Sum())
	case errors.Is(err, budget.ErrContended):
		return &problem.Error{Code: problem.BudgetContended, Detail: "too many submits at once for this account; retry shortly", RetryAfter: 2, Err: err}
	case err != nil:
		return fmt.Errorf("submit: reserving the budget: %w", err)
	}
	return nil
}

// accept records the batch's first state and its snapshot, in one round
// trip. A retried submit finds the state there and leaves it.
func (s *server) accept(ctx context.Context, m *ledger.Manifest) error {
	st, err := ledger.AcceptBatch(nil, m, ledger.Op{Actor: "submit/" + m.Owner, RequestID: m.RequestID, Now: s.now().UTC()})
	if err != nil {
		return err
	}
	_, err = s.Store.Begin(ctx, st)
	return err
}

// enqueue creates tasks of sub's batch at once (their names are
// deterministic, so a retried request cannot queue a row twice) and, when the
// answer still lacks the caller's budget (a dry run's: a live run's
// reservation returned it), reads it beside them.
func (s *server) enqueue(ctx context.Context, sub *submission, tasks []queue.Task) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, t := range tasks {
		g.Go(func() error { return s.Queue.For(sub.m.RunMode).Enqueue(gctx, t) })
	}
	if sub.account == nil {
		g.Go(func() error {
			if acct, err := s.Budgets.Get(gctx, sub.user, sub.day); err == nil {
				sub.account = &acct
			}
			return nil
		})
	}
	return g.Wait()
}

// repair deals with what a failed submit wrote, on a context of its own (the
// write phase's may be what ran out), and returns the error to answer.
func (s *server) repair(ctx context.Context, r *http.Request, sub *submission, err error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), repairTimeout)
	defer cancel()
	if !sub.queuing {
		s.rollback(ctx, sub)
		return err
	}
	detail := "submitting batch %s was interrupted after its tasks began to be queued, so the batch is cancelled: " +
		"what its tasks already made is kept and charged, the rest is released"
	if !s.interrupt(ctx, sub, err) {
		detail = "submitting batch %s was interrupted after its tasks began to be queued; the batch could not be cancelled " +
			"and runs on as far as its tasks go, charged for what they make"
	}
	if sub.key != "" {
		detail += "; retry with the same Idempotency-Key to get the batch and its state"
	}
	return &problem.Error{
		Code: problem.SubmitInterrupted, Detail: fmt.Sprintf(detail, sub.m.BatchID), Err: err,
		Extra: map[string]any{"batchId": sub.m.BatchID, "statusUrl": s.publicBase(r) + "/batch/" + sub.m.BatchID},
	}
}

// interrupt stops a batch some of whose tasks may exist and be running
// already: deleting it would not stop them, and the model calls they make
// would be paid but never charged. Its rows are cancelled through the ledger
// instead — a row not started ends at once, a running one after the variants
// it is making — and completion settles what was made and releases the rest
// of the reservation. It reports whether the rows were cancelled; when they
// could not be, the batch is left as it is: its tasks run within its
// reservation, and a retry with the key queues what is missing.
func (s *server) interrupt(ctx context.Context, sub *submission, cause error) bool {
	m := sub.m
	log := obs.Logger(ctx).With("batchId", m.BatchID, "cause", cause.Error())
	op := ledger.Op{Actor: "submit/" + sub.user, RequestID: obs.RequestID(ctx), Now: s.now().UTC()}
	if err := s.cancelRows(ctx, m, op); err != nil {
		log.Error("submit: cancelling an interrupted batch failed; it runs on within its reservation", "error", err)
		return false
	}
	if err := s.afterCancel(ctx, m, op); err != nil {
		log.Warn("submit: completing an interrupted batch failed; its last task or the housekeeping job completes it", "error", err)
	}
	log.Warn("submit: batch interrupted after queueing began; cancelled")
	return true
}

// rollback undoes what a submit that failed before any of its tasks could
// exist wrote, newest first. With an Idempotency-Key the record decides
// whether the batch is still this request's to undo: the request that created
// the record forgets it first (refused once a twin request began queueing or
// committed the batch); a request that only joined an earlier claim undoes
// its own writes only if the key no longer names the batch, and otherwise
// leaves the batch for a retry with the key to finish.
func (s *server) rollback(ctx context.Context, sub *submission) {
	if sub.key != "" && sub.claimedID != "" {
		var gone bool
		var err error
		if sub.created {
			gone, err = s.Keys.Forget(ctx, sub.user, sub.key, sub.claimedID)
		} else {
			var rec idempotency.Record
			var live bool
			rec, live, err = s.Keys.Peek(ctx, sub.user, sub.key)
			gone = err == nil && (!live || rec.BatchID != sub.claimedID)
		}
		if err != nil || !gone {
			obs.Logger(ctx).Warn("submit: the key still names the batch; nothing undone", "batchId", sub.claimedID, "error", err)
			return
		}
	}
	for _, undo := range slices.Backward(sub.undo) {
		undo(ctx)
	}
}

// manifestCost is what the batch costs if every image is made: each row at
// its own price.
func manifestCost(m *ledger.Manifest) budget.Micros {
	var c budget.Micros
	for i, r := range m.Rows {
		c += budget.FromUSD(m.RowPriceUSD(i)) * budget.Micros(r.Variants)
	}
	return c
}

// answer is the 202 body: the same for the first submit and every replay.
// rows are the batch's rows as they stand when it existed before (a retry);
// nil for a batch just queued.
func (s *server) answer(r *http.Request, m *ledger.Manifest, acct *budget.Account, rows []ledger.Row) api.SubmitResponse {
	base := s.publicBase(r)
	progressURL, tokenExp := s.progressURL(r, m)
	resp := api.SubmitResponse{
		BatchID:                m.BatchID,
		RunMode:                string(m.RunMode),
		Status:                 ledger.Queued,
		StatusURL:              base + "/batch/" + m.BatchID,
		ProgressURL:            progressURL,
		ProgressTokenExpiresAt: tokenExp,
		CreatedAt:              m.CreatedAt,
		Estimate: api.Estimate{
			Images: m.Images(), Model: m.Model, PricePerImageUSD: m.PriceUSD,
			CostUSD: manifestCost(m).USD(), Charged: m.RunMode == ledger.Live,
		},
	}
	if rows != nil {
		resp.Status = ledger.Summarize(rows).Status
	}
	if acct != nil {
		t := acct.Sum()
		resp.Budget = &api.Budget{Day: acct.Day, LimitUSD: t.Limit.USD(), ReservedUSD: t.Reserved.USD(), SpentUSD: t.Spent.USD(), RemainingUSD: t.Remaining.USD()}
	}
	for i, row := range m.Rows {
		status := ledger.Queued
		if rows != nil {
			status = rows[i].Status
		}
		resp.Rows = append(resp.Rows, api.SubmitRow{Index: row.Index, ID: row.ID, Status: status, Refs: len(row.Refs), DroppedRefs: row.DroppedRefs})
	}
	return resp
}

// progressURL is the batch's stream URL, carrying a progress token so a
// browser's EventSource (which cannot send headers) can open it.
func (s *server) progressURL(r *http.Request, m *ledger.Manifest) (string, time.Time) {
	base := s.cfg.ProgressBaseURL
	if base == "" {
		base = s.cfg.PublicBaseURL
	}
	if base == "" {
		base = origin(r)
	}
	tok, exp := s.Tokens.Mint(m.BatchID, m.Owner)
	return base + "/progress/" + m.BatchID + "?token=" + tok, exp
}

// publicBase is the submit function's origin for links.
func (s *server) publicBase(r *http.Request) string {
	if s.cfg.PublicBaseURL != "" {
		return s.cfg.PublicBaseURL
	}
	return origin(r)
}

// origin is the scheme://host the client used, honouring the proxy headers
// Cloud Run and Cloud Functions set.
func origin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	}
	host := r.Host
	if strings.ContainsAny(host, "/\\ ") || host == "" {
		host = "localhost"
	}
	return scheme + "://" + host
}
