// Package api is the HTTP contract the frontend depends on: the JSON shapes of
// responses and events, built from the ledger, and the one encode/decode pair
// every handler uses.
package api

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"time"

	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/problem"
	"github.com/assetgen/assetgen/shared/urls"
)

// MaxBody is the largest request body accepted.
const MaxBody = 1 << 20

// WriteJSON answers with v as JSON. Headers are set before WriteHeader.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ReadBody reads a JSON request body of at most limit bytes. It answers the
// content-type and size rules as problem errors.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && mt != "application/problem+json") {
			return nil, problem.New(problem.UnsupportedMediaType, "send the body as application/json, not %q", ct)
		}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, problem.New(problem.PayloadTooLarge, "the body is larger than %d bytes", limit)
	}
	if err != nil {
		return nil, problem.Wrap(problem.MalformedJSON, err, "the body could not be read")
	}
	return b, nil
}

// SubmitResponse is the 202 answer to POST /batch/images.
type SubmitResponse struct {
	BatchID     string        `json:"batchId"`
	RunMode     string        `json:"runMode"`
	Status      ledger.Status `json:"status"`
	ProgressURL string        `json:"progressUrl"`
	// ProgressTokenExpiresAt is when progressUrl's token stops opening the
	// stream; GET /batch/{id}/progress-token mints a new one.
	ProgressTokenExpiresAt time.Time `json:"progressTokenExpiresAt"`
	StatusURL              string    `json:"statusUrl"`
	CreatedAt              time.Time `json:"createdAt"`
	Estimate               Estimate  `json:"estimate"`
	// Budget is the caller's budget for today after this batch's reservation.
	Budget *Budget     `json:"budget,omitempty"`
	Rows   []SubmitRow `json:"rows"`
	// Round is the retry round a POST /batch/{id}/retry began (1 for the
	// first retry); the estimate is that round's images.
	Round int `json:"round,omitempty"`
}

// Budget is a user's spend on live runs for one UTC day: GET /budget.
type Budget struct {
	Day          string  `json:"day"`
	LimitUSD     float64 `json:"limitUsd"`
	ReservedUSD  float64 `json:"reservedUsd"`
	SpentUSD     float64 `json:"spentUsd"`
	RemainingUSD float64 `json:"remainingUsd"`
	// Total is the deployment's daily cap on every user's live spend together
	// (GET /budget only): a batch must fit both.
	Total *TotalBudget `json:"total,omitempty"`
}

// TotalBudget is the deployment's daily cap and what remains of it.
type TotalBudget struct {
	LimitUSD     float64 `json:"limitUsd"`
	RemainingUSD float64 `json:"remainingUsd"`
}

// Estimate is what a batch will cost at most.
type Estimate struct {
	Images           int     `json:"images"`
	Model            string  `json:"model"`
	PricePerImageUSD float64 `json:"pricePerImageUsd"`
	CostUSD          float64 `json:"costUsd"`
	// Charged is false for dry runs: they cost nothing and never touch the budget.
	Charged bool `json:"charged"`
}

// SubmitRow echoes each row's index and client id, its status (queued, or its
// state when a retry answers an existing batch), and what happened to its refs.
type SubmitRow struct {
	Index       int              `json:"index"`
	ID          string           `json:"id,omitempty"`
	Status      ledger.Status    `json:"status"`
	Refs        int              `json:"refs"`
	DroppedRefs []ledger.Dropped `json:"droppedRefs,omitempty"`
}

// Batch is the state of a batch: GET /batch/{id}.
type Batch struct {
	BatchID   string    `json:"batchId"`
	RunMode   string    `json:"runMode"`
	Model     string    `json:"model"`
	CreatedAt time.Time `json:"createdAt"`
	Totals
	Rows []Row `json:"rows"`
	// Notifications are the finished batch's webhook and Sheets deliveries.
	Notifications []Notification `json:"notifications,omitempty"`
	// Cancel is the cancel answer's account of what the cancel leaves.
	Cancel *Cancellation `json:"cancel,omitempty"`
}

