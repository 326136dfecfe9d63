// Package completion finishes batches: when every row of a batch is final, one
// caller wins the create-once final marker, and the once-per-batch effects —
// budget settlement first — run until an effects marker says they are done.
// Each effect is idempotent on its own, so a crash anywhere is repaired by the
// next caller: a duplicate task delivery, or the housekeeping job.
package completion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/assetgen/assetgen/shared/backlog"
	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/ledgerstore"
	"github.com/assetgen/assetgen/shared/metrics"
	"github.com/assetgen/assetgen/shared/notify"
	"github.com/assetgen/assetgen/shared/obs"
)

// Finisher completes batches.
type Finisher struct {
	store   *ledgerstore.Store
	bucket  *bucket.Bucket
	budgets *budget.Store
	n       Notifier
	backlog *backlog.Markers
	now     func() time.Time
}

// Notifier announces finished batches. A nil member means that channel is not
// available on this deployment (submit refuses batches that ask for it).
type Notifier struct {
	Webhooks *notify.Webhooks
	Sheets   *notify.Sheets
	// Link is an image's stable link, for the announcements.
	Link func(m *ledger.Manifest, row, variant int) string
	// MaxElapsed bounds one delivery's retries; the effects claim outlasts
	// settling plus every delivery.
	MaxElapsed time.Duration
}

// New returns a finisher over the ledger and the bucket holding it (the
// effects markers and claims live beside the batch).
func New(l *ledgerstore.Store, b *bucket.Bucket, budgets *budget.Store, n Notifier) *Finisher {
	return &Finisher{store: l, bucket: b, budgets: budgets, n: n, backlog: backlog.New(b), now: time.Now}
}

// WebhookKeys are the published halves of the keys that sign this
// deployment's webhooks (an empty set where webhooks are not available).
func (f *Finisher) WebhookKeys() notify.KeySet {
	if f.n.Webhooks == nil {
		return notify.KeySet{Keys: []notify.PublicKey{}}
	}
	return f.n.Webhooks.Keys()
}

// Effects records what the once-per-batch effects did. A retried batch has
// effects per round: the marker holds the newest round's.
type Effects struct {
	// Round is the batch's retry round whose effects these are (0: the
	// submit's).
	Round         int              `json:"round,omitempty"`
	At            time.Time        `json:"at"`
	ChargedUSD    float64          `json:"chargedUsd"`
	Notifications []notify.Outcome `json:"notifications,omitempty"`
	// Earlier are the effects of the rounds before, oldest first.
	Earlier []Effects `json:"earlier,omitempty"`
}

// Finish completes m's batch if every row is final. It returns whether the
// batch is complete (effects included).
func (f *Finisher) Finish(ctx context.Context, m *ledger.Manifest) (bool, error) {
	st, err := f.store.Current(ctx, m.BatchID)
	if err != nil && !errors.Is(err, ledger.ErrNotFound) {
		return false, err
	}
	if err != nil || !st.Done() {
		rows, err := f.store.Rows(ctx, m)
		if err != nil {
			return false, err
		}
		for _, r := range rows {
			if !r.Status.Terminal() {
				return false, nil
			}
		}
		op := ledger.Op{Actor: "completion", RequestID: obs.RequestID(ctx), Now: f.now().UTC()}
		var finished bool
		st, finished, err = f.store.Advance(ctx, m.BatchID, op, func(cur *ledger.State, op ledger.Op) (ledger.State, error) {
			return ledger.FinishBatch(cur, m.BatchID, rows, op)
		})
		if errors.Is(err, ledger.ErrRoundNotBegun) {
			// A retry is resetting the rows: the round's last row finishes it.
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("completion: final state: %w", err)
		}
		// Only the caller whose write finished the batch counts and logs it;
		// another caller's final state is the truth.
		if finished {
			final, _ := st.Final()
			count(m, final)
			obs.Logger(ctx).Info("completion: batch finished", "batchId", m.BatchID, "status", final.Summary.Status,
				"images", final.Summary.Variants.Done, "failed", final.Summary.Variants.Failed, "costUsd", final.Summary.CostUSD)
		}
	}
	return true, f.effects(ctx, m, st)
}

// count records a finished batch's outcomes, once (by the marker's creator).
func count(m *ledger.Manifest, final ledger.Final) {
	mode := string(m.RunMode)
	metrics.Batches.WithLabelValues(mode, string(final.Summary.Status)).Inc()
	for _, r := range final.Rows {
		metrics.Rows.WithLabelValues(mode, string(r.Status)).Inc()
		for _, v := range r.Variants {
			outcome := string(v.Status)
			if v.Error != nil {
				outcome = v.Error.Code
			}
			metrics.Variants.WithLabelValues(mode, outcome).Inc()
		}
	}
}

