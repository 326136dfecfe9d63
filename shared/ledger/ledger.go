// Package ledger is the core of the batch ledger, free of any I/O: its types
// (an immutable manifest per batch, one small state object per row, markers
// for effects that must happen once per batch), the run modes, the pure row
// transitions (transitions.go) and the object names (names.go). The ledger's
// storage I/O is the ledgerstore package's.
package ledger

import (
	"errors"
	"math"
	"sort"
	"time"
)

// RunMode says whether a batch spends money.
type RunMode string

// Run modes.
const (
	DryRun RunMode = "dry_run"
	Live   RunMode = "live"
)

// Status of a row or a variant.
type Status string

// Statuses. queued and running are live; the rest are terminal.
const (
	Queued    Status = "queued"
	Running   Status = "running"
	Done      Status = "done"
	Failed    Status = "failed"
	Cancelled Status = "cancelled"
)

// Terminal reports whether s is final.
func (s Status) Terminal() bool { return s == Done || s == Failed || s == Cancelled }

// Errors the transitions and the ledger store return.
var (
	// ErrNotFound means no such batch, row or ledger object.
	ErrNotFound = errors.New("ledger: not found")
	// ErrExists means another writer created the manifest first.
	ErrExists = errors.New("ledger: already exists")
	// ErrNoChange means a transition had nothing to do: the store skips the write.
	ErrNoChange = errors.New("ledger: no change")
	// ErrLeaseHeld means another attempt holds the row's unexpired lease.
	ErrLeaseHeld = errors.New("ledger: row is leased by another attempt")
	// ErrTerminal means the row is already final; the attempt has nothing to do.
	ErrTerminal = errors.New("ledger: row is already final")
)

// Manifest is written once at submit and never changed.
type Manifest struct {
	Schema    int       `json:"schema"`
	BatchID   string    `json:"batchId"`
	Owner     string    `json:"owner"`
	RunMode   RunMode   `json:"runMode"`
	Model     string    `json:"model"`
	CreatedAt time.Time `json:"createdAt"`
	RequestID string    `json:"requestId,omitempty"`
	// ModelAPI is how the model is called (models.GenerateContent when
	// absent, or models.GenerateImages: one call per row's variants).
	ModelAPI string `json:"modelApi,omitempty"`
	// PriceUSD is the model's price per image when the batch was submitted,
	// at the batch's image size; a row of another size carries its own.
	PriceUSD    float64 `json:"priceUsd"`
	EstimateUSD float64 `json:"estimateUsd"`
	// BudgetDay is the UTC day whose budget holds the batch's reservation
	// (live runs only); settlement goes to the same day.
	BudgetDay string `json:"budgetDay,omitempty"`
	// Notify says who hears about the batch when it finishes.
	Notify Notify        `json:"notify,omitzero"`
	Rows   []ManifestRow `json:"rows"`
}

// ManifestRow is one row as submitted.
type ManifestRow struct {
	Index       int       `json:"index"`
	ID          string    `json:"id,omitempty"`
	Prompt      string    `json:"prompt"`
	Variants    int       `json:"variants"`
	AspectRatio string    `json:"aspectRatio"`
	Refs        []Ref     `json:"refs,omitempty"`
	DroppedRefs []Dropped `json:"droppedRefs,omitempty"`
	// ImageSize ("1K", "2K", "4K") and OutputFormat ("png", "jpeg",
	// "webp") are absent in batches older than them: the model's default
	// size, and png.
	ImageSize    string `json:"imageSize,omitempty"`
	OutputFormat string `json:"outputFormat,omitempty"`
	// Seed is the row's seed, when it asked for one; variant v asks for
	// Seed+v.
	Seed *int64 `json:"seed,omitempty"`
	// PriceUSD is one image's price at the row's size; absent means the
	// manifest's PriceUSD.
	PriceUSD *float64 `json:"priceUsd,omitempty"`
}

// RowPriceUSD is what one image of row i costs.
func (m *Manifest) RowPriceUSD(i int) float64 {
	if i >= 0 && i < len(m.Rows) && m.Rows[i].PriceUSD != nil {
		return *m.Rows[i].PriceUSD
	}
	return m.PriceUSD
}

// Ref is a reference image stored content-addressed in the bucket.
type Ref struct {
	URL      string `json:"url"`
	SHA256   string `json:"sha256"`
	Object   string `json:"object"`
	MIMEType string `json:"mimeType"`
}

// Dropped is a reference left out of a row, and why.
type Dropped struct {
	URL    string `json:"url"`
	Reason string `json:"reason"`
}

