package submit

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/problem"
)

// sheetGrants is the allow-list of layout.SheetsObject, read from the bucket
// and cached for a TTL. Every team shares its sheets with the same service
// account, so without this list any user could append rows to any other
// team's sheet.
type sheetGrants struct {
	bucket *bucket.Bucket
	ttl    time.Duration

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
		_, err := g.bucket.ReadJSON(ctx, layout.SheetsObject, &doc)
		g.mu.Lock()
		if err == nil || errors.Is(err, bucket.ErrNotFound) {
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
			Detail: "this spreadsheet is not registered for your account; an operator adds it to " + layout.SheetsObject,
			Fields: []problem.FieldError{{Field: "/sheet/spreadsheetId", Code: problem.FieldNotGranted, Detail: "not registered for this account"}}}
	}
	return nil
}
