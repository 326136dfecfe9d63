package refs

import (
	"fmt"

	"github.com/assetgen/assetgen/shared/ledger"
)

// Merge applies a row's content rules to its references, given in merge order
// (the row's own first, then the global ones): the first URL of each content
// (by SHA-256 in shaOf) is kept, later ones are dropped as duplicates of it,
// and once limit references are kept (a negative limit keeps every distinct
// one) every later URL is dropped as over the limit: those are never fetched,
// so their content is not known. A URL before that with no digest in shaOf
// was never fetched and is dropped too.
// Merge is pure: the same inputs give the same answer, which the ledger
// records so the row can explain every reference it left out.
func Merge(urls []string, shaOf map[string]string, limit int) (keep []string, dropped []ledger.Dropped) {
	first := make(map[string]string, len(urls)) // sha → first URL with it
	for _, u := range urls {
		if limit >= 0 && len(keep) >= limit {
			dropped = append(dropped, ledger.Dropped{URL: u, Reason: overLimit(limit)})
			continue
		}
		sha := shaOf[u]
		if sha == "" {
			dropped = append(dropped, ledger.Dropped{URL: u, Reason: "not fetched"})
			continue
		}
		if f, seen := first[sha]; seen {
			dropped = append(dropped, ledger.Dropped{URL: u, Reason: "duplicate of " + f})
			continue
		}
		first[sha] = u
		keep = append(keep, u)
	}
	return keep, dropped
}

func overLimit(limit int) string {
	if limit == 1 {
		return "over the limit of 1 reference"
	}
	return fmt.Sprintf("over the limit of %d references", limit)
}
