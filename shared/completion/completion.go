// Package completion finishes batches: when every row of a batch (or of a
// retry round) is final, one caller's compare-and-swap records the final
// state, and that caller runs the once-per-round effects — budget settlement
// first — ending with the round's final snapshot, which says what they did
// and marks them done. Each effect is idempotent on its own, so a crash
// anywhere is repaired by the next caller once the finisher had its time: a
// duplicate task delivery, or the housekeeping job.
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
	// MaxElapsed bounds one delivery's retries; a finisher's hold on the
	// effects outlasts settling plus every delivery.
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
// batch is complete (effects included, or left to the caller performing them).
func (f *Finisher) Finish(ctx context.Context, m *ledger.Manifest) (bool, error) {
	st, err := f.store.Current(ctx, m.BatchID)
	if err != nil && !errors.Is(err, ledger.ErrNotFound) {
		return false, err
	}
	var finished bool
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
	return true, f.effects(ctx, m, st, finished)
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

// claimTTL is how long the finisher (or a claim's holder) owns a round's
// effects before another caller may take them over (it crashed): longer than
// settling plus both bounded notification deliveries.
func (f *Finisher) claimTTL() time.Duration {
	return max(5*time.Minute, 3*f.n.MaxElapsed+time.Minute)
}

// claim is who is performing a batch's effects, since when.
type claim struct {
	Holder string    `json:"holder"`
	At     time.Time `json:"at"`
}

var errClaimed = errors.New("completion: another caller performs the effects")

// claimEffects makes this call the one that takes over a crashed finisher's
// effects (or retries notifications), unless another call holds a fresh
// claim: callers that find the same work left over (a duplicate delivery, the
// housekeeping job) never announce twice, and a crashed one is taken over in
// turn once its claim is stale.
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

// effects runs the once-per-round effects unless they are done. The caller
// whose write finished the round performs them (owner); any other caller
// leaves them to it until claimTTL after the final state, then takes them
// over through a claim, as the owner may have crashed. Nothing is written to
// own them on the usual path: the final state's write is the claim.
func (f *Finisher) effects(ctx context.Context, m *ledger.Manifest, st ledger.State, owner bool) error {
	if !owner {
		done, _, err := f.effectsDone(ctx, st)
		if err != nil || done {
			return err
		}
		if f.now().Sub(st.At) < f.claimTTL() {
			return nil
		}
		if mine, err := f.claimEffects(ctx, m, "effects", st.Round); err != nil || !mine {
			return err
		}
	}
	final, _ := st.Final()
	// The batch no longer counts among its owner's queued rows. Cleared
	// before the effects are marked done, so a failure here is retried by the
	// next finisher instead of leaving the marker behind.
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
	if len(fx.Notifications) > 0 || st.Snapshot == "" {
		// The notifications' outcomes are kept where a later delivery can
		// update them; a final state an older release wrote has no snapshot to
		// mark the effects done, so effects.json marks them, as it did then.
		if err := f.keepEffects(ctx, m, fx); err != nil {
			return err
		}
		if st.Snapshot == "" {
			return nil
		}
	}
	settled := ledger.Settlement{At: fx.At, ChargedUSD: fx.ChargedUSD}
	for _, o := range fx.Notifications {
		if !o.Delivered() && o.Retryable {
			settled.Undelivered++
		}
	}
	created, err := f.store.KeepFinal(ctx, st, settled)
	if err != nil {
		return fmt.Errorf("completion: %w", err)
	}
	if !created && len(fx.Notifications) == 0 {
		// The snapshot was written without the settlement (by an older
		// release during a rollout): mark the effects as that release did.
		return f.keepEffects(ctx, m, fx)
	}
	return nil
}

// keepEffects records fx in effects.json: a retry round's beside the earlier
// rounds' (kept in Earlier).
func (f *Finisher) keepEffects(ctx context.Context, m *ledger.Manifest, fx Effects) error {
	if fx.Round == 0 {
		_, err := f.bucket.CreateJSON(ctx, ledger.EffectsObject(m.BatchID), fx)
		return err
	}
	_, _, err := bucket.Update(ctx, f.bucket, ledger.EffectsObject(m.BatchID), func(cur Effects, exists bool) (Effects, error) {
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

// effectsDone reports whether the effects of st's round (a final state) are
// done, and whether some notification of it awaits a retry: its snapshot
// carries the settlement (or, for a batch an older release finished,
// effects.json records the round).
func (f *Finisher) effectsDone(ctx context.Context, st ledger.State) (done, undelivered bool, err error) {
	if st.Snapshot != "" {
		snap, err := f.store.Snapshot(ctx, st.BatchID, st.Snapshot)
		switch {
		case errors.Is(err, ledger.ErrNotFound):
			return false, false, nil
		case err != nil:
			return false, false, err
		case snap.Settled != nil:
			if snap.Settled.Undelivered == 0 {
				return true, false, nil
			}
			// Later deliveries update effects.json: it has the outcomes now.
			fx, _, err := f.readEffects(ctx, st.BatchID)
			return true, fx.Round == st.Round && fx.Retryable(), err
		}
	}
	fx, ok, err := f.readEffects(ctx, st.BatchID)
	if err != nil || !ok {
		return false, false, err
	}
	return fx.Round >= st.Round, fx.Retryable(), nil
}

func (f *Finisher) readEffects(ctx context.Context, batchID string) (Effects, bool, error) {
	var fx Effects
	_, err := f.bucket.ReadJSON(ctx, ledger.EffectsObject(batchID), &fx)
	if errors.Is(err, bucket.ErrNotFound) {
		return fx, false, nil
	}
	return fx, err == nil, err
}

// Standing is where a batch's effects stand.
type Standing struct {
	// State is the batch's current state (the zero State for a batch made
	// before batch states were kept).
	State ledger.State
	// Settled: the effects of the newest round are done; the batch needs no
	// more looking after (a retry may open another round).
	Settled bool
	// Undelivered: a notification failed for a reason a retry may fix.
	Undelivered bool
}

// Standing reads where the effects of a batch's newest round stand.
func (f *Finisher) Standing(ctx context.Context, batchID string) (Standing, error) {
	st, err := f.store.Current(ctx, batchID)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		// A batch older than its states: effects.json alone marks its effects.
		fx, ok, err := f.readEffects(ctx, batchID)
		return Standing{Settled: ok, Undelivered: ok && fx.Retryable()}, err
	case err != nil:
		return Standing{}, err
	case !st.Done():
		return Standing{State: st}, nil
	}
	done, undelivered, err := f.effectsDone(ctx, st)
	return Standing{State: st, Settled: done, Undelivered: undelivered}, err
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
