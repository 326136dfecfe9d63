package plantest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// TestNoWorkloadStartsOnASecretCreatedInTheSamePlan: a revision cannot start
// on a secret without versions, and a secret this plan creates has none, so
// no function or job may read one; the first apply would fail. (The token
// keys and webhook signing keys secrets are created with a first version by
// scripts/deploy.sh before terraform plans; a Gemini API key secret created
// here is mounted only once gemini_api_key_added says a version exists.)
func TestNoWorkloadStartsOnASecretCreatedInTheSamePlan(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		created := map[string]string{}
		for _, rc := range p.ResourceChanges {
			if rc.Type == "google_secret_manager_secret" && rc.Mode == "managed" && slices.Contains(rc.Change.Actions, "create") {
				created[str(rc.Change.After, "secret_id")] = rc.Address
			}
		}
		references := 0
		for _, w := range p.workloads(t) {
			for variable, secret := range w.Secrets {
				references++
				if addr, ok := created[secret]; ok {
					t.Errorf("%s: %s reads secret %q, which this plan creates (%s) without a version: its first revision cannot start", w.Address, variable, secret, addr)
				}
			}
		}
		is.True(references >= 5) // the workloads read their secrets
	})
}

// TestLiveRunsWaitForTheModelKey: generate runs live (LIVE_BACKEND=gemini)
// only with GEMINI_API_KEY mounted, and submit offers exactly the backend
// generate has, so it never accepts a paid batch that generate cannot make.
func TestLiveRunsWaitForTheModelKey(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		var gen workload
		for _, w := range p.workloads(t) {
			if w.Name == "Generate" {
				gen = w
			}
		}
		backend := gen.Plain["LIVE_BACKEND"]
		_, mounted := gen.Secrets["GEMINI_API_KEY"]
		is.Equal(backend == "gemini", mounted)                                       // the Gemini backend runs with its key, and only then
		is.Equal(env(p.function(t, "Submit").Change.After)["LIVE_BACKEND"], backend) // submit offers what generate can do
		if p.variable("create_gemini_api_key_secret") == true && p.variable("gemini_api_key_added") == false {
			is.Equal(backend, "") // a key secret created without a version keeps live runs off
		}
	})
}

// TestRollbackArtifactsAreKept: what a rollback returns to still exists for
// the promised window: source archives in the source bucket and images in the
// environment's repository are deleted no sooner than source_retention_days,
// and the newest images are kept whatever their age.
func TestRollbackArtifactsAreKept(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		days, ok := p.variable("source_retention_days").(float64)
		is.True(ok && days >= 7) // a rollback window of at least a week

		source := str(p.function(t, "Submit").Change.After, "build_config", "source", "storage_source", "bucket")
		for _, b := range p.live("google_storage_bucket") {
			if str(b.Change.After, "name") != source {
				continue
			}
			for _, rule := range blocks(b.Change.After["lifecycle_rule"]) {
				if str(rule, "action", "type") == "Delete" {
					age := num(rule, "condition", "age")
					is.True(age >= days) // source archives outlive the rollback window
				}
			}
		}

		repo := p.live("google_artifact_registry_repository")
		is.Equal(len(repo), 1) // the environment's image repository
		a := repo[0].Change.After
		is.Equal(a["cleanup_policy_dry_run"], false) // its cleanup policies apply
		keeps, deletes := 0, 0
		for _, pol := range blocks(a["cleanup_policies"]) {
			switch str(pol, "action") {
			case "KEEP":
				if n := num(pol, "most_recent_versions", "keep_count"); n >= 2 {
					keeps++
				}
			case "DELETE":
				deletes++
				is.Equal(str(pol, "condition", "older_than"), fmt.Sprintf("%.0fs", days*86400)) // images are deleted only past the window
			}
		}
		is.True(keeps >= 1)   // the newest images (the serving one, the one before) are always kept
		is.True(deletes >= 1) // and old ones go, so storage stays bounded
	})
}

// TestOutputsNameWhatOperatorsUse: the outputs give the services' names
// (rollback), the deterministic submit URL (known before anything exists and
// equal to the statusUrl origin submit hands out) and the scheduler job.
func TestOutputsNameWhatOperatorsUse(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		services, _ := p.OutputChanges["services"].After.(map[string]any)
		for entry, key := range map[string]string{"Submit": "submit", "Generate": "generate", "Progress": "progress"} {
			is.Equal(services[key], str(p.function(t, entry).Change.After, "name")) // services names each function's service
		}

		submitURL, _ := p.OutputChanges["submit_url"].After.(string)
		name := str(p.function(t, "Submit").Change.After, "name")
		is.True(strings.HasPrefix(submitURL, "https://"+name+"-"))                     // submit_url is the deterministic run.app URL
		is.True(strings.HasSuffix(submitURL, "."+p.stringVar(t, "region")+".run.app")) // in the region
		if p.variable("public_base_url") == "" {
			is.Equal(env(p.function(t, "Submit").Change.After)["PUBLIC_BASE_URL"], submitURL) // the origin submit hands out
		}

		_, declared := p.OutputChanges["scheduler_job"]
		is.True(declared) // the scheduler job is an output
		if len(p.live("google_cloud_scheduler_job")) > 0 {
			job, _ := p.OutputChanges["scheduler_job"].After.(map[string]any)
			is.Equal(job["name"], str(p.live("google_cloud_scheduler_job")[0].Change.After, "name")) // scheduler_job names the schedule
		}
	})
}

// TestShippedSettingsKeepTheAPIOn: no shipped var file (the example an
// operator copies included) switches the batch API off.
func TestShippedSettingsKeepTheAPIOn(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		is.True(env(p.function(t, "Submit").Change.After)["HYBRID_V1_ENABLED"] != "off") // POST /batch/images answers
	})
}
