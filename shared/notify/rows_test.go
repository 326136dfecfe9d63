package notify

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/ledger"
)

// finished is a finished batch with a done row (client id), a failed row, a
// partly failed row, a cancelled row (client id) and a row the final state
// lacks.
func finished() (ledger.Final, *ledger.Manifest) {
	m := &ledger.Manifest{
		BatchID: "b-42", Owner: "google:1234567890", RunMode: "dry_run", Model: "gemini-2.5-flash-image", CreatedAt: epoch.UTC(),
		Rows: []ledger.ManifestRow{
			{Index: 0, ID: "hero", Prompt: "a red fox", Variants: 2},
			{Index: 1, Prompt: "=HYPERLINK(\"x\")", Variants: 1},
			{Index: 2, Prompt: "a blue bird", Variants: 2},
			{Index: 3, ID: "sku-7", Prompt: "a green frog", Variants: 1},
			{Index: 4, Prompt: "lost", Variants: 1},
		},
	}
	rows := []ledger.Row{
		// Out of order on purpose: the manifest's order wins.
		{Index: 3, Status: ledger.Cancelled, Variants: []ledger.Variant{{Status: ledger.Cancelled}}},
		{Index: 0, Status: ledger.Done, Variants: []ledger.Variant{
			{Status: ledger.Done, Object: "o/0/0.png"}, {Status: ledger.Done, Object: "o/0/1.png"}}},
		{Index: 1, Status: ledger.Failed, Error: &ledger.Failure{Code: "MODEL_SAFETY_BLOCKED", Message: "blocked"},
			Variants: []ledger.Variant{{Status: ledger.Failed, Error: &ledger.Failure{Code: "MODEL_FAILED"}}}},
		{Index: 2, Status: ledger.Done, Variants: []ledger.Variant{
			{Status: ledger.Failed, Error: &ledger.Failure{Code: "MODEL_RATE_LIMIT", Message: "429"}},
			{Status: ledger.Done, Object: "o/2/1.png"}}},
	}
	final := ledger.Final{BatchID: "b-42", FinishedAt: epoch.Add(time.Minute).UTC(), Summary: ledger.Summarize(rows), Rows: rows}
	return final, m
}

func link(row, variant int) string {
	return fmt.Sprintf("https://assets.example/b-42/%d/%d", row, variant)
}

func TestRows(t *testing.T) {
	final, m := finished()
	got := Rows(final, m, link)
	want := [][]any{
		{"hero", "a red fox", "done", "https://assets.example/b-42/0/0 https://assets.example/b-42/0/1", ""},
		{1, "=HYPERLINK(\"x\")", "failed", "", "MODEL_SAFETY_BLOCKED"},                    // the row's code wins
		{2, "a blue bird", "done", "https://assets.example/b-42/2/1", "MODEL_RATE_LIMIT"}, // a failed variant's code
		{"sku-7", "a green frog", "cancelled", "", ""},
		{4, "lost", "queued", "", ""}, // missing from the final state
	}
	is := is.New(t)
	is.Equal(len(got), len(want)) // one row per batch row
	for i := range want {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			is := is.New(t)
			is.Equal(got[i].Values, want[i])                                // the row
			is.Equal(got[i].DeliveryID, fmt.Sprintf("assetgen:b-42:%d", i)) // and its delivery id
		})
	}
	is.Equal(len(Rows(final, m, nil)[0].Values[3].(string)), 0)                    // no link func, no links
	is.Equal(Rows(final, m, func(int, int) string { return "" })[0].Values[3], "") // empty links skipped
}

func TestRowsIsPure(t *testing.T) {
	is := is.New(t)
	final, m := finished()
	before, _ := json.Marshal(final)
	a := Rows(final, m, link)
	b := Rows(final, m, link)
	after, _ := json.Marshal(final)
	is.Equal(a, b)                          // the same input, the same rows
	is.Equal(string(before), string(after)) // the input is untouched
}

func TestNewEvent(t *testing.T) {
	is := is.New(t)
	final, m := finished()
	e := NewEvent("b-42:webhook", final, m, link)
	b, err := json.Marshal(e)
	is.NoErr(err) // marshals
	var got map[string]any
	is.NoErr(json.Unmarshal(b, &got))
	is.Equal(got["type"], "batch.finished")
	is.Equal(got["deliveryId"], "b-42:webhook")
	is.Equal(got["batchId"], "b-42")
	is.Equal(got["userId"], "google:1234567890") // the owner, so a receiver can tell the event is its user's
	is.Equal(got["finishedAt"], "2023-11-14T22:14:20Z")
	is.Equal(got["summary"].(map[string]any)["status"], "cancelled") // a batch with a cancelled row reads cancelled
	rows := got["rows"].([]any)
	is.Equal(len(rows), 5) // every row
	r0 := rows[0].(map[string]any)
	is.Equal(r0["id"], "hero")
	is.Equal(r0["links"], []any{"https://assets.example/b-42/0/0", "https://assets.example/b-42/0/1"})
	is.Equal(r0["error"], nil) // none
	r1 := rows[1].(map[string]any)
	is.Equal(r1["id"], nil)        // no client id: omitted
	is.Equal(r1["links"], []any{}) // an empty list, not null
	is.Equal(r1["error"].(map[string]any)["code"], "MODEL_SAFETY_BLOCKED")
	r2 := rows[2].(map[string]any)
	is.Equal(r2["error"].(map[string]any)["code"], "MODEL_RATE_LIMIT") // the first failed variant's

	e.Rows[1].Error.Code = "CHANGED"
	is.Equal(final.Rows[2].Error.Code, "MODEL_SAFETY_BLOCKED") // the event does not alias the ledger
}
