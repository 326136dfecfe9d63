package submit

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/idempotency"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/problem"
	"github.com/assetgen/assetgen/shared/queue"
)

// maxRetryBody bounds a retry's body: it holds at most the confirm word.
const maxRetryBody = 4 << 10

// handleRetry re-runs the failed and cancelled variants of the caller's
// finished batch: a new round under the same batch id, paid for like a
// submit (a live round reserves its estimate), its done images kept.
func (s *server) handleRetry() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := s.retry(w, r)
		if err != nil {
			problem.Write(w, r, err)
			return
		}
		obs.Annotate(r.Context(), "batchId", resp.BatchID)
		w.Header().Set("Location", resp.StatusURL)
		api.WriteJSON(w, http.StatusAccepted, resp)
	})
}

// retryRequest is a retry's optional body.
type retryRequest struct {
	Confirm string `json:"confirm"`
}

// decodeRetry reads a retry's body: empty, or an object with at most the
// confirm word.
func decodeRetry(body []byte) (retryRequest, error) {
	var req retryRequest
	if len(bytes.TrimSpace(body)) == 0 {
		return req, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return req, problem.New(problem.MalformedJSON, `the body must be empty or a JSON object such as {"confirm": "CONFIRM"}`)
	}
	var fields []problem.FieldError
	for k, raw := range top {
		if k != "confirm" {
			fields = append(fields, problem.FieldError{Field: "/" + k, Code: problem.FieldUnknown, Detail: fmt.Sprintf("unknown field %q", k)})
			continue
		}
		if err := json.Unmarshal(raw, &req.Confirm); err != nil {
			fields = append(fields, problem.FieldError{Field: "/confirm", Code: problem.FieldInvalidType, Detail: "expected a string"})
		}
	}
	if len(fields) > 0 {
		return req, &problem.Error{Code: problem.ValidationFailed, Detail: fmt.Sprintf("%d field(s) are invalid", len(fields)), Fields: fields}
	}
	return req, nil
}

