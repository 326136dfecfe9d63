package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/client"
)

func rowEvent(id string, index, version int) client.Event {
	b, _ := json.Marshal(api.Row{Index: index, Version: version})
	return client.Event{ID: id, LastID: id, Type: "row", Data: b}
}

func TestTrackerCountsStreamFaults(t *testing.T) {
	final := []api.Row{{Index: 0, Version: 3}, {Index: 1, Version: 2}}
	cases := []struct {
		name                    string
		events                  []client.Event
		late                    bool
		dups, regressions, gaps int
	}{
		{"clean", []client.Event{rowEvent("a", 0, 1), rowEvent("b", 1, 2), rowEvent("c", 0, 3)}, false, 0, 0, 0},
		{"coalesced versions are no gap", []client.Event{rowEvent("a", 0, 3), rowEvent("b", 1, 2)}, false, 0, 0, 0},
		{"an id twice", []client.Event{rowEvent("a", 0, 3), rowEvent("a", 0, 3), rowEvent("b", 1, 2)}, false, 1, 0, 0},
		{"an older version after a newer", []client.Event{rowEvent("a", 0, 3), rowEvent("b", 0, 1), rowEvent("c", 1, 2)}, false, 0, 1, 0},
		{"a final version never sent", []client.Event{rowEvent("a", 0, 3), rowEvent("b", 1, 1)}, false, 0, 0, 1},
		{"a row never sent", []client.Event{rowEvent("a", 0, 3)}, false, 0, 0, 1},
		{"pings carry no id", []client.Event{{Type: "ping"}, {Type: "ping"}, rowEvent("a", 0, 3), rowEvent("b", 1, 2)}, false, 0, 0, 0},
		{"totals and done repeat the last row's id", []client.Event{rowEvent("a", 0, 3), rowEvent("b", 1, 2), {ID: "b", Type: "batch"}, {ID: "b", Type: "done"}}, false, 0, 0, 0},
		{"opened after the end", nil, true, 0, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			tr := tracker{late: c.late}
			for _, ev := range c.events {
				is.NoErr(tr.event(ev))
			}
			tr.finish(final)
			is.Equal(tr.duplicates, c.dups)         // duplicates
			is.Equal(tr.regressions, c.regressions) // regressions
			is.Equal(tr.gaps, c.gaps)               // gaps
		})
	}
}

// A stream that drops, is resumed with Last-Event-ID, receives an event twice
// and never receives a row's final version: the run reports each and fails.
func TestRunReportsDropsDuplicatesAndGaps(t *testing.T) {
	is := is.New(t)
	var connections, refreshes atomic.Int32
	var resumedFrom atomic.Value
	mux := http.NewServeMux()
	var srv *httptest.Server
	mux.HandleFunc("POST /batch/images", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(api.SubmitResponse{BatchID: "b1", ProgressURL: srv.URL + "/progress/b1?token=1"})
	})
	mux.HandleFunc("GET /batch/b1/progress-token", func(w http.ResponseWriter, r *http.Request) {
		refreshes.Add(1)
		_ = json.NewEncoder(w).Encode(api.ProgressToken{ProgressURL: srv.URL + "/progress/b1?token=2"})
	})
	mux.HandleFunc("GET /batch/b1", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(api.Batch{Rows: []api.Row{{Index: 0, Version: 2}, {Index: 1, Version: 1}}})
	})
	row := func(id string, index, version int) string {
		b, _ := json.Marshal(api.Row{Index: index, Version: version})
		return fmt.Sprintf("id: %s\nevent: row\ndata: %s\n\n", id, b)
	}
	mux.HandleFunc("GET /progress/b1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		if connections.Add(1) == 1 {
			fmt.Fprint(w, row("a", 0, 1)) // then the connection drops
			return
		}
		resumedFrom.Store(r.Header.Get("Last-Event-ID"))
		fmt.Fprint(w, row("b", 0, 2)+row("b", 0, 2)+"event: done\ndata: {}\n\n")
	})
	srv = httptest.NewServer(mux)
	defer srv.Close()

	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := run(ctx, []string{"-base", srv.URL, "-streams", "1", "-batches", "1", "-duration", "1ns", "-refresh", "1h"}, func(string) string { return "" }, &out)
	is.True(err != nil) // faults fail the run
	text := out.String()
	is.True(strings.Contains(text, "connections 2, drops 1, reconnects 1")) // the drop and the resume are counted
	is.True(strings.Contains(text, "duplicates 1, regressions 0, gaps 1"))  // the duplicate id and row 1's missing final version
	is.Equal(resumedFrom.Load(), "a")                                       // the resume sent Last-Event-ID
	is.Equal(refreshes.Load(), int32(0))                                    // no refresh within -refresh
}