// Retryable reports whether a notification failed for a reason a retry may fix.
func (e Effects) Retryable() bool {
	for _, o := range e.Notifications {
		if !o.Delivered() && o.Retryable {
			return true
		}
	}
	return false
}

// claimTTL is how long one caller owns a batch's effects before another may
// take them over (it crashed): longer than settling plus both bounded
// notification deliveries.
func (f *Finisher) claimTTL() time.Duration {
	return max(5*time.Minute, 3*f.n.MaxElapsed+time.Minute)
}

// claim is who is performing a batch's effects, since when.
type claim struct {
	Holder string    `json:"holder"`
	At     time.Time `json:"at"`
}

var errClaimed = errors.New("completion: another caller performs the effects")

// claimEffects makes this call the one that performs the effects, unless
// another call holds a fresh claim: concurrent finishers (every row's last
// task, a duplicate delivery, the housekeeping job) never announce twice, and a
// crashed one is taken over once its claim is stale.
func (f *Finisher) claimEffects(ctx context.Context, m *ledger.Manifest, what string, round int) (bool, error) {
	if round > 0 {
		// A claim of an earlier round may still look fresh.
		what = fmt.Sprintf("%s-r%d", what, round)
	}
	me := claim{Holder: obs.NewRequestID(), At: f.now().UTC()}
	name := ledger.BatchPrefix(m.BatchID) + what + "-claim.json"
	_, res, err := bucket.Update(ctx, f.bucket, name, func(cur claim, exists bool) (claim, error) {
		if exists && me.At.Sub(cur.At) < f.claimTTL() {
			return cur, errClaimed
		}
		return me, nil
	})
	if errors.Is(err, errClaimed) {
		return false, nil
	}
	if err != nil {
		// The write's outcome is unknown: it may have landed with every answer
		// lost. The claim names its holder, so reading it tells; taken for
		// another caller's, nobody would do the effects until it went stale.
		var cur claim
		if _, rerr := f.bucket.ReadJSON(ctx, name, &cur); rerr == nil && cur.Holder == me.Holder {
			return true, nil
		}
		return false, err
	}
	// Won even when the claim's answer was lost: re-read, the claim would
	// look like another caller's, and nobody would do the effects until it
	// went stale.
	return res.Outcome == bucket.Won, nil
}

// effects runs the once-per-batch (per round) effects unless their marker
// says they are done.
func (f *Finisher) effects(ctx context.Context, m *ledger.Manifest, st ledger.State) error {
	var prev Effects
	_, err := f.bucket.ReadJSON(ctx, ledger.EffectsObject(m.BatchID), &prev)
	exists := err == nil
	switch {
	case err != nil && !errors.Is(err, bucket.ErrNotFound):
		return err
	case exists && prev.Round >= st.Round:
		return nil
	}
	if mine, err := f.claimEffects(ctx, m, "effects", st.Round); err != nil || !mine {
		return err
	}
	final, _ := st.Final()
	// The final snapshot is normally written with the final state; a finisher
	// that died in between left it to whoever performs the effects. (A final
	// state an older release wrote names no snapshot.)
	if st.Snapshot != "" {
		if err := f.store.KeepSnapshot(ctx, st); err != nil {
			return fmt.Errorf("completion: %w", err)
		}
	}
	// The batch no longer counts among its owner's queued rows. Cleared
	// before the effects marker is written, so a failure here is retried by
	// the next finisher instead of leaving the marker behind.
	if err := f.backlog.Clear(ctx, backlog.Entry{User: m.Owner, BatchID: m.BatchID, Rows: len(m.Rows)}); err != nil {
		return fmt.Errorf("completion: %w", err)
	}
	charged := budget.FromUSD(final.Summary.CostUSD)
	day, reservation := m.BudgetDay, m.BatchID
	if rt := st.Retry; rt != nil {
		// A round is charged what it added; its reservation is its own.
		charged = max(0, charged-budget.FromUSD(rt.PriorCostUSD))
		day, reservation = rt.BudgetDay, rt.Reservation
	}
	if m.RunMode == ledger.Live && day != "" && reservation != "" {
		if _, err := f.budgets.Settle(ctx, m.Owner, day, reservation, charged); err != nil {
			return fmt.Errorf("completion: settle budget: %w", err)
		}
	}
	fx := Effects{Round: st.Round, ChargedUSD: charged.USD(), Notifications: f.announce(ctx, m, final, st.Round, nil)}
	fx.At = f.now().UTC()
	if st.Round == 0 {
		_, err = f.bucket.CreateJSON(ctx, ledger.EffectsObject(m.BatchID), fx)
		return err
	}
	_, _, err = bucket.Update(ctx, f.bucket, ledger.EffectsObject(m.BatchID), func(cur Effects, exists bool) (Effects, error) {
		if exists && cur.Round >= fx.Round {
			return cur, bucket.ErrNoChange
		}
		if exists {
			prev := cur
			prev.Earlier = nil
			fx.Earlier = append(append([]Effects(nil), cur.Earlier...), prev)
		}
		return fx, nil
	})
	return err
}

