package submit

import (
	"errors"
	"fmt"
	"net/http"
	"sort"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/completion"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/problem"
)

// handleHistory answers the batch's audit trail: every ledger change, oldest
// first — who made it, what, when, under which request. Row changes come from
// each row's own trail; the batch's from its manifest, state.json and effects
// marker.
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
		switch final, err := s.Store.State(ctx, m.BatchID); {
		case err == nil:
			entries = append(entries, api.HistoryEntry{At: final.FinishedAt, Actor: "generate", Action: "finished", Detail: string(final.Summary.Status)})
		case !errors.Is(err, ledger.ErrNotFound):
			problem.Write(w, r, fmt.Errorf("submit: reading the batch state: %w", err))
			return
		}
		var fx completion.Effects
		if _, err := s.Bucket.ReadJSON(ctx, ledger.EffectsObject(m.BatchID), &fx); err == nil {
			entries = append(entries, api.HistoryEntry{At: fx.At, Actor: "generate", Action: "settled", Detail: fmt.Sprintf("charged $%.3f", fx.ChargedUSD)})
			for _, o := range fx.Notifications {
				detail := fmt.Sprintf("%s %s after %d attempt(s)", o.Kind, o.Status, o.Attempts)
				if o.Error != "" {
					detail += ": " + o.Error
				}
				entries = append(entries, api.HistoryEntry{At: o.At, Actor: "generate", Action: "notified", Detail: detail})
			}
		}
		sort.SliceStable(entries, func(i, j int) bool { return entries[i].At.Before(entries[j].At) })
		api.WriteJSON(w, http.StatusOK, api.History{BatchID: m.BatchID, Entries: entries})
	})
}