// Cancellation says what a cancel leaves: images already made are kept,
// listed and charged; rows being generated stop after the variants they are
// making, which may still be made and charged; the rest of a live batch's
// reservation is released when its last row stops.
type Cancellation struct {
	// Kept counts the images made before the cancel; ChargedUSD is their cost.
	Kept       int     `json:"kept"`
	ChargedUSD float64 `json:"chargedUsd"`
	// MayStillMake counts the variants of rows still generating whose model
	// calls may have started: at most this many more images, at most
	// MayStillChargeUSD more.
	MayStillMake      int     `json:"mayStillMake"`
	MayStillChargeUSD float64 `json:"mayStillChargeUsd"`
	// ReleasedUSD is the part of the reservation that is not charged,
	// released when the batch finishes (at once when Finished).
	ReleasedUSD float64 `json:"releasedUsd"`
	Finished    bool    `json:"finished"`
}

// usd rounds to the micro-dollar, as the ledger and budgets count.
func usd(x float64) float64 { return math.Round(x*1e6) / 1e6 }

// NewCancellation accounts for a cancel from the rows as it left them; rt is
// the retry round the cancel stopped (nil: the submit's), whose reservation
// is its estimate and whose charge is what it added.
func NewCancellation(m *ledger.Manifest, rows []ledger.Row, rt *ledger.Retry) Cancellation {
	var c Cancellation
	finished := true
	for _, r := range rows {
		c.ChargedUSD += r.CostUSD()
		for _, v := range r.Variants {
			switch {
			case v.Status == ledger.Done:
				c.Kept++
			case !v.Status.Terminal() && r.Status == ledger.Running:
				c.MayStillMake++
			}
		}
		finished = finished && r.Status.Terminal()
	}
	c.Finished = finished
	if m.RunMode == ledger.Live {
		c.MayStillChargeUSD = usd(float64(c.MayStillMake) * m.PriceUSD)
		reserved, before := m.EstimateUSD, 0.0
		if rt != nil {
			reserved, before = rt.EstimateUSD, rt.PriorCostUSD
		}
		c.ReleasedUSD = usd(max(0, reserved-(c.ChargedUSD-before)-c.MayStillChargeUSD))
	}
	c.ChargedUSD = usd(c.ChargedUSD)
	return c
}

// Notification is one announcement of a finished batch.
type Notification struct {
	Kind     string    `json:"kind"`   // webhook or sheet
	Target   string    `json:"target"` // the URL, or spreadsheetId!range
	Status   string    `json:"status"` // delivered or failed
	Attempts int       `json:"attempts"`
	Error    string    `json:"error,omitempty"`
	At       time.Time `json:"at"`
	// Retrying says the housekeeping job will try a failed delivery again.
	Retrying bool `json:"retrying,omitempty"`
}

// Totals are a batch's counts: the data of event: batch.
type Totals struct {
	Status   ledger.Status `json:"status"`
	Rows     ledger.Counts `json:"rowCounts"`
	Variants ledger.Counts `json:"variantCounts"`
	CostUSD  float64       `json:"costUsd"`
}

// Row is one row's full snapshot: the data of event: row.
type Row struct {
	BatchID     string           `json:"batchId"`
	Index       int              `json:"index"`
	ID          string           `json:"id,omitempty"`
	Prompt      string           `json:"prompt"`
	Status      ledger.Status    `json:"status"`
	Version     int              `json:"version"`
	UpdatedAt   *time.Time       `json:"updatedAt,omitempty"`
	Attempts    int              `json:"attempts"`
	Error       *ledger.Failure  `json:"error,omitempty"`
	DroppedRefs []ledger.Dropped `json:"droppedRefs,omitempty"`
	Variants    []Variant        `json:"variants"`
}

// Variant is one image of a row, with a signed URL once it exists.
type Variant struct {
	Index     int           `json:"index"`
	Status    ledger.Status `json:"status"`
	URL       string        `json:"url,omitempty"`
	ExpiresAt *time.Time    `json:"expiresAt,omitempty"`
	// Link is the image's stable link (GET /batch only): it redirects to a
	// fresh signed URL for as long as the image is kept.
	Link    string          `json:"link,omitempty"`
	CostUSD float64         `json:"costUsd,omitempty"`
	Error   *ledger.Failure `json:"error,omitempty"`
}