// Settled reports whether a batch's effects are done for its newest round:
// the batch needs no more looking after (a retry may open another round).
// It also answers the effects, when there are some.
func (f *Finisher) Settled(ctx context.Context, batchID string) (Effects, bool, error) {
	var fx Effects
	if _, err := f.bucket.ReadJSON(ctx, ledger.EffectsObject(batchID), &fx); err != nil {
		if errors.Is(err, bucket.ErrNotFound) {
			return fx, false, nil
		}
		return fx, false, err
	}
	st, err := f.store.Current(ctx, batchID)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return fx, true, nil // a batch older than its states
	case err != nil:
		return fx, false, err
	}
	return fx, st.Round <= fx.Round, nil
}

// announce delivers the batch's notifications; only those whose index is in
// redo when redo is not nil (a retry of earlier failures).
func (f *Finisher) announce(ctx context.Context, m *ledger.Manifest, final ledger.Final, round int, redo map[string]bool) []notify.Outcome {
	link := func(row, variant int) string {
		if f.n.Link == nil {
			return ""
		}
		return f.n.Link(m, row, variant)
	}
	var out []notify.Outcome
	if u := m.Notify.WebhookURL; u != "" && (redo == nil || redo[notify.KindWebhook]) {
		if f.n.Webhooks == nil {
			out = append(out, unavailable(notify.KindWebhook, u))
		} else {
			// Each round is its own event: a receiver deduplicating by id
			// must not drop a retry's.
			id := m.BatchID + ":webhook"
			if round > 0 {
				id += fmt.Sprintf(":r%d", round)
			}
			body, _ := json.Marshal(notify.NewEvent(id, final, m, link))
			out = append(out, f.n.Webhooks.Deliver(ctx, u, id, body))
		}
	}
	if m.Notify.SpreadsheetID != "" && (redo == nil || redo[notify.KindSheet]) {
		t := notify.SheetTarget{SpreadsheetID: m.Notify.SpreadsheetID, Range: m.Notify.SheetRange}
		if f.n.Sheets == nil {
			out = append(out, unavailable(notify.KindSheet, t.String()))
		} else {
			out = append(out, f.n.Sheets.Write(ctx, t, notify.Rows(final, m, link)))
		}
	}
	for _, o := range out {
		if !o.Delivered() {
			obs.Logger(ctx).Warn("completion: notification failed", "batchId", m.BatchID, "kind", o.Kind, "error", o.Error, "retryable", o.Retryable)
		}
	}
	return out
}

func unavailable(kind, target string) notify.Outcome {
	return notify.Outcome{Kind: kind, Target: target, Status: notify.StatusFailed, Error: "not available on this deployment", At: time.Now().UTC()}
}

// RetryNotifications delivers again the notifications of a finished batch
// that failed for a reason a retry may fix (the housekeeping job calls it).
// The batch's results are never at stake: they are in the ledger either way.
func (f *Finisher) RetryNotifications(ctx context.Context, m *ledger.Manifest) (int, error) {
	var fx Effects
	if _, err := f.bucket.ReadJSON(ctx, ledger.EffectsObject(m.BatchID), &fx); err != nil {
		if errors.Is(err, bucket.ErrNotFound) {
			return 0, nil
		}
		return 0, err
	}
	redo := map[string]bool{}
	for _, o := range fx.Notifications {
		if !o.Delivered() && o.Retryable {
			redo[o.Kind] = true
		}
	}
	if len(redo) == 0 {
		return 0, nil
	}
	// Overlapping housekeeping runs must not announce twice.
	if mine, err := f.claimEffects(ctx, m, "renotify", fx.Round); err != nil || !mine {
		return 0, err
	}
	final, err := f.store.State(ctx, m.BatchID)
	if err != nil {
		return 0, err
	}
	again := f.announce(ctx, m, final, fx.Round, redo)
	_, _, err = bucket.Update(ctx, f.bucket, ledger.EffectsObject(m.BatchID), func(cur Effects, exists bool) (Effects, error) {
		if !exists || cur.Round != fx.Round {
			return cur, bucket.ErrNoChange // another round's effects since
		}
		next := cur
		next.Notifications = append([]notify.Outcome(nil), cur.Notifications...)
		for i, o := range next.Notifications {
			for _, a := range again {
				if a.Kind == o.Kind && !o.Delivered() {
					a.Attempts += o.Attempts
					next.Notifications[i] = a
				}
			}
		}
		return next, nil
	})
	return len(again), err
}
