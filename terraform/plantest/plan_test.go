// Package plantest checks the security and wiring policies of the terraform in
// terraform/ against plans rendered as JSON (terraform show -json). It needs
// no cloud access: the offline validator produces the plans.
//
//	../shared/tools/tf-offline-validate/run terraform --var-file terraform/ci.tfvars --plan-json /tmp/ci.json
//	ASSETGEN_PLAN_JSON=/tmp/ci.json:/tmp/minimal.json go test -count=1 ./terraform/plantest/
//
// ASSETGEN_PLAN_JSON lists one or more plans (separated like PATH); every
// test runs against each, and the tests across environments compare them.
// scripts/ci-terraform.sh (and so `make test`) plans every shipped var file
// and runs the tests. Without ASSETGEN_PLAN_JSON the tests skip.
package plantest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

// planEnv names the environment variable holding the plan JSON paths.
const planEnv = "ASSETGEN_PLAN_JSON"

// plan is the part of `terraform show -json` the tests read.
type plan struct {
	// Name is the plan file's base name without .json.
	Name            string                         `json:"-"`
	FormatVersion   string                         `json:"format_version"`
	Variables       map[string]struct{ Value any } `json:"variables"`
	ResourceChanges []resourceChange               `json:"resource_changes"`
	OutputChanges   map[string]struct {
		After        any `json:"after"`
		AfterUnknown any `json:"after_unknown"`
	} `json:"output_changes"`
	Configuration struct {
		RootModule configModule `json:"root_module"`
	} `json:"configuration"`
}

type resourceChange struct {
	Address string `json:"address"`
	Mode    string `json:"mode"`
	Type    string `json:"type"`
	Name    string `json:"name"`
	Change  struct {
		Actions      []string       `json:"actions"`
		After        map[string]any `json:"after"`
		AfterUnknown any            `json:"after_unknown"`
	} `json:"change"`
}

type configModule struct {
	Resources []configResource `json:"resources"`
	Variables map[string]struct {
		Default any `json:"default"`
	} `json:"variables"`
	ModuleCalls map[string]struct {
		Module configModule `json:"module"`
	} `json:"module_calls"`
}

type configResource struct {
	Address     string                     `json:"address"`
	Type        string                     `json:"type"`
	Expressions map[string]json.RawMessage `json:"expressions"`
	DependsOn   []string                   `json:"depends_on"`
	// Count and ForEach are the count / for_each expressions, when present.
	Count   json.RawMessage `json:"count_expression"`
	ForEach json.RawMessage `json:"for_each_expression"`
}

// plans reads every plan named by ASSETGEN_PLAN_JSON, or skips the test.
func plans(t *testing.T) []*plan {
	t.Helper()
	list := os.Getenv(planEnv)
	if list == "" {
		t.Skipf("%s is not set; run scripts/ci-terraform.sh (make test does when the offline validator is there), or produce a plan with "+
			"`../shared/tools/tf-offline-validate/run terraform --plan-json /tmp/plan.json` (from the repository root) and run "+
			"`%s=/tmp/plan.json go test -count=1 ./terraform/plantest/`", planEnv, planEnv)
	}
	var out []*plan
	for _, path := range filepath.SplitList(list) {
		if path == "" {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("read plan: %v", err)
		}
		p := &plan{Name: strings.TrimSuffix(filepath.Base(path), ".json")}
		if err := json.Unmarshal(b, p); err != nil {
			t.Fatalf("decode plan %s: %v", path, err)
		}
		if len(p.ResourceChanges) == 0 {
			t.Fatalf("plan %s has no resource_changes: is it `terraform show -json` of a plan?", path)
		}
		out = append(out, p)
	}
	return out
}

// each runs f against every plan, as a subtest named after the plan.
func each(t *testing.T, f func(t *testing.T, p *plan)) {
	t.Helper()
	for _, p := range plans(t) {
		t.Run(p.Name, func(t *testing.T) { f(t, p) })
	}
}

// variable returns the value of an input variable as planned.
func (p *plan) variable(name string) any { return p.Variables[name].Value }

// stringVar returns a string input variable, failing the test if absent.
func (p *plan) stringVar(t *testing.T, name string) string {
	t.Helper()
	s, ok := p.variable(name).(string)
	if !ok {
		t.Fatalf("plan %s: variable %s is not a string (%v)", p.Name, name, p.variable(name))
	}
	return s
}

