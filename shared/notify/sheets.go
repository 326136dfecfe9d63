package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	"google.golang.org/api/sheets/v4"

	"github.com/assetgen/assetgen/shared/ledger"
)

// SheetTarget names where a batch's rows are appended: a spreadsheet, and a
// range in A1 notation whose table the rows extend (e.g. "Results!A:E").
type SheetTarget struct {
	SpreadsheetID string `json:"spreadsheetId"`
	Range         string `json:"range"`
}

// String is the target as an Outcome names it: "spreadsheetId!range".
func (t SheetTarget) String() string { return t.SpreadsheetID + "!" + t.Range }

var (
	spreadsheetID = regexp.MustCompile(`^[A-Za-z0-9_-]{20,100}$`)
	// a1Range is A1 notation, loosely: an optional sheet name (quoted, with ''
	// for a quote, or plain) and "!", then cells such as A1, A1:E9, A:E or 2:9;
	// or a sheet name or named range alone.
	a1Range = regexp.MustCompile(`^(?:(?:'(?:[^']|'')+'|[^'!:]+)(?:!` + a1Cells + `)?|` + a1Cells + `)$`)
)

const (
	a1Cell   = `(?:[A-Za-z]{1,3}[0-9]{0,7}|[0-9]{1,7})`
	a1Cells  = a1Cell + `(?::` + a1Cell + `)?`
	maxRange = 200
)

// Validate checks a target at submit: a spreadsheet id of 20–100 letters,
// digits, '-' or '_', and a range of at most 200 characters in A1 notation.
func (t SheetTarget) Validate() error {
	if !spreadsheetID.MatchString(t.SpreadsheetID) {
		return errors.New("the spreadsheet id must be 20 to 100 letters, digits, '-' or '_' (the part of the sheet's URL after /d/)")
	}
	switch {
	case t.Range == "":
		return errors.New("the sheet range is empty")
	case utf8.RuneCountInString(t.Range) > maxRange:
		return fmt.Errorf("the sheet range is longer than %d characters", maxRange)
	case !utf8.ValidString(t.Range) || strings.ContainsFunc(t.Range, unicode.IsControl):
		return errors.New("the sheet range contains control characters")
	case strings.TrimSpace(t.Range) != t.Range || !a1Range.MatchString(t.Range):
		return errors.New("the sheet range is not in A1 notation (e.g. Sheet1!A:E)")
	}
	return nil
}

// Sheets appends rows to Google Sheets, each at most once. Build one per
// instance and share it.
type Sheets struct {
	svc        *sheets.Service
	maxElapsed time.Duration
	backoff    gax.Backoff // copied per write: a Backoff keeps state
}

// NewSheets returns a writer that calls the Sheets API with opts and the
// spreadsheets scope; in the cloud the default credentials are the
// deployment's service account, with which users share their sheets.
// maxElapsed bounds each write's attempts and pauses (zero or less means
// DefaultMaxElapsed).
func NewSheets(ctx context.Context, maxElapsed time.Duration, opts ...option.ClientOption) (*Sheets, error) {
	opts = append(slices.Clip(opts), option.WithScopes(sheets.SpreadsheetsScope))
	svc, err := sheets.NewService(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("notify: sheets.NewService: %w", err)
	}
	if maxElapsed <= 0 {
		maxElapsed = DefaultMaxElapsed
	}
	return &Sheets{svc: svc, maxElapsed: maxElapsed, backoff: defaultBackoff()}, nil
}

// SheetRow is one row of a write-back: the cells the user sees, and the id
// that keeps it from being written twice.
type SheetRow struct {
	DeliveryID string
	Values     []any
}

// DeliveryID names the write-back of one batch row; it is unique to that row,
// so finding it in a sheet means the row was written.
func DeliveryID(batchID string, row int) string {
	return fmt.Sprintf("assetgen:%s:%d", batchID, row)
}

