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