// defaultOf returns a variable's declared default.
func (p *plan) defaultOf(name string) any {
	return p.Configuration.RootModule.Variables[name].Default
}

// configResource returns the configuration block at addr (no instance key).
func (p *plan) configResource(addr string) (configResource, bool) {
	for _, r := range p.configResources() {
		if r.Address == addr {
			return r, true
		}
	}
	return configResource{}, false
}

// live returns the managed resources the plan keeps or creates (not the ones
// it only deletes), optionally of the given types.
func (p *plan) live(types ...string) []resourceChange {
	var out []resourceChange
	for _, rc := range p.ResourceChanges {
		if rc.Mode != "managed" || rc.Change.After == nil {
			continue
		}
		if len(types) > 0 && !slices.Contains(types, rc.Type) {
			continue
		}
		out = append(out, rc)
	}
	return out
}

// configResources lists every resource block of the configuration, modules
// included.
func (p *plan) configResources() []configResource {
	var out []configResource
	var walk func(m configModule, prefix string)
	walk = func(m configModule, prefix string) {
		for _, r := range m.Resources {
			r.Address = prefix + r.Address
			out = append(out, r)
		}
		for name, call := range m.ModuleCalls {
			walk(call.Module, prefix+"module."+name+".")
		}
	}
	walk(p.Configuration.RootModule, "")
	return out
}

// references returns the references of one argument of the configuration
// block at addr (a resource address without its index).
func (p *plan) references(addr, arg string) []string {
	for _, r := range p.configResources() {
		if r.Address != addr {
			continue
		}
		var e struct {
			References []string `json:"references"`
		}
		if raw, ok := r.Expressions[arg]; ok {
			_ = json.Unmarshal(raw, &e)
		}
		return e.References
	}
	return nil
}

// configAddress drops the instance key: a.b["k"] and a.b[0] → a.b.
func configAddress(addr string) string {
	if i := strings.LastIndex(addr, "["); i > strings.LastIndex(addr, ".") {
		return addr[:i]
	}
	return addr
}

