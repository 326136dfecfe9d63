package submit

import (
	"context"
	"fmt"
	"net/http"

	"golang.org/x/sync/errgroup"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/completion"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/problem"
)

// handleCancel stops the caller's batch: rows not started become cancelled at
// once, running rows finish the variants they are making and stop. When that
// leaves every row final, the batch completes here (the budget releases what
// will not be made); otherwise the last running row completes it. Cancelling
// again, or cancelling a finished batch, changes nothing and answers the state.
func (s *server) handleCancel() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		m, err := s.manifest(r)
		if err != nil {
			problem.Write(w, r, err)
			return
		}
		p, _ := auth.From(ctx)
		op := ledger.Op{Actor: "cancel/" + p.UserID, RequestID: obs.RequestID(ctx), Now: s.now().UTC()}
		if err := s.cancelBatch(ctx, m, op); err != nil {
			problem.Write(w, r, err)
			return
		}
		// A retried batch's cancel stops its newest round.
		var round *ledger.Retry
		if st, err := s.Store.Current(ctx, m.BatchID); err == nil {
			round = st.Retry
		}
		s.writeBatch(w, r, m, func(b *api.Batch, rows []ledger.Row) {
			c := api.NewCancellation(m, rows, round)
			b.Cancel = &c
		})
	})
}

// cancelBatch cancels the rows at once, then completes the batch if that left
// every row final (its finished state records the cancel), or records the
// cancel in the batch's state while running rows finish the variants they are
// making. A cancel that fails half-way and is asked again changes only what
// the first one did not.
func (s *server) cancelBatch(ctx context.Context, m *ledger.Manifest, op ledger.Op) error {
	st, err := s.Store.Current(ctx, m.BatchID)
	if err == nil && st.Retry != nil && !st.Done() {
		// An open retry round is stopped as an interrupted retry is: rows its
		// retry never reset are reset as they are cancelled, or the round
		// could not finish until the housekeeping job resumed it.
		if err := s.stopRound(ctx, m, st.Round, op); err != nil {
			return fmt.Errorf("submit: cancelling the retry round: %w", err)
		}
		return nil
	}
	if err := s.cancelRows(ctx, m, op); err != nil {
		return fmt.Errorf("submit: cancelling the rows: %w", err)
	}
	return s.afterCancel(ctx, m, op)
}

// afterCancel completes a batch whose rows were cancelled, or records the
// cancel in its state while rows still run.
func (s *server) afterCancel(ctx context.Context, m *ledger.Manifest, op ledger.Op) error {
	complete, err := s.Finisher.Finish(ctx, m)
	if err != nil {
		return fmt.Errorf("submit: completing the cancelled batch: %w", err)
	}
	if complete {
		return nil
	}
	if _, _, err := s.Store.Advance(ctx, m.BatchID, op, func(cur *ledger.State, op ledger.Op) (ledger.State, error) {
		return ledger.CancelBatch(cur, m.BatchID, op)
	}); err != nil {
		return fmt.Errorf("submit: recording the cancel: %w", err)
	}
	return nil
}

// cancelRows applies the pure Cancel transition to every row, concurrently:
// each row is its own object, so they do not contend.
func (s *server) cancelRows(ctx context.Context, m *ledger.Manifest, op ledger.Op) error {
	g, gctx := errgroup.WithContext(ctx)
	for i := range m.Rows {
		g.Go(func() error {
			_, err := s.Store.UpdateRow(gctx, m, i, func(r ledger.Row) (ledger.Row, error) { return ledger.Cancel(r, op) })
			return err
		})
	}
	return g.Wait()
}

// writeBatch answers the batch's current state with fresh URLs and links;
// extra, if any, adds to the answer what the caller's route tells.
func (s *server) writeBatch(w http.ResponseWriter, r *http.Request, m *ledger.Manifest, extra ...func(*api.Batch, []ledger.Row)) {
	rows, err := s.Store.Rows(r.Context(), m)
	if err != nil {
		problem.Write(w, r, fmt.Errorf("submit: reading the rows: %w", err))
		return
	}
	b, err := api.NewBatch(m, rows, s.Signer.Sign)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	s.addLinks(r, m, &b)
	for _, add := range extra {
		add(&b, rows)
	}
	// Only a batch that announces itself has notification outcomes to read.
	var fx completion.Effects
	if m.Notify.Announces() {
		if _, err := s.Bucket.ReadJSON(r.Context(), ledger.EffectsObject(m.BatchID), &fx); err == nil {
			for _, o := range fx.Notifications {
				b.Notifications = append(b.Notifications, api.Notification{
					Kind: o.Kind, Target: o.Target, Status: o.Status, Attempts: o.Attempts, Error: o.Error, At: o.At,
					Retrying: !o.Delivered() && o.Retryable,
				})
			}
		}
	}
	api.WriteJSON(w, http.StatusOK, b)
}