// Write appends the rows not yet in the sheet below the table in t's range,
// as raw values (so a prompt that starts with "=" stays text, never a
// formula) in newly inserted rows, each with its delivery id in the column
// after its values (a column users may hide).
//
// Each attempt first reads the delivery ids already in the sheet (the whole
// sheet when the range names one) and appends only the missing rows, so an
// append whose answer was lost, or a write-back repeated after a crash, adds
// nothing twice. Two writers of the same batch at the same moment could both
// append; the batch's once-only effects claim keeps that from happening.
//
// 408, 429, 5xx and network failures are retried with exponential backoff and
// jitter (after Retry-After when the API gives one) until maxElapsed has
// passed; then the outcome is failed and Retryable. Any other API error
// (403 when the sheet is not shared with the service account, 404, 400 for a
// bad range) fails at once and is not retryable, and so does an invalid t.
func (s *Sheets) Write(ctx context.Context, t SheetTarget, rows []SheetRow) Outcome {
	out := Outcome{Kind: KindSheet, Target: t.String()}
	finish := func(status string, retryable bool, reason string) Outcome {
		out.Status, out.Retryable, out.Error, out.At = status, retryable, reason, time.Now().UTC()
		return out
	}
	if err := t.Validate(); err != nil {
		return finish(StatusFailed, false, err.Error())
	}
	width := 1
	for _, r := range rows {
		width = max(width, len(r.Values)+1)
	}
	start := time.Now()
	r := newRetrier(ctx, s.maxElapsed, s.backoff)
	var reason string // why the last attempt failed
	for {
		out.Attempts++
		code, err := s.writeOnce(r, t, rows, width)
		if code != 0 {
			out.Code = code
		}
		if err == nil {
			return finish(StatusDelivered, false, "")
		}
		var (
			hint   time.Duration
			hinted bool
			gerr   *googleapi.Error
		)
		switch {
		case errors.As(err, &gerr):
			reason = apiReason(gerr)
			if !retryStatus(gerr.Code) {
				return finish(StatusFailed, false, reason)
			}
			hint, hinted = retryAfter(gerr.Header, time.Now())
		default:
			if ctx.Err() != nil || !r.expired() || reason == "" {
				reason = networkReason(ctx, err, false)
			} // else the bound cut the attempt short: the previous reason stands
			if ctx.Err() != nil {
				return finish(StatusFailed, true, reason)
			}
		}
		if !r.wait(hint, hinted) {
			return finish(StatusFailed, true, fmt.Sprintf("%s; gave up after %d attempts in %s",
				reason, out.Attempts, time.Since(start).Round(time.Millisecond)))
		}
	}
}

// writeOnce reads the delivery ids in the sheet and appends the rows that
// are missing; it returns the HTTP status of its last call, if any.
func (s *Sheets) writeOnce(r *retrier, t SheetTarget, rows []SheetRow, width int) (int, error) {
	ctx, cancel := r.attemptContext()
	defer cancel()
	got, err := s.svc.Spreadsheets.Values.Get(t.SpreadsheetID, idRange(t.Range, width)).Context(ctx).Do()
	if err != nil {
		return statusOf(err), err
	}
	written := map[string]bool{}
	for _, row := range got.Values {
		for _, cell := range row {
			if id, ok := cell.(string); ok {
				written[id] = true
			}
		}
	}
	var missing [][]any
	for _, row := range rows {
		if !written[row.DeliveryID] {
			missing = append(missing, append(slices.Clip(row.Values), row.DeliveryID))
		}
	}
	if len(missing) == 0 {
		return got.HTTPStatusCode, nil
	}
	resp, err := s.svc.Spreadsheets.Values.Append(t.SpreadsheetID, t.Range, &sheets.ValueRange{Values: missing}).
		ValueInputOption("RAW").
		InsertDataOption("INSERT_ROWS").
		Context(ctx).
		Do()
	if err != nil {
		return statusOf(err), err
	}
	return resp.HTTPStatusCode, nil
}

// statusOf is the HTTP status of an API error, or 0.
func statusOf(err error) int {
	var gerr *googleapi.Error
	if errors.As(err, &gerr) {
		return gerr.Code
	}
	return 0
}

// idRange is where Write looks for delivery ids: the whole sheet when the
// range names one; for cells of the first sheet, their columns and the
// width-1 columns after the first (where appended rows and their ids go).
// A name alone (a sheet, or a named range, which then must include the id
// column) is read as it is.
func idRange(rng string, width int) string {
	if sheet, ok := sheetOf(rng); ok {
		return sheet
	}
	from, to, isRange := strings.Cut(rng, ":")
	if !a1Range.MatchString(rng) || !cellsOnly.MatchString(from) || (isRange && !cellsOnly.MatchString(to)) {
		return rng
	}
	first := 0
	if letters := strings.TrimRight(from, "0123456789"); letters != "" {
		first = columnIndex(letters)
	}
	last := first + width - 1
	if letters := strings.TrimRight(to, "0123456789"); isRange && letters != "" {
		last = max(last, columnIndex(letters))
	}
	return columnName(first) + ":" + columnName(last)
}