// get walks nested blocks: get(m, "service_config", "timeout_seconds") reads
// the first service_config block's timeout_seconds.
func get(m map[string]any, path ...string) any {
	var cur any = m
	for _, k := range path {
		if l, ok := cur.([]any); ok {
			if len(l) == 0 {
				return nil
			}
			cur = l[0]
		}
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	if l, ok := cur.([]any); ok && len(l) == 1 {
		if _, isBlock := l[0].(map[string]any); isBlock {
			return l[0]
		}
	}
	return cur
}

func str(m map[string]any, path ...string) string {
	s, _ := get(m, path...).(string)
	return s
}

func num(m map[string]any, path ...string) float64 {
	f, _ := get(m, path...).(float64)
	return f
}

func env(m map[string]any) map[string]string {
	out := map[string]string{}
	if e, ok := get(m, "service_config", "environment_variables").(map[string]any); ok {
		for k, v := range e {
			s, _ := v.(string)
			out[k] = s
		}
	}
	return out
}

// function returns the Cloud Run function (gen2) whose entry point is entry.
func (p *plan) function(t *testing.T, entry string) resourceChange {
	t.Helper()
	var found []resourceChange
	for _, rc := range p.live("google_cloudfunctions2_function") {
		if str(rc.Change.After, "build_config", "entry_point") == entry {
			found = append(found, rc)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one google_cloudfunctions2_function with entry_point %q, found %d", entry, len(found))
	}
	return found[0]
}

// serviceAccountEmails maps each planned google_service_account's address to
// its e-mail (account_id@project.iam.gserviceaccount.com).
func (p *plan) serviceAccountEmails() map[string]string {
	out := map[string]string{}
	for _, rc := range p.live("google_service_account") {
		id, project := str(rc.Change.After, "account_id"), str(rc.Change.After, "project")
		if project == "" {
			// project is optional; the provider's default applies.
			project = p.projectFromAnywhere()
		}
		out[rc.Address] = id + "@" + project + ".iam.gserviceaccount.com"
	}
	return out
}

func (p *plan) projectFromAnywhere() string {
	for _, rc := range p.live() {
		if s := str(rc.Change.After, "project"); s != "" {
			return s
		}
	}
	return ""
}

// grant is one IAM member on one resource, whatever the resource type.
type grant struct {
	Address string // of the IAM resource
	Type    string
	Role    string
	Member  string
}

// grants flattens every *_iam_member, *_iam_binding and *_iam_policy of the
// plan into (role, member) pairs. Unknown members are reported as "(unknown)".
func (p *plan) grants(t *testing.T) []grant {
	t.Helper()
	var out []grant
	for _, rc := range p.live() {
		a := rc.Change.After
		switch {
		case strings.HasSuffix(rc.Type, "_iam_member"):
			m := str(a, "member")
			if m == "" {
				m = "(unknown)"
			}
			out = append(out, grant{rc.Address, rc.Type, str(a, "role"), m})
		case strings.HasSuffix(rc.Type, "_iam_binding"):
			members, _ := a["members"].([]any)
			if members == nil {
				out = append(out, grant{rc.Address, rc.Type, str(a, "role"), "(unknown)"})
			}
			for _, m := range members {
				s, _ := m.(string)
				out = append(out, grant{rc.Address, rc.Type, str(a, "role"), s})
			}
		case strings.HasSuffix(rc.Type, "_iam_policy"):
			var pol struct {
				Bindings []struct {
					Role    string   `json:"role"`
					Members []string `json:"members"`
				} `json:"bindings"`
			}
			data := str(a, "policy_data")
			if data == "" {
				t.Errorf("%s: policy_data unknown at plan time; the policy tests cannot see its members", rc.Address)
				continue
			}
			if err := json.Unmarshal([]byte(data), &pol); err != nil {
				t.Errorf("%s: policy_data: %v", rc.Address, err)
				continue
			}
			for _, b := range pol.Bindings {
				for _, m := range b.Members {
					out = append(out, grant{rc.Address, rc.Type, b.Role, m})
				}
			}
		}
	}
	return out
}

// Resource types through which a function (its Cloud Run service) can be
// made invokable, and the argument naming the target.
var invokerTypes = map[string]string{
	"google_cloud_run_v2_service_iam_member":      "name",
	"google_cloud_run_v2_service_iam_binding":     "name",
	"google_cloud_run_v2_service_iam_policy":      "name",
	"google_cloud_run_service_iam_member":         "service",
	"google_cloud_run_service_iam_binding":        "service",
	"google_cloud_run_service_iam_policy":         "service",
	"google_cloudfunctions2_function_iam_member":  "cloud_function",
	"google_cloudfunctions2_function_iam_binding": "cloud_function",
	"google_cloudfunctions2_function_iam_policy":  "cloud_function",
}

// grantsOn returns the grants whose IAM resource targets fn (by reference to
// the function resource, or by its planned service/function name).
func (p *plan) grantsOn(t *testing.T, fn resourceChange) []grant {
	t.Helper()
	fnAddr := configAddress(fn.Address)
	fnName := str(fn.Change.After, "name")
	byAddr := map[string]resourceChange{}
	for _, rc := range p.live() {
		byAddr[rc.Address] = rc
	}
	var out []grant
	for _, g := range p.grants(t) {
		arg, ok := invokerTypes[g.Type]
		if !ok {
			continue
		}
		target := str(byAddr[g.Address].Change.After, arg)
		refs := p.references(configAddress(g.Address), arg)
		if slices.Contains(refs, fnAddr) || (target != "" && (target == fnName || strings.HasSuffix(target, "/"+fnName))) {
			out = append(out, g)
		}
	}
	return out
}

var invokerRoles = []string{"roles/run.invoker", "roles/cloudfunctions.invoker", "roles/run.servicesInvoker"}

func isPublic(member string) bool { return member == "allUsers" || member == "allAuthenticatedUsers" }

// TestGenerateIsNotPublic: nothing makes the generate function invokable by
// allUsers or allAuthenticatedUsers, whatever IAM resource type is used.
func TestGenerateIsNotPublic(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		gen := p.function(t, "Generate")
		on := p.grantsOn(t, gen)
		is.True(len(on) > 0) // some IAM resource targets generate's service (the tasks invoker grant)
		for _, g := range on {
			if isPublic(g.Member) {
				t.Errorf("%s grants %s to %s on the generate function: it must only be invokable by Cloud Tasks", g.Address, g.Role, g.Member)
			}
		}
	})
}

