package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/client"
)

func TestPercentileIsNearestRank(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	cases := []struct {
		name string
		ds   []time.Duration
		q    float64
		want time.Duration
	}{
		{"none", nil, 95, 0},
		{"one", ms(7), 50, 7 * time.Millisecond},
		{"p50 of ten", ms(10, 1, 9, 2, 8, 3, 7, 4, 6, 5), 50, 5 * time.Millisecond},
		{"p95 of ten is the largest", ms(10, 1, 9, 2, 8, 3, 7, 4, 6, 5), 95, 10 * time.Millisecond},
		{"p95 of twenty is the 19th", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20), 95, 19 * time.Millisecond},
		{"max", ms(3, 1, 2), 100, 3 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			is.Equal(percentile(c.ds, c.q), c.want)
		})
	}
}

func TestGates(t *testing.T) {
	g := gates{MaxSubmitP95: 2 * time.Second, MaxErrorRate: 0.05}
	batch := func(submit time.Duration, failed bool) client.BatchReport {
		b := client.BatchReport{Submit: submit, Done: submit + time.Second}
		if failed {
			b.Err, b.Done = errors.New("boom"), 0
		}
		return b
	}
	many := func(n int, submit time.Duration, failing int) client.Report {
		var r client.Report
		for i := range n {
			r.Batches = append(r.Batches, batch(submit, i < failing))
		}
		return r
	}
	cases := []struct {
		name   string
		rep    client.Report
		failed []string
	}{
		{"fast and clean", many(20, 300*time.Millisecond, 0), nil},
		{"slow submits", many(20, 2*time.Second, 0), []string{"submit p95"}},
		{"one in twenty failed is 5%", many(20, time.Millisecond, 1), []string{"errors 5.0%"}},
		{"one in forty failed passes", many(40, time.Millisecond, 1), nil},
		{"both", many(10, 3*time.Second, 10), []string{"submit p95", "errors 100.0%"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			got := g.check(summarize(c.rep))
			is.Equal(len(got), len(c.failed)) // gates failed
			for i := range got {
				is.True(strings.HasPrefix(got[i], c.failed[i])) // which gate
			}
		})
	}
}

// Against a submit that refuses every batch the run does not stop at the
// first failure: it reports every batch and fails the error gate.
func TestRunReportsEveryBatchAndFailsItsGates(t *testing.T) {
	is := is.New(t)
	var submits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		submits.Add(1)
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"type":"about:blank","title":"busy","status":503,"code":"STORAGE_UNAVAILABLE"}`))
	}))
	defer srv.Close()
	var out bytes.Buffer
	err := run(context.Background(), []string{"-base", srv.URL, "-batches", "3", "-rows", "1", "-variants", "1"}, func(string) string { return "" }, &out)
	is.True(err != nil)                                                        // the run fails
	is.Equal(submits.Load(), int32(3))                                         // every batch was tried
	is.True(strings.Contains(out.String(), "errors: 3 of 3 batches (100.0%)")) // error rate reported
	is.True(strings.Contains(out.String(), "gate failed: errors"))             // the gate says why
	is.True(strings.Contains(out.String(), "STORAGE_UNAVAILABLE"))             // the batch says why
}
