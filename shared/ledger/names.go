package ledger

import (
	"fmt"

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

// ImagePrefix lists the images of one row.
func ImagePrefix(batchID string, row int) string {
	return fmt.Sprintf("%simages/r%02d-v", BatchPrefix(batchID), row)
}

// ImageObject is the deterministic, create-once name of a variant's image.
func ImageObject(batchID string, row, variant int, ext string) string {
	return fmt.Sprintf("%s%d%s", ImagePrefix(batchID, row), variant, ext)
}

// StateObject is the batch's state.json: its newest batch-level state
// (accepted, started, cancelled, finished), replaced by compare-and-swap at
// each. Every state is also kept, create-once, as a snapshot beside it. While
// a batch runs its row objects are its detailed state (GET /batch reads
// them); a finished batch's state.json holds its final rows and totals, and
// the write that finishes it is the mark once-per-batch effects hang on.
func StateObject(batchID string) string { return BatchPrefix(batchID) + "state.json" }

// SnapshotObject is the immutable copy of one state, named by SnapshotName.
func SnapshotObject(batchID, name string) string { return BatchPrefix(batchID) + name }

// SnapshotPrefix lists a batch's snapshots, oldest first.
func SnapshotPrefix(batchID string) string { return BatchPrefix(batchID) + "state-" }

// RefObject is where a reference image is stored, addressed by its SHA-256.
func RefObject(sha256hex string) string { return layout.Refs + sha256hex }