// SignFunc signs a URL for an object name.
type SignFunc func(object string) (urls.Signed, error)

// NewRow builds a row's snapshot, signing a URL for every stored image.
func NewRow(batchID string, mr ledger.ManifestRow, r ledger.Row, sign SignFunc) (Row, error) {
	out := Row{
		BatchID: batchID, Index: mr.Index, ID: mr.ID, Prompt: mr.Prompt,
		Status: r.Status, Version: r.Version, Attempts: r.Attempts, Error: r.Error,
		DroppedRefs: mr.DroppedRefs, Variants: make([]Variant, len(r.Variants)),
	}
	if !r.UpdatedAt.IsZero() {
		t := r.UpdatedAt
		out.UpdatedAt = &t
	}
	for i, v := range r.Variants {
		vv := Variant{Index: i, Status: v.Status, CostUSD: v.CostUSD, Error: v.Error}
		if v.Object != "" {
			s, err := sign(v.Object)
			if err != nil {
				return Row{}, err
			}
			vv.URL, vv.ExpiresAt = s.URL, &s.Expires
		}
		out.Variants[i] = vv
	}
	return out, nil
}

// NewTotals builds a batch's totals from its rows.
func NewTotals(rows []ledger.Row) Totals {
	s := ledger.Summarize(rows)
	return Totals{Status: s.Status, Rows: s.Rows, Variants: s.Variants, CostUSD: s.CostUSD}
}

// NewBatch builds the full batch state.
func NewBatch(m *ledger.Manifest, rows []ledger.Row, sign SignFunc) (Batch, error) {
	b := Batch{
		BatchID: m.BatchID, RunMode: string(m.RunMode), Model: m.Model, CreatedAt: m.CreatedAt,
		Totals: NewTotals(rows), Rows: make([]Row, len(rows)),
	}
	for i, r := range rows {
		row, err := NewRow(m.BatchID, m.Rows[i], r, sign)
		if err != nil {
			return Batch{}, err
		}
		b.Rows[i] = row
	}
	return b, nil
}

// History is a batch's audit trail: GET /batch/{id}/history.
type History struct {
	BatchID string         `json:"batchId"`
	Entries []HistoryEntry `json:"entries"`
	// Snapshots are the batch-level states kept as immutable objects, oldest
	// first; State names the newest (what the batch's state.json holds).
	Snapshots []Snapshot `json:"snapshots"`
	State     string     `json:"state,omitempty"`
}

// Snapshot is one kept batch-level state: accepted, started, cancelled,
// finished.
type Snapshot struct {
	Name   string    `json:"name"`
	Event  string    `json:"event"`
	Status string    `json:"status"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	// Round is the retry round the state belongs to (0, absent: the submit's).
	Round int `json:"round,omitempty"`
}

// HistoryEntry is one ledger change. Row is absent for batch-level changes.
type HistoryEntry struct {
	At        time.Time `json:"at"`
	Row       *int      `json:"row,omitempty"`
	Version   int       `json:"version,omitempty"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"`
	RequestID string    `json:"requestId,omitempty"`
	Detail    string    `json:"detail,omitempty"`
}

// ProgressToken is a fresh stream URL: GET /batch/{id}/progress-token.
type ProgressToken struct {
	ProgressURL string    `json:"progressUrl"`
	ExpiresAt   time.Time `json:"expiresAt"`
}

// Models is GET /models: what a batch may ask for.
type Models struct {
	Default string  `json:"default"`
	Models  []Model `json:"models"`
	// LiveAvailable says whether this deployment runs live batches.
	LiveAvailable bool `json:"liveAvailable"`
}

// Model is one model a batch may name.
type Model struct {
	Name         string   `json:"name"`
	PriceUSD     float64  `json:"priceUsd"`
	MaxRefs      int      `json:"maxRefs"`
	AspectRatios []string `json:"aspectRatios"`
}

