package submit

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/problem"
)

// SheetsObject lists, per user id, the spreadsheets that user's batches may
// write to: {"users": {"<user id>": ["<spreadsheetId>", …]}}. Every team shares
// its sheets with the same service account, so without this list any user
// could append rows to any other team's sheet.
const SheetsObject = "config/sheets.json"

// sheetGrants is the allow-list, read from the bucket and cached for a TTL.
type sheetGrants struct {
	store *ledger.Store
	ttl   time.Duration

	mu     sync.Mutex
	loaded time.Time
	users  map[string][]string
}

// allow refuses a spreadsheet the user was not granted. An unreadable list,
// with none read before, refuses too.
func (g *sheetGrants) allow(ctx context.Context, user, spreadsheetID string) error {
	g.mu.Lock()
	users, fresh := g.users, g.users != nil && time.Since(g.loaded) < g.ttl
	g.mu.Unlock()
	if !fresh {
		var doc struct {
			Users map[string][]string `json:"users"`
		}
		err := g.store.ReadJSON(ctx, SheetsObject, &doc)
		g.mu.Lock()
		if err == nil || errors.Is(err, ledger.ErrNotFound) {
			g.users, g.loaded = doc.Users, time.Now()
			if g.users == nil {
				g.users = map[string][]string{}
			}
		}
		users = g.users
		g.mu.Unlock()
		if users == nil {
			return problem.Wrap(problem.NotReady, err, "the list of spreadsheets cannot be read; retry shortly")
		}
	}
	if !slices.Contains(users[user], spreadsheetID) {
		return &problem.Error{Code: problem.Forbidden,
			Detail: "this spreadsheet is not registered for your account; an operator adds it to " + SheetsObject,
			Fields: []problem.FieldError{{Field: "/sheet/spreadsheetId", Code: problem.FieldNotGranted, Detail: "not registered for this account"}}}
	}
	return nil
}
