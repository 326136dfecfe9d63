package ledger

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/assetgen/assetgen/shared/layout"
)

// BatchPrefix is the prefix of every object of a batch: one prefix lists,
// retains or deletes it. References are shared across batches by content.
func BatchPrefix(batchID string) string { return layout.Batches + batchID + "/" }

// ManifestObject is the batch's immutable manifest.
func ManifestObject(batchID string) string { return BatchPrefix(batchID) + "manifest.json" }

// RowsPrefix lists the row state objects of a batch.
func RowsPrefix(batchID string) string { return BatchPrefix(batchID) + "rows/" }

// RowObject is the state object of one row.
func RowObject(batchID string, row int) string {
	return fmt.Sprintf("%s%02d.json", RowsPrefix(batchID), row)
}

// RowIndexOf parses the row index out of a row object name.
func RowIndexOf(batchID, name string) (int, bool) {
	s, ok := strings.CutPrefix(name, RowsPrefix(batchID))
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, ".json")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	return i, err == nil && i >= 0
}

// ImagePrefix lists the images of one row.
func ImagePrefix(batchID string, row int) string {
	return fmt.Sprintf("%simages/r%02d-v", BatchPrefix(batchID), row)
}

// ImageObject is the deterministic, create-once name of a variant's image.
func ImageObject(batchID string, row, variant int, ext string) string {
	return fmt.Sprintf("%s%d%s", ImagePrefix(batchID, row), variant, ext)
}

// StateObject is the batch's materialised state.json, written once, by whoever
// sees the last row finish: the final state of every row and the totals. While
// a batch runs, its row objects are its state (GET /batch reads them); a
// finished batch is this one object. Its creation is also the completion
// marker that once-per-batch effects hang on.
func StateObject(batchID string) string { return BatchPrefix(batchID) + "state.json" }

// RefObject is where a reference image is stored, addressed by its SHA-256.
func RefObject(sha256hex string) string { return layout.Refs + sha256hex }
