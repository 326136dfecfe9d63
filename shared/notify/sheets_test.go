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

	"github.com/assetgen/assetgen/shared/devstack"
)

var target = SheetTarget{SpreadsheetID: "1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms", Range: "Results!A:E"}

// sheetsAPI is an httptest server standing in for the Sheets API: the n-th
// call (from 0) gets codes[n] (the last one after that); a 200 to a read
// finds no delivery ids.
func sheetsAPI(t *testing.T, codes ...int) *recorder {
	return newRecorder(t, false, func(n int, w http.ResponseWriter) {
		code := codes[min(n, len(codes)-1)]
		w.Header().Set("Content-Type", "application/json")
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "0")
		}
		w.WriteHeader(code)
		if code == http.StatusOK {
			// One body that both calls can read: a ValueRange without values,
			// and an append's answer.
			_, _ = fmt.Fprintf(w, `{"range":"Results","majorDimension":"ROWS","spreadsheetId":%q,"tableRange":"Results!A1:E3","updates":{"updatedRange":"Results!A4:F5","updatedRows":2}}`, target.SpreadsheetID)
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

var sheetRows = []SheetRow{
	{DeliveryID: "assetgen:b-1:0", Values: []any{"hero", "a red fox", "done", "https://a.example/0/0 https://a.example/0/1", ""}},
	{DeliveryID: "assetgen:b-1:1", Values: []any{1, "=HYPERLINK(\"x\")", "failed", "", "MODEL_SAFETY_BLOCKED"}},
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
	is.Equal(len(reqs), 2) // a read, then the append
	get := reqs[0]
	is.Equal(get.method, http.MethodGet)                                           // the delivery ids are read first
	is.Equal(get.path, "/v4/spreadsheets/"+target.SpreadsheetID+"/values/Results") // from the whole sheet
	r := reqs[1]
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
	is.Equal(len(vr.Values), 2)           // both rows, each with its delivery id last
	is.Equal(vr.Values[0], []any{"hero", "a red fox", "done", "https://a.example/0/0 https://a.example/0/1", "", "assetgen:b-1:0"})
	is.Equal(vr.Values[1], []any{float64(1), "=HYPERLINK(\"x\")", "failed", "", "MODEL_SAFETY_BLOCKED", "assetgen:b-1:1"})
}

func TestSheetsRetries429(t *testing.T) {
	is := is.New(t)
	api := sheetsAPI(t, 429, 429, 200)
	s := testSheets(t, api, 10*time.Second)
	out := s.Write(context.Background(), target, sheetRows)
	is.Equal(out.Status, StatusDelivered) // appended in the end
	is.Equal(out.Attempts, 3)             // after two 429s
	is.Equal(out.Code, 200)               // last status
	is.Equal(len(api.requests()), 4)      // each reached the API: three reads, one append
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

// sheetsStandIn is the in-memory Sheets API, with a writer pointed at it.
func sheetsStandIn(t *testing.T) (*devstack.Sheets, *Sheets) {
	t.Helper()
	api, err := devstack.StartSheets("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Close(context.Background()) })
	s, err := NewSheets(context.Background(), 10*time.Second, option.WithEndpoint(api.URL), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	s.backoff = tinyBackoff
	return api, s
}

// An append that landed but whose answer was lost is not made again: the
// retry finds the delivery ids and appends nothing. A write-back repeated
// later (a finisher that crashed before recording it) adds nothing either.
func TestSheetsLostAppendAnswerWritesOnce(t *testing.T) {
	is := is.New(t)
	api, s := sheetsStandIn(t)
	api.LoseAppendAnswers(1)

	out := s.Write(context.Background(), target, sheetRows)
	is.Equal(out.Status, StatusDelivered) // delivered
	is.Equal(out.Attempts, 2)             // on the retry after the lost answer
	got := api.Rows(target.SpreadsheetID, "Results")
	is.Equal(len(got), 2) // each row once
	is.Equal(got[0], []any{"hero", "a red fox", "done", "https://a.example/0/0 https://a.example/0/1", "", "assetgen:b-1:0"})
	is.Equal(got[1][5], "assetgen:b-1:1")
	is.Equal(api.Counts().Appends, int64(1)) // one append made it

	again := s.Write(context.Background(), target, sheetRows)
	is.Equal(again.Status, StatusDelivered)                     // the repeat succeeds
	is.Equal(len(api.Rows(target.SpreadsheetID, "Results")), 2) // and adds nothing
	is.Equal(api.Counts().Appends, int64(1))                    // not even an empty append
}

// Rows already in the sheet are skipped, the others appended below the table,
// after rows that are not the platform's.
func TestSheetsAppendsOnlyMissingRows(t *testing.T) {
	is := is.New(t)
	api, s := sheetsStandIn(t)
	ctx := context.Background()
	header := []SheetRow{{DeliveryID: "header", Values: []any{"id", "prompt", "status", "links", "error"}}}
	is.Equal(s.Write(ctx, target, header).Status, StatusDelivered)
	is.Equal(s.Write(ctx, target, sheetRows[:1]).Status, StatusDelivered) // the first row only

	out := s.Write(ctx, target, sheetRows)
	is.Equal(out.Status, StatusDelivered)
	got := api.Rows(target.SpreadsheetID, "Results")
	is.Equal(len(got), 3)                    // header, then each row once
	is.Equal(got[0][0], "id")                // the user's table stays on top
	is.Equal(got[1][5], "assetgen:b-1:0")    // the row written before
	is.Equal(got[2][5], "assetgen:b-1:1")    // and the one that was missing
	is.Equal(api.Counts().Appends, int64(3)) // one append per write
}

// Without a sheet name the ids are read from the range's columns and the id
// column after them, on the first sheet.
func TestSheetsWriteOnceWithoutSheetName(t *testing.T) {
	is := is.New(t)
	api, s := sheetsStandIn(t)
	api.LoseAppendAnswers(1)
	t2 := SheetTarget{SpreadsheetID: target.SpreadsheetID, Range: "B2:F"}
	is.Equal(s.Write(context.Background(), t2, sheetRows).Status, StatusDelivered)
	got := api.Rows(target.SpreadsheetID, "Sheet1")
	is.Equal(len(got), 2)       // each row once
	is.Equal(got[0][1], "hero") // from column B
	is.Equal(got[1][6], "assetgen:b-1:1")
}

func TestIDRange(t *testing.T) {
	tests := []struct {
		rng  string
		want string
	}{
		{"Results!A:E", "Results"},
		{"Sheet1!A1:E1000", "Sheet1"},
		{"'My Results'!A:E", "'My Results'"},
		{"'Bob''s sheet'!A1:C", "'Bob''s sheet'"},
		{"'Bob''s sheet'", "'Bob''s sheet'"},
		{"Results", "Results"},
		{"A1:E", "A:F"},
		{"A:E", "A:F"},
		{"C2", "C:H"},
		{"B2:Z9", "B:Z"},
		{"2:9", "A:F"},
		{"Y:AC", "Y:AD"},
	}
	for _, tt := range tests {
		t.Run(tt.rng, func(t *testing.T) {
			is := is.New(t)
			is.Equal(idRange(tt.rng, 6), tt.want) // where the ids are read
		})
	}
}
