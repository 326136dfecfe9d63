package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
	"google.golang.org/api/option"
)

var target = SheetTarget{SpreadsheetID: "1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms", Range: "Results!A:E"}

// sheetsAPI is an httptest server standing in for the Sheets API: the n-th
// call (from 0) gets codes[n] (the last one after that).
func sheetsAPI(t *testing.T, codes ...int) *recorder {
	return newRecorder(t, false, func(n int, w http.ResponseWriter) {
		code := codes[min(n, len(codes)-1)]
		w.Header().Set("Content-Type", "application/json")
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "0")
		}
		w.WriteHeader(code)
		if code == http.StatusOK {
			_, _ = fmt.Fprintf(w, `{"spreadsheetId":%q,"tableRange":"Results!A1:E3","updates":{"updatedRange":"Results!A4:E5","updatedRows":2}}`, target.SpreadsheetID)
			return
		}
		status := map[int]string{403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}[code]
		_, _ = fmt.Fprintf(w, `{"error":{"code":%d,"message":"message for %d","status":%q}}`, code, code, status)
	})
}

func testSheets(t *testing.T, srv *recorder, maxElapsed time.Duration) *Sheets {
	t.Helper()
	s, err := NewSheets(context.Background(), maxElapsed,
		option.WithEndpoint(srv.srv.URL+"/"), option.WithHTTPClient(srv.srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	s.backoff = tinyBackoff
	return s
}

var sheetRows = [][]any{
	{"hero", "a red fox", "done", "https://a.example/0/0 https://a.example/0/1", ""},
	{1, "=HYPERLINK(\"x\")", "failed", "", "MODEL_SAFETY_BLOCKED"},
}

func TestSheetsWrite(t *testing.T) {
	is := is.New(t)
	api := sheetsAPI(t, http.StatusOK)
	s := testSheets(t, api, 10*time.Second)

	out := s.Write(context.Background(), target, sheetRows)
	is.Equal(out.Status, StatusDelivered)                     // appended
	is.Equal(out.Kind, KindSheet)                             // kind
	is.Equal(out.Target, target.SpreadsheetID+"!Results!A:E") // spreadsheetId!range
	is.Equal(out.Attempts, 1)                                 // first try
	is.Equal(out.Code, http.StatusOK)                         // last status
	is.Equal(out.Retryable, false)                            // nothing to retry

	reqs := api.requests()
	is.Equal(len(reqs), 1) // one call
	r := reqs[0]
	is.Equal(r.method, http.MethodPost)                                                         // POST
	is.Equal(r.path, "/v4/spreadsheets/"+target.SpreadsheetID+"/values/Results%21A%3AE:append") // the append path
	q, err := url.ParseQuery(r.query)
	is.NoErr(err)                                      // query parses
	is.Equal(q.Get("valueInputOption"), "RAW")         // raw: no formulas evaluated
	is.Equal(q.Get("insertDataOption"), "INSERT_ROWS") // rows inserted, nothing overwritten
	is.Equal(q.Get("alt"), "json")                     // the client's own
	is.Equal(r.header.Get("Content-Type"), "application/json")

	var vr struct {
		Values [][]any `json:"values"`
	}
	is.NoErr(json.Unmarshal(r.body, &vr)) // a ValueRange
	is.Equal(len(vr.Values), 2)           // both rows
	is.Equal(vr.Values[0], []any{"hero", "a red fox", "done", "https://a.example/0/0 https://a.example/0/1", ""})
	is.Equal(vr.Values[1], []any{float64(1), "=HYPERLINK(\"x\")", "failed", "", "MODEL_SAFETY_BLOCKED"})
}

func TestSheetsRetries429(t *testing.T) {
	is := is.New(t)
	api := sheetsAPI(t, 429, 429, 200)
	s := testSheets(t, api, 10*time.Second)
	out := s.Write(context.Background(), target, sheetRows)
	is.Equal(out.Status, StatusDelivered) // appended in the end
	is.Equal(out.Attempts, 3)             // after two 429s
	is.Equal(out.Code, 200)               // last status
	is.Equal(len(api.requests()), 3)      // each reached the API
}

func TestSheetsPermanent(t *testing.T) {
	for _, code := range []int{http.StatusForbidden, http.StatusNotFound, http.StatusBadRequest} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			is := is.New(t)
			api := sheetsAPI(t, code)
			s := testSheets(t, api, 10*time.Second)
			out := s.Write(context.Background(), target, sheetRows)
			is.Equal(out.Status, StatusFailed)                                        // failed
			is.Equal(out.Attempts, 1)                                                 // at once
			is.Equal(out.Code, code)                                                  // with the API's status
			is.Equal(out.Retryable, false)                                            // for good
			is.True(strings.Contains(out.Error, fmt.Sprintf("message for %d", code))) // the API's reason
			is.Equal(len(api.requests()), 1)                                          // one call
			if code == http.StatusForbidden {
				is.True(strings.Contains(out.Error, "share the sheet")) // and what to do
			}
		})
	}
}