// reservationID names a retry round's budget reservation: the batch id and a
// nonce. With an Idempotency-Key the nonce comes from the key's record, so
// every attempt with the key reserves once, and a round can tell it is the
// key's by its reservation.
func reservationID(batchID, user, key string, claimed time.Time) string {
	if key == "" {
		return batchID + "-retry-" + strings.ToLower(rand.Text()[:12])
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d", user, key, claimed.UnixNano()))
	return batchID + "-retry-" + hex.EncodeToString(sum[:6])
}

// retry checks what a retry needs before anything is written — the typed
// confirmation, a finished batch with something to re-run, the flags, the
// queued-row cap and the budget — then writes it (writeRetry).
func (s *server) retry(w http.ResponseWriter, r *http.Request) (resp api.SubmitResponse, err error) {
	ctx := r.Context()
	m, err := s.manifest(r)
	if err != nil {
		return resp, err
	}
	p, _ := auth.From(ctx)
	sub := &submission{user: p.UserID, key: r.Header.Get(HeaderIdempotencyKey), day: budget.Day(s.now()), m: m}
	if err := checkKey(sub.key); err != nil {
		return resp, err
	}
	body, err := api.ReadBody(w, r, maxRetryBody)
	if err != nil {
		return resp, err
	}
	req, err := decodeRetry(body)
	if err != nil {
		return resp, err
	}
	if err := batch.CheckConfirm(batch.Request{RunMode: string(m.RunMode), Confirm: req.Confirm}); err != nil {
		return resp, err
	}
	// What the request means, not its bytes: an empty body and {} are the
	// same retry.
	sub.bodyHash = idempotency.BodyHash(fmt.Appendf(nil, "retry %s confirm=%q", m.BatchID, req.Confirm))
	resume := ""
	if sub.key != "" {
		rec, live, err := s.Keys.Peek(ctx, sub.user, sub.key)
		switch {
		case err != nil:
			return resp, fmt.Errorf("submit: reading the idempotency key: %w", err)
		case live && rec.BodySHA256 != sub.bodyHash:
			return resp, conflict()
		case live && rec.Committed:
			return s.retryReplay(ctx, r, sub)
		case live:
			// An earlier attempt with the key got part-way: finish its round.
			resume, sub.day = reservationID(m.BatchID, sub.user, sub.key, rec.CreatedAt), budgetDay(rec)
		}
	}
	st, err := s.Store.Current(ctx, m.BatchID)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return resp, notFinished(ledger.Queued)
	case err != nil:
		return resp, fmt.Errorf("submit: reading the batch's state: %w", err)
	}
	ours := resume != "" && st.Retry != nil && st.Retry.Reservation == resume
	if !ours {
		if !st.Done() {
			return resp, notFinished(st.Status)
		}
		if err := s.settledForRetry(ctx, m, st); err != nil {
			return resp, err
		}
		idx, n := ledger.PlanRetry(st.Rows)
		if n == 0 {
			return resp, problem.New(problem.NothingToRetry, "no variant of batch %s failed or was cancelled; submit a new batch to make more", m.BatchID)
		}
		sub.spec = batch.Spec{RunMode: m.RunMode, Model: m.Model, Rows: make([]batch.RowSpec, len(idx))}
		sub.estimate = retryEstimate(m, st.Rows)
		if resume == "" {
			if err := s.checkFlags(ctx, sub); err != nil {
				return resp, err
			}
			if err := s.checkQueued(ctx, sub); err != nil {
				return resp, err
			}
			if m.RunMode == ledger.Live {
				if err := s.preflight(ctx, sub); err != nil {
					return resp, err
				}
			}
		}
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	return s.writeRetry(wctx, r, sub, st)
}

// settledForRetry makes sure the finished round's effects are done before
// another round begins: they settle that round's reservation, and they would
// never run once the batch reads unfinished again. A finisher that has them
// in hand right now makes the retry wait a moment.
func (s *server) settledForRetry(ctx context.Context, m *ledger.Manifest, st ledger.State) error {
	sd, err := s.Finisher.Standing(ctx, m.BatchID)
	if err == nil && !sd.Settled {
		if _, err = s.Finisher.Finish(ctx, m); err == nil {
			sd, err = s.Finisher.Standing(ctx, m.BatchID)
		}
	}
	if err != nil {
		return fmt.Errorf("submit: reading the batch's effects: %w", err)
	}
	if !sd.Settled {
		return &problem.Error{Code: problem.BatchNotFinished, RetryAfter: 2,
			Detail: fmt.Sprintf("batch %s is settling its %s round; retry in a few seconds", m.BatchID, roundName(st.Round))}
	}
	return nil
}

func roundName(round int) string {
	if round == 0 {
		return "first"
	}
	return fmt.Sprintf("retry %d", round)
}

func notFinished(status ledger.Status) error {
	return &problem.Error{Code: problem.BatchNotFinished, Detail: fmt.Sprintf("the batch is %s: only a finished batch can be retried; cancel it, or wait for it to finish", status),
		Extra: map[string]any{"status": status}}
}

// writeRetry claims the key, reserves the round's estimate (live runs),
// records the round in the batch's state, resets its rows and queues them,
// and commits the key. Before the round is recorded, a failure undoes every
// write; once it is, the round is the batch's, and a failure cancels it
// through the ledger instead (repairRetry). st is the batch's state as the
// checks read it.
func (s *server) writeRetry(ctx context.Context, r *http.Request, sub *submission, st ledger.State) (resp api.SubmitResponse, err error) {
	m := sub.m
	round := 0
	defer func() {
		if err != nil {
			err = s.repairRetry(ctx, r, sub, round, err)
		}
	}()
	var claimedAt time.Time
	if sub.key != "" {
		rec, created, err := s.Keys.Claim(ctx, sub.user, sub.key, idempotency.Record{BodySHA256: sub.bodyHash, BatchID: m.BatchID, BudgetDay: sub.day})
		if errors.Is(err, idempotency.ErrConflict) {
			return resp, conflict()
		}
		if err != nil {
			return resp, fmt.Errorf("submit: claiming the idempotency key: %w", err)
		}
		sub.claimedID, sub.created, sub.day, claimedAt = m.BatchID, created, budgetDay(rec), rec.CreatedAt
		if rec.Committed {
			return s.retryReplay(ctx, r, sub)
		}
	}
	res := reservationID(m.BatchID, sub.user, sub.key, claimedAt)
	ours := func(cur *ledger.State) bool { return cur != nil && cur.Retry != nil && cur.Retry.Reservation == res }
	final := st.Rows
	if !ours(&st) {
		if m.RunMode == ledger.Live {
			if err := s.reserve(ctx, sub, res); err != nil {
				return resp, err
			}
		}
		marked, err := s.markQueued(ctx, m)
		if err != nil {
			return resp, err
		}
		if marked != nil {
			sub.undo = append(sub.undo, marked)
		}
		op := ledger.Op{Actor: "retry/" + sub.user, RequestID: obs.RequestID(ctx), Now: s.now().UTC()}
		rt := ledger.Retry{EstimateUSD: sub.estimate.USD()}
		if m.RunMode == ledger.Live {
			rt.Reservation, rt.BudgetDay = res, sub.day
		} else {
			rt.Reservation = res // names the round for a retry with the key
		}
		next, _, err := s.Store.Advance(ctx, m.BatchID, op, func(cur *ledger.State, op ledger.Op) (ledger.State, error) {
			if ours(cur) {
				return *cur, ledger.ErrNoChange // this retry's round, landed with its answer lost
			}
			return ledger.RetryBatch(cur, m.BatchID, rt, op)
		})
		switch {
		case errors.Is(err, ledger.ErrNotFinished):
			return resp, notFinished(ledger.Running) // another retry began a round first
		case errors.Is(err, ledger.ErrNothingToRetry):
			return resp, problem.New(problem.NothingToRetry, "no variant of batch %s failed or was cancelled", m.BatchID)
		case err != nil:
			// The write may have landed all the same: the state tells.
			cur, rerr := s.Store.Current(ctx, m.BatchID)
			if rerr != nil || !ours(&cur) {
				return resp, fmt.Errorf("submit: recording the retry: %w", err)
			}
			next = cur
		}
		st = next
	}
	round = st.Round
	// From here the round is the batch's: a failure stops it, never undoes it.
	sub.queuing = true
	if sub.key != "" {
		if err := s.Keys.BeginQueuing(ctx, sub.user, sub.key, m.BatchID); err != nil {
			return resp, fmt.Errorf("submit: marking the idempotency key: %w", err)
		}
	}
	if st.Done() {
		// The key's round ran to its end before the key was committed.
		if err := s.commitKey(ctx, sub); err != nil {
			return resp, err
		}
		return s.retryReplay(ctx, r, sub)
	}
	rows, err := s.resetRound(ctx, m, st, final)
	if err != nil {
		return resp, err
	}
	// A cancel that came between the round's state and its rows' reset saw
	// no row to stop: it is honoured here, before any task exists.
	cur, err := s.Store.Current(ctx, m.BatchID)
	if err != nil {
		return resp, fmt.Errorf("submit: reading the batch's state: %w", err)
	}
	if cur.CancelRequested && cur.Round == round {
		op := ledger.Op{Actor: "retry/" + sub.user, RequestID: obs.RequestID(ctx), Now: s.now().UTC()}
		if err := s.cancelBatch(ctx, m, op); err != nil {
			return resp, err
		}
	} else {
		var tasks []queue.Task
		for _, i := range st.Retry.Rows {
			if !rows[i].Status.Terminal() {
				tasks = append(tasks, queue.Task{BatchID: m.BatchID, Row: i, Round: round})
			}
		}
		if err := s.enqueue(ctx, sub, tasks); err != nil {
			return resp, fmt.Errorf("submit: queueing the retry: %w", err)
		}
	}
	if err := s.commitKey(ctx, sub); err != nil {
		return resp, err
	}
	sub.undo = nil
	obs.Logger(ctx).Info("submit: retry accepted", "batchId", m.BatchID, "round", round, "rows", len(st.Retry.Rows),
		"images", st.Retry.Variants, "runMode", m.RunMode, "estimateUsd", st.Retry.EstimateUSD)
	return s.retryAnswer(r, m, st, rows, sub.account), nil
}

func (s *server) commitKey(ctx context.Context, sub *submission) error {
	if sub.key == "" {
		return nil
	}
	if err := s.Keys.Commit(ctx, sub.user, sub.key, sub.m.BatchID); err != nil {
		return fmt.Errorf("submit: committing the idempotency key: %w", err)
	}
	return nil
}

// resetRound resets the round's rows (each on its own object, concurrently)
// and answers every row of the batch as it now stands. final are the
// previous round's final rows when the caller has them.
func (s *server) resetRound(ctx context.Context, m *ledger.Manifest, st ledger.State, final []ledger.Row) ([]ledger.Row, error) {
	rows := final
	if len(rows) != len(m.Rows) {
		var err error
		if rows, err = s.Store.Rows(ctx, m); err != nil {
			return nil, fmt.Errorf("submit: reading the rows: %w", err)
		}
	}
	rows = append([]ledger.Row(nil), rows...)
	op := ledger.Op{Actor: "retry/" + m.Owner, RequestID: obs.RequestID(ctx), Now: s.now().UTC()}
	g, gctx := errgroup.WithContext(ctx)
	for _, i := range st.Retry.Rows {
		g.Go(func() error {
			row, err := s.Store.UpdateRow(gctx, m, i, func(r ledger.Row) (ledger.Row, error) { return ledger.RetryRow(r, op, st.Round) })
			rows[i] = row
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("submit: resetting the rows for the retry: %w", err)
	}
	return rows, nil
}

// repairRetry deals with what a failed retry wrote and returns the error to
// answer. Before the round was recorded, its writes are undone (the
// reservation released, the key forgotten); after, the round is stopped
// through the ledger: its rows are reset and cancelled, so it finishes at
// once and completion releases its reservation.
func (s *server) repairRetry(ctx context.Context, r *http.Request, sub *submission, round int, err error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), repairTimeout)
	defer cancel()
	if !sub.queuing {
		s.rollback(ctx, sub)
		return err
	}
	m := sub.m
	log := obs.Logger(ctx).With("batchId", m.BatchID, "round", round, "cause", err.Error())
	detail := "retrying batch %s was interrupted after its rows began to be queued, so the retry is cancelled: " +
		"what it already made is kept and charged, the rest is released"
	op := ledger.Op{Actor: "retry/" + sub.user, RequestID: obs.RequestID(ctx), Now: s.now().UTC()}
	if cerr := s.stopRound(ctx, m, round, op); cerr != nil {
		log.Error("submit: cancelling an interrupted retry failed; the housekeeping job resumes it", "error", cerr)
		detail = "retrying batch %s was interrupted after its round was recorded, and stopping the round failed too: " +
			"rows already queued run and are charged for what they make, and the housekeeping job resets and queues " +
			"the rest of the round within about half an hour"
	} else {
		log.Warn("submit: retry interrupted after queueing began; cancelled")
	}
	if sub.key != "" {
		detail += "; retry with the same Idempotency-Key to get the batch and its state"
	}
	return &problem.Error{
		Code: problem.RetryInterrupted, Detail: fmt.Sprintf(detail, m.BatchID), Err: err,
		Extra: map[string]any{"batchId": m.BatchID, "statusUrl": s.publicBase(r) + "/batch/" + m.BatchID},
	}
}

// stopRound cancels a retry round: every row of the round is reset for it
// (so the round can finish) and cancelled — at once if nobody works on it.
func (s *server) stopRound(ctx context.Context, m *ledger.Manifest, round int, op ledger.Op) error {
	st, err := s.Store.Current(ctx, m.BatchID)
	if err != nil {
		return err
	}
	if st.Retry == nil || st.Round != round || st.Done() {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, i := range st.Retry.Rows {
		g.Go(func() error {
			_, err := s.Store.UpdateRow(gctx, m, i, func(r ledger.Row) (ledger.Row, error) {
				if next, err := ledger.RetryRow(r, op, round); err == nil {
					r = next
				}
				return ledger.Cancel(r, op)
			})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return s.afterCancel(ctx, m, op)
}

// retryReplay answers a retry whose key was committed: the batch as it stands.
func (s *server) retryReplay(ctx context.Context, r *http.Request, sub *submission) (api.SubmitResponse, error) {
	m := sub.m
	st, err := s.Store.Current(ctx, m.BatchID)
	if err != nil {
		return api.SubmitResponse{}, fmt.Errorf("submit: reading the batch's state: %w", err)
	}
	rows, err := s.Store.Rows(ctx, m)
	if err != nil {
		return api.SubmitResponse{}, fmt.Errorf("submit: reading the rows of the batch: %w", err)
	}
	acct, _ := s.Budgets.Get(ctx, sub.user, sub.day)
	return s.retryAnswer(r, m, st, rows, &acct), nil
}

// retryAnswer is a retry's 202: a submit's answer for the batch, its
// estimate the round's images, and the round.
func (s *server) retryAnswer(r *http.Request, m *ledger.Manifest, st ledger.State, rows []ledger.Row, acct *budget.Account) api.SubmitResponse {
	resp := s.answer(r, m, acct, rows)
	resp.Round = st.Round
	if rt := st.Retry; rt != nil {
		resp.Estimate.Images, resp.Estimate.CostUSD = rt.Variants, rt.EstimateUSD
	}
	return resp
}

// retryEstimate is what a retry of a batch with these final rows costs at
// most: each failed or cancelled variant at its row's price (a row's image
// size sets its price).
func retryEstimate(m *ledger.Manifest, rows []ledger.Row) budget.Micros {
	var e budget.Micros
	for _, r := range rows {
		for _, v := range r.Variants {
			if v.Retryable() {
				e += budget.FromUSD(m.RowPriceUSD(r.Index))
			}
		}
	}
	return e
}
