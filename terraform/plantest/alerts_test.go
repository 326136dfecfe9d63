package plantest

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// condition is one alert policy condition as the tests see it.
type condition struct {
	Policy string // address of the alert policy
	Kind   string // condition_threshold or condition_absent
	Filter string
}

func (p *plan) alertConditions() []condition {
	var out []condition
	for _, rc := range p.live("google_monitoring_alert_policy") {
		for _, c := range blocks(rc.Change.After["conditions"]) {
			for _, kind := range []string{"condition_threshold", "condition_absent"} {
				for _, body := range blocks(c[kind]) {
					f, _ := body["filter"].(string)
					out = append(out, condition{rc.Address, kind, f})
				}
			}
		}
	}
	return out
}

// find returns the conditions of kind whose filter contains every part.
func find(cs []condition, kind string, parts ...string) []condition {
	var out []condition
	for _, c := range cs {
		if c.Kind != kind {
			continue
		}
		all := true
		for _, part := range parts {
			all = all && strings.Contains(c.Filter, part)
		}
		if all {
			out = append(out, c)
		}
	}
	return out
}

// TestAlertsCoverTheFailureModes: with alerts on, operators hear of the ways
// a deployment fails quietly: generate refusing deliveries (401/403/404; not
// 409/429, which ask for a retry by design), 5xx, the queue backing up
// (depth, and dispatch delay: Cloud Tasks has no oldest-task-age metric), and
// the housekeeping job failing or not succeeding for a while.
func TestAlertsCoverTheFailureModes(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		if p.variable("alerts_enabled") != true {
			is.Equal(len(p.live("google_monitoring_alert_policy")), 0) // alerts off means none
			return
		}
		cs := p.alertConditions()
		generate := str(p.function(t, "Generate").Change.After, "name")
		queue := str(p.queue(t, "generate").Change.After, "name")

		rejects := find(cs, "condition_threshold", "run.googleapis.com/request_count", `"`+generate+`"`, `"401"`, `"403"`, `"404"`)
		is.Equal(len(rejects), 1)                                                                               // an alert on generate answering 401/403/404
		is.True(!strings.Contains(rejects[0].Filter, `"409"`) && !strings.Contains(rejects[0].Filter, `"429"`)) // retry signals are not alerts

		var errorsMetric string
		for _, m := range p.live("google_logging_metric") {
			if strings.Contains(str(m.Change.After, "filter"), "status>=500") {
				errorsMetric = str(m.Change.After, "name")
			}
		}
		is.True(errorsMetric != "")                                                                        // a metric counts 5xx answers
		is.True(len(find(cs, "condition_threshold", "logging.googleapis.com/user/"+errorsMetric+`"`)) > 0) // and an alert watches it

		is.Equal(len(find(cs, "condition_threshold", "cloudtasks.googleapis.com/queue/depth", `"`+queue+`"`)), 1)               // queue depth
		is.Equal(len(find(cs, "condition_threshold", "cloudtasks.googleapis.com/queue/task_attempt_delays", `"`+queue+`"`)), 1) // dispatch delay

		for _, job := range p.live("google_cloud_run_v2_job") {
			name := `"` + str(job.Change.After, "name") + `"`
			is.Equal(len(find(cs, "condition_threshold", "run.googleapis.com/job/completed_execution_count", name, `result="failed"`)), 1) // failed executions
			is.Equal(len(find(cs, "condition_absent", "run.googleapis.com/job/completed_execution_count", name, `result="succeeded"`)), 1) // no recent success
		}
	})
}

// TestBudgetIsOptional: a billing account (with an amount) adds one monthly
// budget on the project, notifying the alert channels; without one there is
// none.
func TestBudgetIsOptional(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		budgets := p.live("google_billing_budget")
		if p.variable("billing_account") == "" {
			is.Equal(len(budgets), 0) // no billing account, no budget
			return
		}
		is.Equal(len(budgets), 1) // one budget
		b := budgets[0].Change.After
		is.Equal(str(b, "billing_account"), p.variable("billing_account")) // on the given account
		projects, _ := get(b, "budget_filter", "projects").([]any)
		is.Equal(len(projects), 1)                                    // scoped to the project
		is.True(strings.HasPrefix(projects[0].(string), "projects/")) // by its number
		is.True(str(b, "amount", "specified_amount", "units") != "")  // with an amount
		refs := strings.Join(p.nestedReferences(configAddress(budgets[0].Address), "all_updates_rule", "monitoring_notification_channels"), " ")
		is.True(strings.Contains(refs, "notification_channel")) // notifying the alert channels
	})
}

