package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/devstack"
)

// The Sheets API applies the batch's append but its answer is lost: the
// write-back's retry finds the rows there and the sheet holds each row once.
func TestSheetsWriteBackOnceAfterALostAnswer(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	api, err := devstack.StartSheets("127.0.0.1:0")
	is.NoErr(err)
	t.Cleanup(func() { _ = api.Close(context.Background()) })
	api.LoseAppendAnswers(1)
	const sheet = "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
	a := startApp(t, map[string]string{"SHEETS_API_URL": api.URL, "NOTIFY_MAX_ELAPSED": "10s", "CONFIG_TTL": "0"}, devstack.NewFaults(1))
	putJSON(t, a, "config/sheets.json", map[string]any{"users": map[string]any{"local": []string{sheet}}})
	sub := post(t, a.base+"/batch/images", `{"runMode":"dry_run","sheet":{"spreadsheetId":"`+sheet+`","range":"Results!A:E"},"rows":[{"prompt":"a fox","id":"fox"},{"prompt":"b"}]}`, nil)
	is.Equal(sub.status, http.StatusAccepted)
	readToDone(t, openStream(t, sub.str("progressUrl"), ""))
	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))

	state := get(t, sub.str("statusUrl"), nil)
	n := state.doc["notifications"].([]any)[0].(map[string]any)
	is.Equal(n["status"], "delivered") // delivered
	is.Equal(n["attempts"], 2.0)       // after the lost answer
	rows := api.Rows(sheet, "Results")
	is.Equal(len(rows), 2) // one sheet row per batch row, once
	is.Equal(rows[0][0], "fox")
	is.Equal(rows[1][5], "assetgen:"+sub.str("batchId")+":1") // with its delivery id
	is.Equal(api.Counts().LostAnswers, int64(1))
}