// Notify is where a finished batch is announced.
type Notify struct {
	WebhookURL string `json:"webhookUrl,omitempty"`
	// SpreadsheetID and SheetRange name a Google Sheets range for write-back.
	SpreadsheetID string `json:"spreadsheetId,omitempty"`
	SheetRange    string `json:"sheetRange,omitempty"`
}

// Announces reports whether the batch is announced when it finishes (a
// webhook or a spreadsheet).
func (n Notify) Announces() bool { return n.WebhookURL != "" || n.SpreadsheetID != "" }

// Images is the number of images the batch asks for.
func (m *Manifest) Images() int {
	n := 0
	for _, r := range m.Rows {
		n += r.Variants
	}
	return n
}

// Row is the mutable state of one row.
type Row struct {
	Index    int       `json:"index"`
	Status   Status    `json:"status"`
	Variants []Variant `json:"variants"`
	// Attempts counts task attempts that started work on the row.
	Attempts int    `json:"attempts"`
	Lease    *Lease `json:"lease,omitempty"`
	// CancelRequested stops a running row after its current variants.
	CancelRequested bool `json:"cancelRequested,omitempty"`
	// Round is the batch's retry round the row last ran in (0: the submit's).
	Round     int       `json:"round,omitempty"`
	Error     *Failure  `json:"error,omitempty"`
	Version   int       `json:"version"`
	UpdatedAt time.Time `json:"updatedAt"`
	// History is the row's append-only audit trail: every write adds one entry.
	History []Change `json:"history"`
}

// Variant is one image of a row.
type Variant struct {
	Status Status `json:"status"`
	Object string `json:"object,omitempty"`
	// CostUSD is what the variant cost, over every round that ran it (a
	// billed failure before a retry still counts).
	CostUSD float64  `json:"costUsd,omitempty"`
	Error   *Failure `json:"error,omitempty"`
	// Seed is the seed the image was asked for with, when one was sent: a
	// row asking for it with the same prompt, model and settings re-runs it.
	Seed *int64 `json:"seed,omitempty"`
}

// Failure says why something failed, with a stable problem code.
type Failure struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Lease marks which attempt works on a row, until when.
type Lease struct {
	Holder string    `json:"holder"`
	Until  time.Time `json:"until"`
}

// Change is one audit entry: who changed the row, what, when, under which request.
type Change struct {
	Version   int       `json:"version"`
	At        time.Time `json:"at"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"`
	RequestID string    `json:"requestId,omitempty"`
	Detail    string    `json:"detail,omitempty"`
}

// NewRow is the state of a row nobody has touched yet. Row objects are created
// lazily by the first write, so a missing object reads as this.
func NewRow(mr ManifestRow) Row {
	vs := make([]Variant, mr.Variants)
	for i := range vs {
		vs[i].Status = Queued
	}
	return Row{Index: mr.Index, Status: Queued, Variants: vs}
}

// Clone returns a deep copy, so transitions never alias their input.
func (r Row) Clone() Row {
	c := r
	c.Variants = append([]Variant(nil), r.Variants...)
	for i, v := range c.Variants {
		if v.Error != nil {
			e := *v.Error
			c.Variants[i].Error = &e
		}
	}
	c.History = append([]Change(nil), r.History...)
	if r.Lease != nil {
		l := *r.Lease
		c.Lease = &l
	}
	if r.Error != nil {
		e := *r.Error
		c.Error = &e
	}
	return c
}

// CostUSD is what the row's generated images cost, to the micro-dollar.
func (r Row) CostUSD() float64 {
	var c float64
	for _, v := range r.Variants {
		c += v.CostUSD
	}
	return math.Round(c*1e6) / 1e6
}

// EffectsObject marks that a finished batch's once-per-batch effects (budget
// settlement, notifications) are done, for the round it names.
func EffectsObject(batchID string) string { return BatchPrefix(batchID) + "effects.json" }

// Final is the content of a batch's completion marker: its state when the last
// row finished.
type Final struct {
	BatchID    string    `json:"batchId"`
	FinishedAt time.Time `json:"finishedAt"`
	Summary    Summary   `json:"summary"`
	Rows       []Row     `json:"rows"`
}

// SortedHistory merges the audit trails of rows into one list ordered by time.
func SortedHistory(rows []Row) []RowChange {
	var out []RowChange
	for _, r := range rows {
		for _, c := range r.History {
			out = append(out, RowChange{Row: r.Index, Change: c})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// RowChange is an audit entry with the row it belongs to.
type RowChange struct {
	Row int `json:"row"`
	Change
}
