package devstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// Sheets is an in-memory stand-in for the Google Sheets API's values.get and
// values.append, over HTTP the way google.golang.org/api/sheets/v4 calls them:
// point the client at URL (option.WithEndpoint, option.WithoutAuthentication),
// or the platform at it with SHEETS_API_URL. Spreadsheets and their sheets
// come into being on first use; an unqualified range means the first sheet,
// "Sheet1" until another is used. An append goes below the last non-empty row,
// from the range's first column. LoseAppendAnswers makes appends land and
// then answer 503, as when an answer is lost after the write.
type Sheets struct {
	// URL is the base URL to give the client.
	URL string

	srv *http.Server

	mu     sync.Mutex
	books  map[string]*book
	lose   int
	counts SheetsCounts
}

// SheetsCounts are the requests the stand-in served.
type SheetsCounts struct {
	Gets        int64
	Appends     int64 // appends applied, answered or not
	LostAnswers int64 // appends applied but answered 503
}

// book is one spreadsheet: its sheets in the order they appeared.
type book struct {
	order  []string
	sheets map[string][][]any
}

// StartSheets serves the stand-in on addr ("127.0.0.1:0" for a free port).
func StartSheets(addr string) (*Sheets, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("devstack: sheets listen %s: %w", addr, err)
	}
	s := &Sheets{URL: "http://" + ln.Addr().String() + "/", books: map[string]*book{}}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve)}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the stand-in.
func (s *Sheets) Close(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// LoseAppendAnswers makes the next n appends land and then answer 503.
func (s *Sheets) LoseAppendAnswers(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lose = n
}

// Counts returns the counters.
func (s *Sheets) Counts() SheetsCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// Rows returns a copy of a sheet's rows (nil when it was never used).
func (s *Sheets) Rows(spreadsheetID, sheet string) [][]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.books[spreadsheetID]
	if b == nil {
		return nil
	}
	var out [][]any
	for _, r := range b.sheets[sheet] {
		out = append(out, append([]any(nil), r...))
	}
	return out
}

// serve answers GET /v4/spreadsheets/{id}/values/{range} and
// POST /v4/spreadsheets/{id}/values/{range}:append.
func (s *Sheets) serve(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/v4/spreadsheets/")
	id, escaped, ok2 := strings.Cut(rest, "/values/")
	if !ok || !ok2 || id == "" {
		sheetsError(w, http.StatusNotFound, "NOT_FOUND", "unknown method")
		return
	}
	appending := false
	if r.Method == http.MethodPost {
		if escaped, appending = strings.CutSuffix(escaped, ":append"); !appending {
			sheetsError(w, http.StatusNotFound, "NOT_FOUND", "unknown method")
			return
		}
	} else if r.Method != http.MethodGet {
		sheetsError(w, http.StatusMethodNotAllowed, "INVALID_ARGUMENT", "method not allowed")
		return
	}
	raw, err := url.PathUnescape(escaped)
	if err != nil {
		sheetsError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "bad range")
		return
	}
	rng, err := parseA1(raw)
	if err != nil {
		sheetsError(w, http.StatusBadRequest, "INVALID_ARGUMENT", fmt.Sprintf("Unable to parse range: %s", raw))
		return
	}
	if appending {
		s.append(w, r, id, rng)
		return
	}
	s.get(w, id, rng)
}

func (s *Sheets) get(w http.ResponseWriter, id string, rng a1) {
	s.mu.Lock()
	s.counts.Gets++
	name, rows := s.sheet(id, rng.sheet)
	var values [][]any
	last := min(len(rows), rng.lastRow)
	for i := rng.firstRow - 1; i >= 0 && i < last; i++ {
		var cells []any
		for c := rng.firstCol; c < min(len(rows[i]), rng.lastCol+1); c++ {
			cells = append(cells, formatted(rows[i][c]))
		}
		for len(cells) > 0 && cells[len(cells)-1] == "" {
			cells = cells[:len(cells)-1]
		}
		values = append(values, cells)
	}
	s.mu.Unlock()
	for len(values) > 0 && len(values[len(values)-1]) == 0 {
		values = values[:len(values)-1]
	}
	writeJSON(w, map[string]any{"range": quoteSheet(name), "majorDimension": "ROWS", "values": values})
}