// nestedReferences returns the references of arg inside the nested block of
// the configuration block at addr.
func (p *plan) nestedReferences(addr, block, arg string) []string {
	r, ok := p.configResource(addr)
	if !ok {
		return nil
	}
	var blocks []map[string]struct {
		References []string `json:"references"`
	}
	if raw, ok := r.Expressions[block]; ok {
		_ = json.Unmarshal(raw, &blocks)
	}
	var out []string
	for _, b := range blocks {
		out = append(out, b[arg].References...)
	}
	return out
}

// TestUptimeChecksProbeReady: with alerts on, Cloud Monitoring checks GET
// /ready (never a path ending in z, which Cloud Run's front end may answer
// itself) on the submit and progress hosts the functions hand out, and an
// alert watches each check.
func TestUptimeChecksProbeReady(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		checks := p.live("google_monitoring_uptime_check_config")
		if p.variable("alerts_enabled") != true {
			is.Equal(len(checks), 0) // alerts off means no uptime checks
			return
		}
		submitURL := env(p.function(t, "Submit").Change.After)["PUBLIC_BASE_URL"]
		progressURL := env(p.function(t, "Submit").Change.After)["PROGRESS_BASE_URL"]
		want := map[string]bool{
			strings.TrimPrefix(submitURL, "https://"):   true,
			strings.TrimPrefix(progressURL, "https://"): true,
		}
		hosts := map[string]bool{}
		for _, c := range checks {
			http := blocks(c.Change.After["http_check"])
			is.Equal(len(http), 1)              // an HTTP check
			is.Equal(http[0]["path"], "/ready") // of readiness, on a path not ending in z
			is.Equal(http[0]["use_ssl"], true)  // over TLS
			mr := blocks(c.Change.After["monitored_resource"])
			is.Equal(len(mr), 1)
			host, _ := mr[0]["labels"].(map[string]any)["host"].(string)
			hosts[host] = true
			is.Equal(len(find(p.alertConditions(), "condition_threshold", "uptime_check/check_passed", `"`+host+`"`)), 1) // an alert per check
		}
		is.Equal(hosts, want) // submit's and progress's public hosts
	})
}

// TestDashboardShowsWhatOperatorsWatch: Cloud Run does not scrape /metrics, so
// a dashboard built from log-based and built-in metrics shows API p95 latency,
// model failures by class, budget refusals and memory headroom, and alerts
// watch model failures and memory.
func TestDashboardShowsWhatOperatorsWatch(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		metrics := map[string]map[string]any{}
		for _, m := range p.live("google_logging_metric") {
			metrics[str(m.Change.After, "name")] = m.Change.After
		}
		prefix := p.stringVar(t, "name_prefix")
		failures, ok := metrics[prefix+"-model-failures"]
		is.True(ok) // a metric counts model failures
		extract, _ := failures["label_extractors"].(map[string]any)
		is.Equal(extract["class"], "EXTRACT(jsonPayload.class)") // by class, as generate logs it
		refusals, ok := metrics[prefix+"-refusals"]
		is.True(ok) // a metric counts refusals
		extract, _ = refusals["label_extractors"].(map[string]any)
		is.Equal(extract["code"], "EXTRACT(jsonPayload.code)") // by the problem code on the request line

		dashboards := p.live("google_monitoring_dashboard")
		is.Equal(len(dashboards), 1) // one dashboard
		var d struct {
			MosaicLayout struct {
				Tiles []struct {
					Widget struct {
						Title   string
						XyChart struct {
							DataSets []struct {
								TimeSeriesQuery struct {
									TimeSeriesFilter struct{ Filter string }
								}
							}
						}
					}
				}
			}
		}
		is.NoErr(json.Unmarshal([]byte(str(dashboards[0].Change.After, "dashboard_json")), &d)) // valid dashboard JSON
		var filters []string
		for _, tile := range d.MosaicLayout.Tiles {
			for _, ds := range tile.Widget.XyChart.DataSets {
				filters = append(filters, ds.TimeSeriesQuery.TimeSeriesFilter.Filter)
			}
		}
		shows := func(parts ...string) bool {
			for _, f := range filters {
				all := true
				for _, part := range parts {
					all = all && strings.Contains(f, part)
				}
				if all {
					return true
				}
			}
			return false
		}
		is.True(shows("user/" + prefix + "-request-latency"))              // API latency
		is.True(shows("user/" + prefix + "-model-failures"))               // model failures
		is.True(shows("user/"+prefix+"-refusals", `"BUDGET_EXCEEDED"`))    // budget refusals
		is.True(shows("run.googleapis.com/container/memory/utilizations")) // memory headroom
		is.True(shows("user/" + prefix + "-ref-dedup"))                    // reference dedup

		if p.variable("alerts_enabled") == true {
			cs := p.alertConditions()
			is.Equal(len(find(cs, "condition_threshold", "user/"+prefix+"-model-failures")), 1)                   // an alert on model failures
			is.Equal(len(find(cs, "condition_threshold", "run.googleapis.com/container/memory/utilizations")), 1) // and on memory
		}
	})
}