// cellsOnly is one cell reference of A1 notation: a column, a row, or both.
var cellsOnly = regexp.MustCompile(`^(?:[A-Za-z]{1,3}[0-9]{0,7}|[0-9]{1,7})$`)

// sheetOf returns the sheet part of a range that names one before "!"
// (quoted as given).
func sheetOf(rng string) (string, bool) {
	if strings.HasPrefix(rng, "'") {
		for i := 1; i < len(rng); i++ {
			if rng[i] != '\'' {
				continue
			}
			if i+1 < len(rng) && rng[i+1] == '\'' {
				i++
				continue
			}
			return rng[:i+1], true
		}
		return "", false
	}
	sheet, _, ok := strings.Cut(rng, "!")
	return sheet, ok && sheet != ""
}

// columnIndex is the 0-based index of column letters ("A" is 0).
func columnIndex(letters string) int {
	n := 0
	for _, c := range strings.ToUpper(letters) {
		n = n*26 + int(c-'A') + 1
	}
	return n - 1
}

// columnName is the letters of 0-based column c.
func columnName(c int) string {
	var b []byte
	for c++; c > 0; c = (c - 1) / 26 {
		b = append([]byte{byte('A' + (c-1)%26)}, b...)
	}
	return string(b)
}

// apiReason is the Sheets API's own message (it names the problem, never a
// credential), with a hint for the failure users meet most: a sheet not
// shared with the service account.
func apiReason(e *googleapi.Error) string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Code)
	}
	reason := fmt.Sprintf("the Sheets API answered %d: %s", e.Code, msg)
	if e.Code == http.StatusForbidden {
		reason += " (share the sheet with the service's account as an editor)"
	}
	return reason
}

// Rows is the write-back of a finished batch, one row per batch row in
// submission order: the row's id (its client id, else its index), prompt,
// status, the links of its done variants joined by " ", and its error code (the
// row's, else its first failed variant's), with the row's DeliveryID. link
// gives a variant's stable link. A row missing from final reads as never
// started.
func Rows(final ledger.Final, m *ledger.Manifest, link func(row, variant int) string) []SheetRow {
	state := rowStates(final)
	out := make([]SheetRow, 0, len(m.Rows))
	for _, mr := range m.Rows {
		r := stateOf(state, mr)
		var id any = mr.Index
		if mr.ID != "" {
			id = mr.ID
		}
		out = append(out, SheetRow{
			DeliveryID: DeliveryID(m.BatchID, mr.Index),
			Values:     []any{id, mr.Prompt, string(r.Status), strings.Join(links(r, link), " "), errorCode(r)},
		})
	}
	return out
}

// links are the links of a row's done variants, in variant order.
func links(r ledger.Row, link func(row, variant int) string) []string {
	var out []string
	for i, v := range r.Variants {
		if v.Status != ledger.Done || link == nil {
			continue
		}
		if l := link(r.Index, i); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// rowError is the row's error, else its first failed variant's, else nil.
func rowError(r ledger.Row) *ledger.Failure {
	if r.Error != nil && r.Error.Code != "" {
		return r.Error
	}
	for _, v := range r.Variants {
		if v.Status == ledger.Failed && v.Error != nil && v.Error.Code != "" {
			return v.Error
		}
	}
	return nil
}

// errorCode is rowError's code, or "".
func errorCode(r ledger.Row) string {
	if f := rowError(r); f != nil {
		return f.Code
	}
	return ""
}

// rowStates indexes a final state's rows by their index.
func rowStates(final ledger.Final) map[int]ledger.Row {
	state := make(map[int]ledger.Row, len(final.Rows))
	for _, r := range final.Rows {
		state[r.Index] = r
	}
	return state
}

// stateOf is mr's state; a row missing from the final state reads as never
// started, as a missing row object does in the ledger.
func stateOf(state map[int]ledger.Row, mr ledger.ManifestRow) ledger.Row {
	if r, ok := state[mr.Index]; ok {
		return r
	}
	return ledger.NewRow(mr)
}