// TestOnlyTasksInvokerInvokesGenerate: the only run.invoker member on
// generate's service is the tasks-invoker service account, and no
// project-level grant hands out invoker rights on every service.
func TestOnlyTasksInvokerInvokesGenerate(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		gen := p.function(t, "Generate")
		invoker := p.tasksInvoker(t)

		var members []string
		for _, g := range p.grantsOn(t, gen) {
			if slices.Contains(invokerRoles, g.Role) {
				members = append(members, g.Member)
			}
		}
		is.Equal(members, []string{"serviceAccount:" + invoker}) // generate's only invoker is the tasks-invoker account

		for _, g := range p.grants(t) {
			if (g.Type == "google_project_iam_member" || g.Type == "google_project_iam_binding" || g.Type == "google_project_iam_policy") &&
				(slices.Contains(invokerRoles, g.Role) || g.Role == "roles/run.admin" || g.Role == "roles/cloudfunctions.admin") {
				t.Errorf("%s grants %s to %s on the whole project, which would let it invoke generate", g.Address, g.Role, g.Member)
			}
		}
	})
}

// tasksInvoker returns the e-mail submit hands to Cloud Tasks
// (TASKS_SERVICE_ACCOUNT) after checking that it is a service account of
// this plan.
func (p *plan) tasksInvoker(t *testing.T) string {
	t.Helper()
	submit := p.function(t, "Submit")
	sa := env(submit.Change.After)["TASKS_SERVICE_ACCOUNT"]
	if sa == "" {
		t.Fatalf("%s: TASKS_SERVICE_ACCOUNT is empty or unknown at plan time; without it Cloud Tasks sends no OIDC token and generate must reject every task", submit.Address)
	}
	emails := p.serviceAccountEmails()
	found := false
	for _, e := range emails {
		found = found || e == sa
	}
	if !found {
		t.Fatalf("TASKS_SERVICE_ACCOUNT %q is not one of the service accounts this plan creates: %v", sa, sortedValues(emails))
	}
	return sa
}

// TestTasksOIDCAccountIsGenerateInvoker: the account whose OIDC token submit
// (and the housekeeping job) asks Cloud Tasks to attach is the account that
// may invoke generate, submit may act as it (iam.serviceAccountUser, needed
// to create tasks with its token), and GENERATE_URL points at generate.
func TestTasksOIDCAccountIsGenerateInvoker(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		gen := p.function(t, "Generate")
		submit := p.function(t, "Submit")
		invoker := p.tasksInvoker(t)

		var genInvokers []string
		for _, g := range p.grantsOn(t, gen) {
			if g.Role == "roles/run.invoker" {
				genInvokers = append(genInvokers, strings.TrimPrefix(g.Member, "serviceAccount:"))
			}
		}
		is.True(slices.Contains(genInvokers, invoker)) // the OIDC account of the tasks holds run.invoker on generate

		// Every job that enqueues tasks uses the same account.
		for _, job := range p.live("google_cloud_run_v2_job") {
			for k, v := range jobEnv(job.Change.After) {
				if k == "TASKS_SERVICE_ACCOUNT" && v != invoker {
					t.Errorf("%s: TASKS_SERVICE_ACCOUNT %q differs from submit's %q", job.Address, v, invoker)
				}
			}
		}

		// submit may attach the token: serviceAccountUser on the invoker account.
		submitSA := "serviceAccount:" + str(submit.Change.After, "service_config", "service_account_email")
		emails := p.serviceAccountEmails()
		actAs := false
		for _, rc := range p.live("google_service_account_iam_member") {
			a := rc.Change.After
			if str(a, "role") != "roles/iam.serviceAccountUser" || str(a, "member") != submitSA {
				continue
			}
			for _, ref := range p.references(configAddress(rc.Address), "service_account_id") {
				if emails[strings.TrimSuffix(ref, ".name")] == invoker || emails[strings.TrimSuffix(ref, ".id")] == invoker {
					actAs = true
				}
			}
			if strings.HasSuffix(str(a, "service_account_id"), "/"+invoker) {
				actAs = true
			}
		}
		is.True(actAs) // submit holds roles/iam.serviceAccountUser on the tasks-invoker account

		// Tasks go to generate, over https.
		u := env(submit.Change.After)["GENERATE_URL"]
		is.True(strings.HasPrefix(u, "https://"+str(gen.Change.After, "name")+"-")) // GENERATE_URL is generate's run.app URL
	})
}