// GET /batch/{batchId}/archive

// ArchiveManifest is manifest.json inside a batch's archive: the batch and
// what the archive holds of each variant. Status and the counts are the
// batch's when the archive was built.
type ArchiveManifest struct {
	BatchID   string    `json:"batchId"`
	CreatedAt time.Time `json:"createdAt"`
	RunMode   string    `json:"runMode"`
	Model     string    `json:"model"`
	Totals
	// Complete is false while the batch still runs: the archive then holds
	// the images made when it was built, and Note says so.
	Complete bool   `json:"complete"`
	Note     string `json:"note,omitempty"`
	// ArchivedAt is when the batch's rows were read for the archive.
	ArchivedAt time.Time    `json:"archivedAt"`
	Rows       []ArchiveRow `json:"rows"`
}

// ArchiveRow is one row in manifest.json.
type ArchiveRow struct {
	Index    int              `json:"index"`
	ID       string           `json:"id,omitempty"`
	Prompt   string           `json:"prompt"`
	Status   ledger.Status    `json:"status"`
	Variants []ArchiveVariant `json:"variants"`
}

// ArchiveVariant is one variant in manifest.json.
type ArchiveVariant struct {
	Index     int           `json:"index"`
	Status    ledger.Status `json:"status"`
	ErrorCode string        `json:"errorCode,omitempty"`
	// File is the image's name in the archive, for a made image.
	File string `json:"file,omitempty"`
	// Link is the image's stable link (see GET /assets/...).
	Link string `json:"link,omitempty"`
	// Missing says the image was made but is no longer stored (retention
	// deleted it): the archive has no file for it.
	Missing bool `json:"missing,omitempty"`
}

// POST /uploads

// UploadRequest is the body of POST /uploads: the image about to be uploaded.
type UploadRequest struct {
	// ContentType is image/png, image/jpeg or image/webp; the PUT must send it.
	ContentType string `json:"contentType"`
	// Size is the image's length in bytes, at most the reference size cap
	// (10 MiB); the PUT may store no more.
	Size int64 `json:"size"`
	// SHA256 (hex), when given, is recorded with the upload: a batch that
	// names it is refused unless the content hashes to it.
	SHA256 string `json:"sha256,omitempty"`
}

// Upload is the 201 answer to POST /uploads: where to PUT the image, and the
// reference that names it in a batch.
type Upload struct {
	// UploadURL is a signed URL that accepts one PUT of the image with
	// Headers, until ExpiresAt.
	UploadURL string            `json:"uploadUrl"`
	Method    string            `json:"method"`
	Headers   map[string]string `json:"headers"`
	// Ref is the gs:// reference to put in a batch's refs once the PUT is
	// done; only its owner may name it.
	Ref       string    `json:"ref"`
	ExpiresAt time.Time `json:"expiresAt"`
	// DeleteAfter is when the upload stops being usable; the bucket removes
	// it after that.
	DeleteAfter time.Time `json:"deleteAfter"`
}

// GET /batch

// BatchList is a page of the caller's batches, newest first: GET /batch.
type BatchList struct {
	Items []BatchSummary `json:"items"`
	// Limit is the page size asked for (or the default). A page may hold
	// fewer items even when more follow: only a missing NextCursor ends the
	// list.
	Limit int `json:"limit"`
	// NextCursor continues the list (the cursor query parameter); absent on
	// the last page.
	NextCursor string `json:"nextCursor,omitempty"`
}

// BatchSummary is one batch in the caller's list: what GET /batch/{id}
// answers about the whole batch, without its rows.
type BatchSummary struct {
	BatchID   string    `json:"batchId"`
	CreatedAt time.Time `json:"createdAt"`
	RunMode   string    `json:"runMode"`
	Model     string    `json:"model"`
	// Totals count every row and variant the batch asked for.
	Totals
	Links BatchLinks `json:"links"`
}

// BatchLinks are the batch's own routes.
type BatchLinks struct {
	Self    string `json:"self"`
	History string `json:"history"`
	Archive string `json:"archive"`
}
