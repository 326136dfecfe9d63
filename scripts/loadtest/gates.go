package main

import (
	"fmt"
	"slices"
	"time"

	"github.com/assetgen/assetgen/shared/client"
)

// summary is a run reduced to the figures the gates judge.
type summary struct {
	Batches, Failed  int
	ErrorRate        float64
	SubmitP50        time.Duration
	SubmitP95        time.Duration
	DoneP50, DoneP95 time.Duration
	DoneMax          time.Duration
}

func summarize(rep client.Report) summary {
	s := summary{Batches: len(rep.Batches)}
	var submits, dones []time.Duration
	for _, b := range rep.Batches {
		submits = append(submits, b.Submit)
		if b.Err != nil {
			s.Failed++
		}
		if b.Done > 0 {
			dones = append(dones, b.Done)
		}
	}
	if s.Batches > 0 {
		s.ErrorRate = float64(s.Failed) / float64(s.Batches)
	}
	s.SubmitP50, s.SubmitP95 = percentile(submits, 50), percentile(submits, 95)
	s.DoneP50, s.DoneP95, s.DoneMax = percentile(dones, 50), percentile(dones, 95), percentile(dones, 100)
	return s
}

// percentile is the nearest-rank percentile q (0–100] of ds; zero for none.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	rank := int(q/100*float64(len(sorted)) + 0.999999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// gates are the thresholds a run must stay under.
type gates struct {
	MaxSubmitP95 time.Duration
	MaxErrorRate float64
}

// check returns one line per gate the run failed.
func (g gates) check(s summary) []string {
	var failed []string
	if s.SubmitP95 >= g.MaxSubmitP95 {
		failed = append(failed, fmt.Sprintf("submit p95 %s ≥ %s", ms(s.SubmitP95), ms(g.MaxSubmitP95)))
	}
	if s.ErrorRate >= g.MaxErrorRate {
		failed = append(failed, fmt.Sprintf("errors %.1f%% ≥ %.1f%% (%d of %d batches)", 100*s.ErrorRate, 100*g.MaxErrorRate, s.Failed, s.Batches))
	}
	return failed
}