func jobEnv(after map[string]any) map[string]string {
	out := map[string]string{}
	c, _ := get(after, "template", "template", "containers").(map[string]any)
	if c == nil {
		if l, ok := get(after, "template", "template", "containers").([]any); ok && len(l) > 0 {
			c, _ = l[0].(map[string]any)
		}
	}
	envs, _ := c["env"].([]any)
	for _, e := range envs {
		m, _ := e.(map[string]any)
		name, _ := m["name"].(string)
		value, _ := m["value"].(string)
		out[name] = value
	}
	return out
}

// TestBucketsArePrivate: every bucket (the ledger above all) enforces public
// access prevention and uniform bucket-level access, and no bucket IAM grant
// names allUsers or allAuthenticatedUsers.
func TestBucketsArePrivate(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		ledger := env(p.function(t, "Submit").Change.After)["BUCKET"]
		is.True(ledger != "") // submit names the ledger bucket

		seen := false
		for _, b := range p.live("google_storage_bucket") {
			a := b.Change.After
			seen = seen || str(a, "name") == ledger
			if got := str(a, "public_access_prevention"); got != "enforced" {
				t.Errorf("%s: public_access_prevention = %q, want \"enforced\"", b.Address, got)
			}
			if got, _ := a["uniform_bucket_level_access"].(bool); !got {
				t.Errorf("%s: uniform_bucket_level_access is not true", b.Address)
			}
			if v := get(a, "versioning", "enabled"); v == true && str(a, "name") == ledger {
				t.Errorf("%s: versioning is on; the ledger keeps its own history", b.Address)
			}
		}
		is.True(seen) // the ledger bucket named by BUCKET is created by this plan

		for _, g := range p.grants(t) {
			if strings.HasPrefix(g.Type, "google_storage_") && isPublic(g.Member) {
				t.Errorf("%s grants %s to %s on a bucket", g.Address, g.Role, g.Member)
			}
		}
	})
}

// TestProgressServesLongStreams: the progress function holds SSE streams up
// to Cloud Run's 3600 s limit with up to 1000 streams per instance (which
// needs a whole CPU), and ends streams itself before the timeout.
func TestProgressServesLongStreams(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		a := p.function(t, "Progress").Change.After

		is.Equal(num(a, "service_config", "timeout_seconds"), 3600.0)                 // progress timeout is Cloud Run's maximum
		is.True(num(a, "service_config", "max_instance_request_concurrency") >= 1000) // progress serves ≥ 1000 streams per instance
		var cpu float64
		_, err := fmt.Sscan(str(a, "service_config", "available_cpu"), &cpu)
		is.NoErr(err)     // progress available_cpu is a number
		is.True(cpu >= 1) // request concurrency > 1 needs at least one CPU

		maxDur, err := time.ParseDuration(env(a)["SSE_MAX_DURATION"])
		is.NoErr(err)                                    // progress sets SSE_MAX_DURATION
		is.True(maxDur < 3600*time.Second)               // streams end before the request timeout cuts them
		is.True(env(a)["SIGNING_SERVICE_ACCOUNT"] != "") // progress signs URLs as a named account
	})
}

// TestNoOwnerOrEditor: no IAM grant anywhere in the plan hands out the basic
// roles, and no project-wide grant lets an account impersonate every other.
func TestNoOwnerOrEditor(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		grants := p.grants(t)
		is.True(len(grants) > 0) // the plan grants roles
		for _, g := range grants {
			switch g.Role {
			case "roles/owner", "roles/editor", "roles/viewer":
				t.Errorf("%s grants the basic role %s to %s", g.Address, g.Role, g.Member)
			}
			if strings.HasPrefix(g.Type, "google_project_iam_") {
				switch g.Role {
				case "roles/iam.serviceAccountTokenCreator", "roles/iam.serviceAccountUser", "roles/iam.serviceAccountAdmin", "roles/resourcemanager.projectIamAdmin":
					t.Errorf("%s grants %s to %s on the whole project; grant it on the one service account that needs it", g.Address, g.Role, g.Member)
				}
				if isPublic(g.Member) {
					t.Errorf("%s grants %s to %s on the project", g.Address, g.Role, g.Member)
				}
			}
		}
	})
}

