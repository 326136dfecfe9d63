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
	day      string
	// retryOf is the batch an earlier attempt with the same key began.
	retryOf string
	// claimedID is the batch the key is bound to, once claimed.
	claimedID string
	refs      []refs.RowRefs
	// account is the caller's budget after this batch, for the answer.
	account *budget.Account
	undo    []func(context.Context)
}

// submit runs the checks in their fixed order — decode and validate, typed
// confirmation, feature flags, budget — before anything is written; then it
// records and queues the batch. Any failure after the first write undoes every
// write, so no partial batch, reservation or key is left behind.
func (s *server) submit(w http.ResponseWriter, r *http.Request) (resp api.SubmitResponse, err error) {
	ctx := r.Context()
	p, _ := auth.From(ctx)
	sub := &submission{user: p.UserID, key: r.Header.Get(HeaderIdempotencyKey), day: budget.Day(s.now())}
	if sub.key != "" && !idempotency.ValidKey(sub.key) {
		return resp, &problem.Error{Code: problem.ValidationFailed, Detail: "the Idempotency-Key header must be 1 to 255 printable ASCII characters",
			Fields: []problem.FieldError{{Field: "/headers/Idempotency-Key", Code: problem.FieldInvalidValue, Detail: "1 to 255 printable ASCII characters"}}}
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
	// A retry of an accepted submit gets its batch back before any other check:
	// the batch exists and is reserved, whatever the flags or the budget say now.
	if sub.key != "" {
		rec, live, err := s.Keys.Peek(ctx, sub.user, sub.key)
		switch {
		case err != nil:
			return resp, fmt.Errorf("submit: reading the idempotency key: %w", err)
		case live && rec.BodySHA256 != sub.bodyHash:
			return resp, conflict()
		case live && rec.Committed:
			return s.replay(ctx, r, sub, rec.BatchID)
		case live:
			sub.retryOf = rec.BatchID // an earlier attempt got part-way: finish it
		}
	}
	model, _ := s.cfg.Rules.Models.Lookup(sub.spec.Model)
	sub.model, sub.price = model.Name, model.PriceUSD
	// Dry runs report what the batch would cost live; only live runs reserve it.
	sub.estimate = budget.FromUSD(model.PriceUSD) * budget.Micros(sub.spec.Images())
	if sub.retryOf == "" {
		if err := s.checkFlags(ctx, sub); err != nil {
			return resp, err
		}
		if sh := sub.spec.Sheet; sh != nil {
			if err := s.sheets.allow(ctx, sub.user, sh.SpreadsheetID); err != nil {
				return resp, err
			}
		}
		if sub.spec.RunMode == ledger.Live {
			if err := s.preflight(ctx, sub); err != nil {
				return resp, err
			}
		}
	}
	if sub.refs, err = s.resolveRefs(ctx, req, sub.spec, min(batch.MaxMergedRefs, model.MaxRefs)); err != nil {
		return resp, err
	}

	defer func() {
		if err != nil {
			s.rollback(ctx, sub)
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
	if err != nil {
		return resp, err
	}
	// The caller's budget goes into the answer; a live batch's reservation
	// returned it already, a dry run's is read while the tasks are queued.
	var g errgroup.Group
	g.Go(func() error { return s.enqueue(ctx, m) })
	if sub.account == nil {
		g.Go(func() error {
			if acct, err := s.Budgets.Get(ctx, sub.user, sub.day); err == nil {
				sub.account = &acct
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return resp, problem.Wrap(problem.TaskEnqueueFailed, err, "queueing the batch failed; nothing was kept")
	}
	if sub.key != "" {
		// Until the key is committed, a failed retry could still undo the
		// batch; so an uncommitted batch is not reported as accepted.
		err := s.Keys.Commit(ctx, sub.user, sub.key, m.BatchID)
		if errors.Is(err, idempotency.ErrLost) {
			// A failed twin request released the key meanwhile: the commit
			// cannot be written, and a retry with the key starts afresh.
			return resp, problem.Wrap(problem.GCSWriteFailed, err, "recording the idempotency key failed; retry with the same key")
		}
		if err != nil {
			return resp, fmt.Errorf("submit: committing the idempotency key: %w", err)
		}
	}
	sub.undo = nil
	obs.Logger(ctx).Info("submit: batch accepted", "batchId", m.BatchID, "rows", len(m.Rows), "images", m.Images(),
		"runMode", m.RunMode, "estimateUsd", m.EstimateUSD)
	return s.answer(r, m, sub.account), nil
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
// merges them per row under limit. Nothing of the batch is written yet: a bad
// reference fails the submit whole.
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
// reservation later enforces the same limit atomically.
func (s *server) preflight(ctx context.Context, sub *submission) error {
	acct, err := s.Budgets.Get(ctx, sub.user, sub.day)
	if err != nil {
		return fmt.Errorf("submit: reading the budget: %w", err)
	}
	if t := acct.Sum(); sub.estimate > t.Remaining {
		return exceeded(sub.estimate, t)
	}
	return nil
}

func exceeded(estimate budget.Micros, t budget.Totals) error {
	return &problem.Error{
		Code:   problem.BudgetExceeded,
		Detail: fmt.Sprintf("this batch is estimated at $%.3f; $%.3f of today's $%.2f remains", estimate.USD(), t.Remaining.USD(), t.Limit.USD()),
		Extra: map[string]any{
			"estimateUsd": estimate.USD(), "limitUsd": t.Limit.USD(), "reservedUsd": t.Reserved.USD(),
			"spentUsd": t.Spent.USD(), "remainingUsd": t.Remaining.USD(),
		},
	}
}

func conflict() error {
	return problem.New(problem.IdempotencyConflict, "this Idempotency-Key was used with a different request body in the last 24 hours")
}

// claim picks the batch id. With an Idempotency-Key, the key's record decides:
// a new key binds a new id; an uncommitted record is finished under its id;
// a committed one (a concurrent twin got there first) is answered again.
func (s *server) claim(ctx context.Context, sub *submission) (id string, committed bool, err error) {
	id = batch.NewID()
	if sub.key == "" {
		return id, false, nil
	}
	rec, _, err := s.Keys.Claim(ctx, sub.user, sub.key, sub.bodyHash, id)
	if errors.Is(err, idempotency.ErrConflict) {
		return "", false, conflict()
	}
	if err != nil {
		return "", false, fmt.Errorf("submit: claiming the idempotency key: %w", err)
	}
	sub.claimedID = rec.BatchID
	return rec.BatchID, rec.Committed, nil
}

// replay answers a retry of an accepted submit with its batch.
func (s *server) replay(ctx context.Context, r *http.Request, sub *submission, batchID string) (api.SubmitResponse, error) {
	m, err := s.Store.Manifest(ctx, batchID)
	if err != nil {
		return api.SubmitResponse{}, fmt.Errorf("submit: reading the batch of the idempotency key: %w", err)
	}
	acct, _ := s.Budgets.Get(ctx, sub.user, sub.day)
	return s.answer(r, m, &acct), nil
}

// record reserves the budget (live runs) and writes the manifest.
func (s *server) record(ctx context.Context, sub *submission, batchID string) (*ledger.Manifest, error) {
	m := &ledger.Manifest{
		Schema: 1, BatchID: batchID, Owner: sub.user, RunMode: sub.spec.RunMode, Model: sub.model,
		CreatedAt: s.now().UTC(), RequestID: obs.RequestID(ctx), PriceUSD: sub.price, EstimateUSD: sub.estimate.USD(),
		Notify: ledger.Notify{WebhookURL: sub.spec.WebhookURL},
	}
	if sh := sub.spec.Sheet; sh != nil {
		m.Notify.SpreadsheetID, m.Notify.SheetRange = sh.SpreadsheetID, sh.Range
	}
	for i, row := range sub.spec.Rows {
		mr := ledger.ManifestRow{Index: row.Index, ID: row.ID, Prompt: row.Prompt, Variants: row.Variants, AspectRatio: row.AspectRatio}
		if i < len(sub.refs) {
			mr.Refs, mr.DroppedRefs = sub.refs[i].Refs, sub.refs[i].Dropped
		}
		m.Rows = append(m.Rows, mr)
	}
	if sub.spec.RunMode == ledger.Live {
		m.BudgetDay = sub.day
		acct, created, err := s.Budgets.Reserve(ctx, sub.user, sub.day, batchID, sub.estimate)
		sub.account = &acct
		switch {
		case errors.Is(err, budget.ErrExceeded):
			acct, _ := s.Budgets.Get(ctx, sub.user, sub.day)
			return nil, exceeded(sub.estimate, acct.Sum())
		case errors.Is(err, budget.ErrContended):
			return nil, &problem.Error{Code: problem.BudgetContended, Detail: "too many submits at once for this account; retry shortly", RetryAfter: 2, Err: err}
		case err != nil:
			return nil, fmt.Errorf("submit: reserving the budget: %w", err)
		}
		if created { // only the reservation this call made is this call's to release
			sub.undo = append(sub.undo, func(ctx context.Context) {
				if _, err := s.Budgets.Release(ctx, sub.user, sub.day, batchID); err != nil {
					obs.Logger(ctx).Error("submit: releasing the reservation failed; it holds that budget until the UTC day ends", "batchId", batchID, "error", err)
				}
			})
		}
	}
	// Undone even if the write's outcome is unknown (it may have landed), but
	// never a manifest an earlier attempt wrote.
	undo := func(ctx context.Context) {
		if err := s.Store.DeleteBatch(ctx, batchID); err != nil {
			obs.Logger(ctx).Error("submit: rollback failed; the housekeeping job removes what is left", "batchId", batchID, "error", err)
		}
	}
	sub.undo = append(sub.undo, undo)
	err := s.Store.CreateManifest(ctx, m)
	if errors.Is(err, ledger.ErrExists) {
		// A retry of a submit that got this far: same key, same body.
		sub.undo = sub.undo[:len(sub.undo)-1]
		return s.Store.Manifest(ctx, batchID)
	}
	if err != nil {
		return nil, fmt.Errorf("submit: recording the batch: %w", err)
	}
	return m, nil
}

// enqueue creates every row's task at once; names are deterministic, so a
// retried submit cannot queue a row twice.
func (s *server) enqueue(ctx context.Context, m *ledger.Manifest) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, row := range m.Rows {
		g.Go(func() error {
			return s.Queue.Enqueue(gctx, queue.Task{BatchID: m.BatchID, Row: row.Index})
		})
	}
	return g.Wait()
}

// rollback undoes what a failed submit wrote, newest first, on a context of its
// own (the request's may be what failed). With an Idempotency-Key, the key goes
// first: if a twin request committed it meanwhile, the batch is that request's
// now and nothing is undone.
func (s *server) rollback(ctx context.Context, sub *submission) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if sub.key != "" && sub.claimedID != "" {
		free, err := s.Keys.Forget(ctx, sub.user, sub.key, sub.claimedID)
		if err != nil || !free {
			obs.Logger(ctx).Warn("submit: another request holds the batch; nothing undone", "batchId", sub.claimedID, "error", err)
			return
		}
	}
	for _, undo := range slices.Backward(sub.undo) {
		undo(ctx)
	}
}

// answer is the 202 body: the same for the first submit and every replay.
func (s *server) answer(r *http.Request, m *ledger.Manifest, acct *budget.Account) api.SubmitResponse {
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
			CostUSD: (budget.FromUSD(m.PriceUSD) * budget.Micros(m.Images())).USD(), Charged: m.RunMode == ledger.Live,
		},
	}
	if acct != nil {
		t := acct.Sum()
		resp.Budget = &api.Budget{Day: acct.Day, LimitUSD: t.Limit.USD(), ReservedUSD: t.Reserved.USD(), SpentUSD: t.Spent.USD(), RemainingUSD: t.Remaining.USD()}
	}
	for _, row := range m.Rows {
		resp.Rows = append(resp.Rows, api.SubmitRow{Index: row.Index, ID: row.ID, Refs: len(row.Refs), DroppedRefs: row.DroppedRefs})
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
