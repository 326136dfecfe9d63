package submit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/completion"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/problem"
	"golang.org/x/sync/errgroup"
)

// handleHistory answers the batch's audit trail: every ledger change, oldest
// first — who made it, what, when, under which request. Row changes come from
// each row's own trail; the batch's from its manifest, its states (a finished
// round's snapshot says what its effects did) and, for the notifications,
// effects.json.
func (s *server) handleHistory() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		m, err := s.manifest(r)
		if err != nil {
			problem.Write(w, r, err)
			return
		}
		rows, err := s.Store.Rows(ctx, m)
		if err != nil {
			problem.Write(w, r, fmt.Errorf("submit: reading the rows: %w", err))
			return
		}
		entries := []api.HistoryEntry{{At: m.CreatedAt, Actor: "submit/" + m.Owner, Action: "submitted", RequestID: m.RequestID}}
		for _, rc := range ledger.SortedHistory(rows) {
			row := rc.Row
			entries = append(entries, api.HistoryEntry{
				At: rc.At, Row: &row, Version: rc.Version, Actor: rc.Actor, Action: rc.Action, RequestID: rc.RequestID, Detail: rc.Detail,
			})
		}
		states, current, err := s.states(ctx, m)
		if err != nil {
			problem.Write(w, r, fmt.Errorf("submit: reading the batch's states: %w", err))
			return
		}
		h := api.History{BatchID: m.BatchID, Snapshots: []api.Snapshot{}, State: current}
		for _, st := range states {
			h.Snapshots = append(h.Snapshots, api.Snapshot{Name: st.Snapshot, Event: string(st.Event), Status: string(st.Status), At: st.At, Actor: st.Actor, Round: st.Round})
			// The manifest's entry stands for the accepted state.
			if st.Event != ledger.Accepted {
				detail := string(st.Status)
				if st.Event == ledger.Retried && st.Retry != nil {
					detail = fmt.Sprintf("round %d: %d variant(s) of row(s) %v, estimate $%.3f", st.Round, st.Retry.Variants, st.Retry.Rows, st.Retry.EstimateUSD)
				}
				entries = append(entries, api.HistoryEntry{At: st.At, Actor: st.Actor, Action: string(st.Event), RequestID: st.RequestID, Detail: detail})
			}
		}
		settledRounds := map[int]bool{}
		for _, st := range states {
			if st.Settled != nil {
				settledRounds[st.Round] = true
				entries = append(entries, settledEntry(st.Settled.At, st.Round, st.Settled.ChargedUSD))
			}
		}
		// effects.json holds the notifications' outcomes, and the settlement of
		// a batch an older release finished.
		if m.Notify.Announces() || len(settledRounds) == 0 {
			var last completion.Effects
			if _, err := s.Bucket.ReadJSON(ctx, ledger.EffectsObject(m.BatchID), &last); err == nil {
				for _, fx := range append(last.Earlier, last) {
					if !settledRounds[fx.Round] {
						entries = append(entries, settledEntry(fx.At, fx.Round, fx.ChargedUSD))
					}
					for _, o := range fx.Notifications {
						detail := fmt.Sprintf("%s %s after %d attempt(s)", o.Kind, o.Status, o.Attempts)
						if o.Error != "" {
							detail += ": " + o.Error
						}
						entries = append(entries, api.HistoryEntry{At: o.At, Actor: "generate", Action: "notified", Detail: detail})
					}
				}
			}
		}
		sort.SliceStable(entries, func(i, j int) bool { return entries[i].At.Before(entries[j].At) })
		h.Entries = entries
		api.WriteJSON(w, http.StatusOK, h)
	})
}

func settledEntry(at time.Time, round int, chargedUSD float64) api.HistoryEntry {
	return api.HistoryEntry{At: at, Actor: "generate", Action: "settled", Detail: fmt.Sprintf("%s round charged $%.3f", roundName(round), chargedUSD)}
}

// states reads the batch's kept states, oldest first, and names the newest:
// one listing, one read per snapshot (a batch has two to four), and
// state.json. A state whose snapshot is not written yet (its writer died in
// between; the next change writes it) is taken from state.json.
func (s *server) states(ctx context.Context, m *ledger.Manifest) ([]ledger.State, string, error) {
	var names []string
	var cur ledger.State
	var curErr error
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		names, err = s.Store.Snapshots(gctx, m.BatchID)
		return err
	})
	g.Go(func() error {
		cur, curErr = s.Store.Current(gctx, m.BatchID)
		if errors.Is(curErr, ledger.ErrNotFound) {
			return nil
		}
		return curErr
	})
	if err := g.Wait(); err != nil {
		return nil, "", err
	}
	states := make([]ledger.State, len(names))
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, name := range names {
		g.Go(func() (err error) {
			states[i], err = s.Store.Snapshot(gctx, m.BatchID, name)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, "", err
	}
	if curErr != nil {
		return states, "", nil
	}
	if !slices.Contains(names, cur.Snapshot) {
		// Not kept yet, or written by a release that kept no snapshots.
		if cur.Snapshot == "" && cur.Done() {
			cur.Event, cur.Status, cur.At, cur.Actor = ledger.Finished, cur.Summary.Status, cur.FinishedAt, "completion"
		}
		states = append(states, cur)
	}
	return states, cur.Snapshot, nil
}
