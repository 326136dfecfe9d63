package submit

import (
	"context"
	"errors"
	"slices"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/cached"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/problem"
)

// sheetGrants is the allow-list of layout.SheetsObject, read from the bucket
// and cached for a TTL. Every team shares its sheets with the same service
// account, so without this list any user could append rows to any other
// team's sheet.
type sheetGrants struct {
	users *cached.Value[map[string][]string]
}

func newSheetGrants(load func(context.Context) (map[string][]string, error), opt cached.Options) *sheetGrants {
	return &sheetGrants{users: cached.New(layout.SheetsObject, load, opt)}
}

// readSheetGrants reads the allow-list; no object grants nothing.
func readSheetGrants(b *bucket.Bucket) func(context.Context) (map[string][]string, error) {
	return func(ctx context.Context) (map[string][]string, error) {
		var doc struct {
			Users map[string][]string `json:"users"`
		}
		_, err := b.ReadJSON(ctx, layout.SheetsObject, &doc)
		if err != nil && !errors.Is(err, bucket.ErrNotFound) {
			return nil, err
		}
		if doc.Users == nil {
			doc.Users = map[string][]string{}
		}
		return doc.Users, nil
	}
}

// allow refuses a spreadsheet the user was not granted. A list that cannot be
// read again keeps the last good one; with none read yet, or one that is read
// but invalid, it refuses too.
func (g *sheetGrants) allow(ctx context.Context, user, spreadsheetID string) error {
	users, err := g.users.Get(ctx)
	if err != nil {
		return problem.Wrap(problem.NotReady, err, "the list of spreadsheets cannot be read; retry shortly")
	}
	if !slices.Contains(users[user], spreadsheetID) {
		return &problem.Error{Code: problem.Forbidden,
			Detail: "this spreadsheet is not registered for your account; an operator adds it to " + layout.SheetsObject,
			Fields: []problem.FieldError{{Field: "/sheet/spreadsheetId", Code: problem.FieldNotGranted, Detail: "not registered for this account"}}}
	}
	return nil
}