func (s *Sheets) append(w http.ResponseWriter, r *http.Request, id string, rng a1) {
	if r.URL.Query().Get("valueInputOption") == "" {
		sheetsError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "'valueInputOption' is required but not specified")
		return
	}
	var body struct {
		Values [][]any `json:"values"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		sheetsError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "bad ValueRange: "+err.Error())
		return
	}
	s.mu.Lock()
	name, rows := s.sheet(id, rng.sheet)
	at := len(rows)
	for at > 0 && empty(rows[at-1]) {
		at--
	}
	rows = rows[:at]
	width := 0
	for _, v := range body.Values {
		row := make([]any, rng.firstCol, rng.firstCol+len(v))
		for i := range row {
			row[i] = ""
		}
		rows = append(rows, append(row, v...))
		width = max(width, len(v))
	}
	s.books[id].sheets[name] = rows
	s.counts.Appends++
	lose := s.lose > 0
	if lose {
		s.lose--
		s.counts.LostAnswers++
	}
	s.mu.Unlock()
	if lose {
		sheetsError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "injected fault: the answer was lost")
		return
	}
	updated := fmt.Sprintf("%s!%s%d:%s%d", quoteSheet(name), columnName(rng.firstCol), at+1, columnName(rng.firstCol+max(width, 1)-1), at+len(body.Values))
	writeJSON(w, map[string]any{
		"spreadsheetId": id,
		"tableRange":    quoteSheet(name),
		"updates": map[string]any{
			"spreadsheetId": id, "updatedRange": updated, "updatedRows": len(body.Values),
			"updatedColumns": width, "updatedCells": len(body.Values) * width,
		},
	})
}

// sheet returns a sheet's name and rows, making the spreadsheet and the sheet
// on first use; "" names the first sheet. Call with s.mu held.
func (s *Sheets) sheet(id, name string) (string, [][]any) {
	b := s.books[id]
	if b == nil {
		b = &book{sheets: map[string][][]any{}}
		s.books[id] = b
	}
	if name == "" {
		if len(b.order) > 0 {
			name = b.order[0]
		} else {
			name = "Sheet1"
		}
	}
	if _, ok := b.sheets[name]; !ok {
		b.order = append(b.order, name)
		b.sheets[name] = nil
	}
	return name, b.sheets[name]
}

func empty(row []any) bool {
	for _, c := range row {
		if formatted(c) != "" {
			return false
		}
	}
	return true
}

// formatted is a cell as values.get renders it by default (FORMATTED_VALUE).
func formatted(v any) any {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strings.ToUpper(strconv.FormatBool(v))
	default:
		return fmt.Sprint(v)
	}
}

func sheetsError(w http.ResponseWriter, code int, status, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg, "status": status}})
}

// a1 is a parsed A1 range: a sheet ("" for the first) and a block of cells,
// columns 0-based and rows 1-based, both inclusive.
type a1 struct {
	sheet             string
	firstCol, lastCol int
	firstRow, lastRow int
}

const maxA1 = 1 << 30

// parseA1 reads "Sheet!A1:E9", "'My sheet'!A:E", "Sheet", "A1:E", "2:9" and the
// like. A name alone that could be cells (such as "AB1") is read as cells.
func parseA1(s string) (a1, error) {
	out := a1{lastCol: maxA1, firstRow: 1, lastRow: maxA1}
	cells := s
	switch {
	case strings.HasPrefix(s, "'"):
		end := -1
		for i := 1; i < len(s); i++ {
			if s[i] == '\'' {
				if i+1 < len(s) && s[i+1] == '\'' {
					i++
					continue
				}
				end = i
				break
			}
		}
		if end < 0 {
			return a1{}, errors.New("unterminated sheet name")
		}
		out.sheet = strings.ReplaceAll(s[1:end], "''", "'")
		rest := s[end+1:]
		if rest == "" {
			return out, nil
		}
		var ok bool
		if cells, ok = strings.CutPrefix(rest, "!"); !ok {
			return a1{}, errors.New("text after the sheet name")
		}
	case strings.Contains(s, "!"):
		out.sheet, cells, _ = strings.Cut(s, "!")
	}
	if cells == "" {
		return out, nil
	}
	from, to, isRange := strings.Cut(cells, ":")
	c1, r1, ok1 := parseCell(from)
	if !ok1 {
		if out.sheet == "" && !isRange {
			out.sheet = s // a sheet's name alone
			return out, nil
		}
		return a1{}, fmt.Errorf("bad cell %q", from)
	}
	c2, r2 := c1, r1
	if isRange {
		var ok bool
		if c2, r2, ok = parseCell(to); !ok {
			return a1{}, fmt.Errorf("bad cell %q", to)
		}
	} else if r1 < 0 {
		r2 = -1 // a whole column
	}
	if c1 >= 0 {
		out.firstCol = c1
	}
	if c2 >= 0 {
		out.lastCol = c2
	}
	if r1 >= 0 {
		out.firstRow = r1
	}
	if r2 >= 0 {
		out.lastRow = r2
	}
	return out, nil
}

// parseCell reads "B7" (column 1, row 7), "B" (row -1) or "7" (column -1).
func parseCell(s string) (col, row int, ok bool) {
	i := 0
	for i < len(s) && (s[i] >= 'A' && s[i] <= 'Z' || s[i] >= 'a' && s[i] <= 'z') {
		i++
	}
	if i > 3 || (i == 0 && len(s) == 0) {
		return 0, 0, false
	}
	col, row = -1, -1
	if i > 0 {
		col = 0
		for _, c := range strings.ToUpper(s[:i]) {
			col = col*26 + int(c-'A') + 1
		}
		col--
	}
	if i < len(s) {
		n, err := strconv.Atoi(s[i:])
		if err != nil || n < 1 {
			return 0, 0, false
		}
		row = n
	}
	return col, row, true
}

// columnName is the letters of 0-based column c.
func columnName(c int) string {
	var b []byte
	for c++; c > 0; c = (c - 1) / 26 {
		b = append([]byte{byte('A' + (c-1)%26)}, b...)
	}
	return string(b)
}

func quoteSheet(name string) string {
	if strings.ContainsAny(name, " '!:") {
		return "'" + strings.ReplaceAll(name, "'", "''") + "'"
	}
	return name
}
