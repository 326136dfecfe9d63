// Package metrics is every Prometheus series the platform exports, in one
// place; each function and service serves them at /metrics. docs/operations.md
// explains each series and the queries that matter.
package metrics

import (
	"crypto/subtle"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry holds the platform's series (and the Go runtime's and process's).
var Registry = prometheus.NewRegistry()

func register[C prometheus.Collector](c C) C {
	Registry.MustRegister(c)
	return c
}

var (
	// Requests times every request by route pattern and status: p95 per route
	// comes from histogram_quantile over the buckets.
	Requests = register(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "assetgen_http_request_duration_seconds",
		Help:    "HTTP request latency by function, route and status.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2, 5, 10, 30, 60},
	}, []string{"function", "route", "status"}))

	// Batches, rows and variants count finished work by outcome.
	Batches = register(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "assetgen_batches_total", Help: "Batches finished, by run mode and outcome.",
	}, []string{"run_mode", "outcome"}))
	Rows = register(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "assetgen_rows_total", Help: "Rows finished, by run mode and outcome.",
	}, []string{"run_mode", "outcome"}))
	Variants = register(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "assetgen_variants_total", Help: "Variants finished, by run mode and outcome (failure code for failures).",
	}, []string{"run_mode", "outcome"}))
	Submits = register(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "assetgen_submits_total", Help: "Batch submits by run mode and answer code (accepted, or the problem code).",
	}, []string{"run_mode", "code"}))

	// ModelLatency and ModelFailures describe the image model.
	ModelLatency = register(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "assetgen_model_duration_seconds",
		Help:    "Time for one image from the generator, by model and result.",
		Buckets: []float64{.1, .25, .5, 1, 2, 4, 8, 15, 30, 60, 120},
	}, []string{"model", "result"}))
	ModelFailures = register(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "assetgen_model_failures_total", Help: "Generator failures by model and class (rate_limited, transient, blocked, permanent).",
	}, []string{"model", "class"}))

	// Refs count reference images: submitted occurrences and distinct contents;
	// 1 - unique/submitted is the dedup rate.
	RefsSubmitted = register(prometheus.NewCounter(prometheus.CounterOpts{
		Name: "assetgen_refs_submitted_total", Help: "Reference image occurrences submitted across rows.",
	}))
	RefsUnique = register(prometheus.NewCounter(prometheus.CounterOpts{
		Name: "assetgen_refs_unique_total", Help: "Distinct reference contents among them (per submit).",
	}))
	RefsUploaded = register(prometheus.NewCounter(prometheus.CounterOpts{
		Name: "assetgen_refs_uploaded_total", Help: "Reference contents written to the bucket (the rest were stored already).",
	}))

	// GCSRetries counts storage calls the client retried, by HTTP status
	// (429 is the per-object rate limit); LedgerConflicts counts lost
	// compare-and-swap races (412) that were re-read and re-applied.
	GCSRetries = register(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "assetgen_gcs_retries_total", Help: "Cloud Storage calls retried by the client, by status (429, 5xx, or network).",
	}, []string{"status"}))
	LedgerConflicts = register(prometheus.NewCounter(prometheus.CounterOpts{
		Name: "assetgen_ledger_conflicts_total", Help: "Compare-and-swap writes that lost a race (412) and were re-applied.",
	}))

	// ConfigReloadFailures counts failed reads of the config objects operators
	// edit in the bucket (flags, API keys, budgets, sheet grants); the last
	// good copy stays in force meanwhile.
	ConfigReloadFailures = register(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "assetgen_config_reload_failures_total", Help: "Failed reads of a config object in the bucket, by object (the last good copy stays in force).",
	}, []string{"object"}))

	// Streams and Tails are the progress service's load.
	Streams = register(prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "assetgen_sse_streams", Help: "Open progress streams.",
	}))
	Tails = register(prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "assetgen_sse_tails", Help: "Batches being tailed (one ledger poller each, shared by their streams).",
	}))
	StreamsRefused = register(prometheus.NewCounter(prometheus.CounterOpts{
		Name: "assetgen_sse_streams_refused_total", Help: "Streams refused for lack of memory headroom.",
	}))
)

func init() {
	// Series that alerts watch exist from the start, at zero.
	for _, status := range []string{"429", "500", "502", "503", "504", "network"} {
		GCSRetries.WithLabelValues(status)
	}
	Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "assetgen_memory_headroom_ratio",
		Help: "Free share of the memory limit (cgroup or GOMEMLIMIT): 1 - heap in use / limit; 1 when there is no limit.",
	}, func() float64 { return Headroom().Ratio }))
}

// Access says who may read /metrics: anyone (the local stack), or callers
// presenting Token as a bearer credential. With neither, /metrics is off: the
// functions are public, and their counters are nobody else's business.
type Access struct {
	Open  bool
	Token string
}

// Handler serves the series in Prometheus exposition format to those Access
// admits, and 404 to everyone else.
func Handler(a Access) http.Handler {
	serve := promhttp.HandlerFor(Registry, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.Open && (a.Token == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+a.Token)) != 1) {
			http.NotFound(w, r)
			return
		}
		serve.ServeHTTP(w, r)
	})
}

// ObserveRequest records one HTTP request (obs.Options.Observe).
func ObserveRequest(function, route string, status int, seconds float64) {
	Requests.WithLabelValues(function, route, strconv.Itoa(status)).Observe(seconds)
}