// TestNoSecretValuesInTerraform: terraform never holds a secret's value: no
// secret version resources, and no key-like plain environment variable on a
// function (the Gemini key arrives through secret_environment_variables).
func TestNoSecretValuesInTerraform(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		versionTypes := []string{"google_secret_manager_secret_version", "google_secret_manager_regional_secret_version"}
		for _, rc := range p.live(versionTypes...) {
			t.Errorf("%s: secret versions (their data) must not be managed by terraform; add them with `gcloud secrets versions add --data-file=-`", rc.Address)
		}
		for _, r := range p.configResources() {
			if slices.Contains(versionTypes, r.Type) {
				t.Errorf("%s: secret version declared in the configuration", r.Address)
			}
		}
		keyLike := regexp.MustCompile(`(?i)(API_KEY|SECRET|PASSWORD|PRIVATE_KEY|TOKEN)$`)
		for _, fn := range p.live("google_cloudfunctions2_function") {
			for k := range env(fn.Change.After) {
				if keyLike.MatchString(k) {
					t.Errorf("%s: plain environment variable %s looks like a secret; use secret_environment_variables", fn.Address, k)
				}
			}
		}
		for _, job := range p.live("google_cloud_run_v2_job") {
			for k, v := range jobEnv(job.Change.After) {
				if keyLike.MatchString(k) && v != "" {
					t.Errorf("%s: plain environment variable %s looks like a secret; use a secret reference", job.Address, k)
				}
			}
		}
	})
}

// TestQueueMatchesFunctions: the functions' view of the queue matches the
// queue: its full name, its attempt budget, and a generate timeout that
// outlives one task delivery.
func TestQueueMatchesFunctions(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		is.Equal(len(p.live("google_cloud_tasks_queue")), 2) // the row task queue and the dry-run queue
		fullName := func(q map[string]any) string {
			project := str(q, "project")
			if project == "" {
				project = p.projectFromAnywhere()
			}
			return fmt.Sprintf("projects/%s/locations/%s/queues/%s", project, str(q, "location"), str(q, "name"))
		}
		q, dry := p.queue(t, "generate").Change.After, p.queue(t, "generate_dry_run").Change.After
		wantQueue, wantDry := fullName(q), fullName(dry)
		attempts := fmt.Sprint(num(q, "retry_config", "max_attempts"))
		is.Equal(fmt.Sprint(num(dry, "retry_config", "max_attempts")), attempts) // one attempt budget for both queues
		is.True(wantDry != wantQueue)                                            // dry runs have a queue of their own

		submit, gen := p.function(t, "Submit"), p.function(t, "Generate")
		for _, fn := range []resourceChange{submit, gen} {
			e := env(fn.Change.After)
			if e["TASKS_QUEUE"] != wantQueue {
				t.Errorf("%s: TASKS_QUEUE = %q, want %q", fn.Address, e["TASKS_QUEUE"], wantQueue)
			}
			if e["TASKS_DRY_RUN_QUEUE"] != wantDry {
				t.Errorf("%s: TASKS_DRY_RUN_QUEUE = %q, want %q", fn.Address, e["TASKS_DRY_RUN_QUEUE"], wantDry)
			}
			if e["TASKS_MAX_ATTEMPTS"] != attempts {
				t.Errorf("%s: TASKS_MAX_ATTEMPTS = %q, want the queue's max_attempts %s", fn.Address, e["TASKS_MAX_ATTEMPTS"], attempts)
			}
		}

		deadline, err := time.ParseDuration(env(submit.Change.After)["TASKS_DISPATCH_DEADLINE"])
		is.NoErr(err)                                                                                                   // submit sets TASKS_DISPATCH_DEADLINE
		is.True(deadline >= 15*time.Second && deadline <= 30*time.Minute)                                               // within Cloud Tasks' limits
		is.Equal(env(gen.Change.After)["TASKS_DISPATCH_DEADLINE"], env(submit.Change.After)["TASKS_DISPATCH_DEADLINE"]) // generate knows the same deadline
		is.True(time.Duration(num(gen.Change.After, "service_config", "timeout_seconds"))*time.Second >= deadline)      // generate outlives one delivery
	})
}

// queue is the Cloud Tasks queue resource of that name in terraform.
func (p *plan) queue(t *testing.T, name string) resourceChange {
	t.Helper()
	for _, q := range p.live("google_cloud_tasks_queue") {
		if q.Name == name {
			return q
		}
	}
	t.Fatalf("no google_cloud_tasks_queue.%s in the plan", name)
	return resourceChange{}
}

func sortedValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}