func TestSheets500UntilBound(t *testing.T) {
	is := is.New(t)
	api := sheetsAPI(t, http.StatusInternalServerError)
	s := testSheets(t, api, 100*time.Millisecond)
	out := s.Write(context.Background(), target, sheetRows)
	is.Equal(out.Status, StatusFailed) // failed
	is.True(out.Retryable)             // a later retry may work
	is.True(out.Attempts > 1)          // after retrying
	n := len(api.requests())
	is.True(n == out.Attempts || n == out.Attempts-1)    // every attempt counted (the bound may cut the last one short)
	is.Equal(out.Code, 500)                              // last status
	is.True(strings.Contains(out.Error, "gave up"))      // ran out of time
	is.True(strings.Contains(out.Error, "answered 500")) // and why
}

func TestSheetsInvalidTarget(t *testing.T) {
	is := is.New(t)
	api := sheetsAPI(t, http.StatusOK)
	s := testSheets(t, api, time.Second)
	out := s.Write(context.Background(), SheetTarget{SpreadsheetID: "short", Range: "A:E"}, sheetRows)
	is.Equal(out.Status, StatusFailed) // refused
	is.Equal(out.Retryable, false)     // for good
	is.Equal(out.Attempts, 0)          // without a call
	is.Equal(len(api.requests()), 0)   // nothing sent
}

func TestSheetTargetValidate(t *testing.T) {
	id := target.SpreadsheetID
	tests := []struct {
		name string
		t    SheetTarget
		ok   bool
	}{
		{"sheet and columns", SheetTarget{id, "Results!A:E"}, true},
		{"cells", SheetTarget{id, "Sheet1!A1:E1000"}, true},
		{"from a cell on", SheetTarget{id, "Sheet1!A2"}, true},
		{"quoted sheet name", SheetTarget{id, "'My Results'!A:E"}, true},
		{"quoted with a quote", SheetTarget{id, "'Bob''s sheet'!A1:C"}, true},
		{"sheet only", SheetTarget{id, "Results"}, true},
		{"cells only", SheetTarget{id, "A1:E"}, true},
		{"rows", SheetTarget{id, "Sheet1!2:9"}, true},
		{"id of 20", SheetTarget{strings.Repeat("a", 20), "A:E"}, true},
		{"id of 100", SheetTarget{strings.Repeat("Z", 100), "A:E"}, true},
		{"id with - and _", SheetTarget{"abc-DEF_ghi-JKL_mno-PQR", "A:E"}, true},
		{"empty id", SheetTarget{"", "A:E"}, false},
		{"id of 19", SheetTarget{strings.Repeat("a", 19), "A:E"}, false},
		{"id of 101", SheetTarget{strings.Repeat("a", 101), "A:E"}, false},
		{"id with a slash", SheetTarget{id[:30] + "/" + id[31:], "A:E"}, false},
		{"id is a URL", SheetTarget{"https://docs.google.com/spreadsheets/d/" + id, "A:E"}, false},
		{"empty range", SheetTarget{id, ""}, false},
		{"range too long", SheetTarget{id, strings.Repeat("a", 201)}, false},
		{"range of 200", SheetTarget{id, strings.Repeat("a", 200)}, true},
		{"newline", SheetTarget{id, "Sheet1!A:E\n"}, false},
		{"control character", SheetTarget{id, "Sheet\x001!A:E"}, false},
		{"two bangs", SheetTarget{id, "Sheet1!A!B"}, false},
		{"bad cells", SheetTarget{id, "Sheet1!A1:B2:C3"}, false},
		{"column too long", SheetTarget{id, "Sheet1!ABCD1"}, false},
		{"unterminated quote", SheetTarget{id, "'Sheet1!A:E"}, false},
		{"empty sheet name", SheetTarget{id, "!A:E"}, false},
		{"leading space", SheetTarget{id, " Sheet1!A:E"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			err := tt.t.Validate()
			is.Equal(err == nil, tt.ok) // valid?
		})
	}
}
