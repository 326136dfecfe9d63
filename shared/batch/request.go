// Package batch holds the batch request as the frontend sends it, the rules that
// validate it (pure functions, no I/O) and the normalised spec the rest of the
// pipeline works from.
package batch

import (
	"strings"

	"github.com/google/uuid"

	"github.com/assetgen/assetgen/shared/ledger"
)

// Limits of one batch.
const (
	MaxRows        = 10
	MaxVariants    = 3
	MaxPromptRunes = 2000
	MaxClientID    = 64
	// MaxRefsPerList bounds each refs list (a row's own, or the global one) before
	// merging. Longer lists than the model takes are accepted and capped: the
	// merged list keeps MaxMergedRefs (or the model's fewer) and reports the
	// rest as dropped, unfetched.
	MaxRefsPerList = 20
	MaxMergedRefs  = 6
	MaxRefURL      = 2048
)

// ConfirmWord is what a live run must carry in "confirm", typed exactly.
const ConfirmWord = "CONFIRM"

// Request is the body of POST /batch/images.
type Request struct {
	RunMode string       `json:"runMode"`
	Confirm string       `json:"confirm,omitempty"`
	Model   string       `json:"model,omitempty"`
	Refs    []string     `json:"refs,omitempty"`
	Rows    []RowRequest `json:"rows"`
	// ImageSize and OutputFormat apply to every row that names none.
	ImageSize    string `json:"imageSize,omitempty"`
	OutputFormat string `json:"outputFormat,omitempty"`
	// WebhookURL, when set, receives a signed POST when the batch finishes.
	WebhookURL string `json:"webhookUrl,omitempty"`
	// Sheet, when set, gets one row per batch row when the batch finishes.
	Sheet *SheetRequest `json:"sheet,omitempty"`
}

// SheetRequest names a Google Sheets range for write-back.
type SheetRequest struct {
	SpreadsheetID string `json:"spreadsheetId"`
	Range         string `json:"range"`
}

// RowRequest is one row of a Request.
type RowRequest struct {
	ID           string   `json:"id,omitempty"`
	Prompt       string   `json:"prompt"`
	Variants     *int     `json:"variants,omitempty"`
	Refs         []string `json:"refs,omitempty"`
	AspectRatio  string   `json:"aspectRatio,omitempty"`
	ImageSize    string   `json:"imageSize,omitempty"`
	OutputFormat string   `json:"outputFormat,omitempty"`
	// Seed asks the model for reproducible images: variant v is made with
	// Seed+v.
	Seed *int64 `json:"seed,omitempty"`
}

// Spec is a validated request with every default filled in.
type Spec struct {
	RunMode ledger.RunMode
	Model   string
	// ModelAPI is how the model is called (models.GenerateContent or
	// models.GenerateImages).
	ModelAPI string
	// PriceUSD is one image's price at the batch's size.
	PriceUSD   float64
	Rows       []RowSpec
	WebhookURL string
	Sheet      *SheetRequest
}

// RowSpec is a validated row. RefURLs is the row's merge order: its own refs first,
// then the global ones, textual duplicates removed; content dedup and the cap come
// later, once the references have been fetched.
type RowSpec struct {
	Index       int
	ID          string
	Prompt      string
	Variants    int
	AspectRatio string
	RefURLs     []string
	// ImageSize and OutputFormat are the row's, the batch's or the model's
	// defaults; PriceUSD is one image's price at ImageSize.
	ImageSize    string
	OutputFormat string
	Seed         *int64
	PriceUSD     float64
}

// Images is how many images the spec asks for.
func (s Spec) Images() int {
	n := 0
	for _, r := range s.Rows {
		n += r.Variants
	}
	return n
}

// NewID returns a fresh batch id: a UUIDv7, so ids sort by creation time.
func NewID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// ValidID reports whether s is a batch id this service could have issued. Ids
// become object names, so anything else is refused before it reaches storage.
func ValidID(s string) bool {
	if len(s) != 36 {
		return false
	}
	u, err := uuid.Parse(s)
	return err == nil && u.String() == strings.ToLower(s) && s == u.String()
}
