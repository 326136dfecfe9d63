package scripttest

import (
	"regexp"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/notify"
)

// deploySandbox is a repository with deploy.sh, one environment (staging)
// and, with remote true, a Cloud Storage backend.
func deploySandbox(t *testing.T, remote bool) *sandbox {
	t.Helper()
	s := newSandbox(t, "deploy.sh")
	s.write("terraform/env/staging.tfvars", "project = \"proj-1\"\nname_prefix = \"ag-stg\"\n")
	s.write("terraform/main.tf", "# stand-in configuration\n")
	if remote {
		s.write("terraform/backend.tf", "terraform {\n  backend \"gcs\" {\n    bucket = \"proj-1-tfstate\"\n  }\n}\n")
	}
	s.commit()
	return s
}

var staging = []string{"ASSETGEN_ENV=staging"}

// TestDeployFirstEnvironment: a first deployment of an environment on remote
// state creates both secrets with a generated first version before any
// plan, packages the last commit, bootstraps what the upload and the build
// need, builds the housekeeping image as the build account, and applies
// saved plans, the last one with the image by digest.
func TestDeployFirstEnvironment(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := deploySandbox(t, true)
	out, code := s.run("deploy.sh", staging, "--yes")
	is.Equal(code, 0) // deploy.sh succeeds
	calls := s.calls()

	inits := find(calls, "terraform", "init")
	is.Equal(len(inits), 1)                                                                 // one init
	is.True(calls[inits[0]].has("-backend-config=prefix=assetgen/staging", "-reconfigure")) // the environment's own state

	plans := find(calls, "terraform", "plan")
	is.Equal(len(plans), 2) // the bootstrap plan and the full plan
	for _, secret := range []string{tokenSecret, hookSecret} {
		created := find(calls, "gcloud", "secrets", "create", secret)
		added := find(calls, "gcloud", "secrets", "versions", "add", secret)
		is.Equal(len(created), 1)                     // the secret is created
		is.Equal(len(added), 1)                       // with a first version
		is.True(added[0] < plans[0])                  // before terraform plans anything
		is.True(calls[added[0]].has("--data-file=-")) // from stdin
	}
	keys := s.stateFile("value-" + tokenSecret)
	hook := s.stateFile("value-" + hookSecret)
	is.True(regexp.MustCompile(`^k1:[A-Za-z0-9+/]{43}=$`).MatchString(keys)) // token keys: id:base64(32 bytes), no newline
	is.True(regexp.MustCompile(`^k1:[A-Za-z0-9+/]{43}=$`).MatchString(hook)) // webhook keys: id:base64(32-byte Ed25519 seed), no newline
	_, err := notify.ParseSigningKeys(hook)
	is.NoErr(err) // the functions accept the generated webhook keys
	log := s.stateFile("../calls.log")
	for _, v := range []string{keys, hook, strings.TrimPrefix(keys, "k1:"), strings.TrimPrefix(hook, "k1:")} {
		is.True(!strings.Contains(log, v)) // a secret value never reaches a command line
		is.True(!strings.Contains(out, v)) // nor the output
	}

	pkg := find(calls, "package.sh")
	is.Equal(len(pkg), 1)                // one archive
	is.True(calls[pkg[0]].has("--head")) // of the last commit

	boot := calls[plans[0]]
	is.True(boot.has("-target=google_storage_bucket.source", "-target=google_artifact_registry_repository.images")) // bootstrap: source bucket, repository
	builds := find(calls, "gcloud", "builds", "submit")
	upload := find(calls, "gcloud", "storage", "cp")
	is.Equal(len(builds), 1)      // the housekeeping image is built once
	is.Equal(len(upload), 1)      // the archive is uploaded once
	is.True(plans[0] < upload[0]) // after the bootstrap made the bucket
	is.True(plans[0] < builds[0]) // and the repository
	is.True(builds[0] < plans[1]) // before the full plan needs the image
	cfg := s.stateFile("cloudbuild.yaml")
	is.True(strings.Contains(cfg, "serviceAccount: 'projects/"+project+"/serviceAccounts/"+buildAccount+"'")) // built as the build account
	is.True(strings.Contains(cfg, "'"+imageBase+"/housekeeping:tree-"))                                       // into the environment's repository
	is.True(strings.Contains(cfg, "GOOGLE_BUILDABLE=./jobs/housekeeping"))                                    // from jobs/housekeeping

	full := calls[plans[1]]
	is.True(full.has("-var", "source_object=source/functions-0123456789abcdef0123456789abcdef01234567.zip"))  // the packaged archive
	is.True(full.has("housekeeping_image=" + imageBase + "/housekeeping@sha256:" + strings.Repeat("ab", 32))) // the image by digest
	is.True(full.has("-var-file=env/staging.tfvars"))                                                         // the environment's settings
	assertSavedPlansApplied(t, calls)
	is.Equal(len(find(calls, "sleep")), 0)                          // nothing to wait for
	is.True(strings.Contains(out, "scripts/smoke.sh --token-file")) // the next step is shown
}

// assertSavedPlansApplied: every apply applies the saved plan the plan just
// before it wrote, and nothing else (no variables, no auto-approve).
func assertSavedPlansApplied(t *testing.T, calls []call) {
	t.Helper()
	is := is.New(t)
	applies := find(calls, "terraform", "apply")
	is.True(len(applies) > 0) // something was applied
	for _, a := range applies {
		args := calls[a].Args[1:] // without -chdir
		is.Equal(len(args), 3)    // apply -input=false <saved plan>
		var planned string
		for i := a - 1; i >= 0; i-- {
			if c := calls[i]; c.Cmd == "terraform" && len(c.Args) > 1 && c.Args[1] == "plan" {
				for _, arg := range c.Args {
					if strings.HasPrefix(arg, "-out=") {
						planned = strings.TrimPrefix(arg, "-out=")
					}
				}
				break
			}
		}
		is.Equal(args[2], planned) // the plan the operator saw
	}
}

// TestDeployRetriesTransientErrors: an API that was just enabled and a
// concurrent IAM policy change fail an attempt; deploy.sh waits, plans again
// (the saved plan is stale) and applies, with a growing wait.
func TestDeployRetriesTransientErrors(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := deploySandbox(t, true)
	s.fail("gcloud", "secrets create*", "1", "ERROR: (gcloud.secrets.create) PERMISSION_DENIED: Secret Manager API has not been used in project 123 before or it is disabled. reason: SERVICE_DISABLED")
	s.fail("terraform", "apply*deploy.tfplan", "2", "Error: Error applying IAM policy for cloudtasks queue: Error 409: There were concurrent policy changes.")
	out, code := s.run("deploy.sh", staging, "--yes")
	is.Equal(code, 0) // deploy.sh gets through
	calls := s.calls()
	var waits []string
	for _, i := range find(calls, "sleep") {
		waits = append(waits, calls[i].Args[0])
	}
	is.Equal(waits, []string{"10", "10", "20"})                               // one wait for the API, then 10 s and 20 s for the IAM races
	is.Equal(len(find(calls, "terraform", "apply")), 4)                       // bootstrap, then three attempts of the full apply
	is.Equal(len(find(calls, "terraform", "plan")), 4)                        // each attempt re-plans
	is.Equal(len(find(calls, "gcloud", "secrets", "create", tokenSecret)), 2) // the secret creation was retried
	is.True(strings.Contains(out, "transient error"))                         // and said so
	assertSavedPlansApplied(t, calls)
}

// TestDeployStopsOnOtherErrors: an error that is not transient ends the
// deployment at once, with a failure.
func TestDeployStopsOnOtherErrors(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := deploySandbox(t, true)
	s.fail("terraform", "apply*deploy.tfplan", "always", "Error: Error creating function: googleapi: Error 400: invalid runtime")
	_, code := s.run("deploy.sh", staging, "--yes")
	is.True(code != 0) // deploy.sh fails
	calls := s.calls()
	is.Equal(len(find(calls, "sleep")), 0)              // without waiting
	is.Equal(len(find(calls, "terraform", "apply")), 2) // bootstrap, and one attempt of the full apply
}

// TestDeployGivesUpAfterSixAttempts: a transient error that persists is
// tried six times, then reported.
func TestDeployGivesUpAfterSixAttempts(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := deploySandbox(t, true)
	s.fail("terraform", "apply*deploy.tfplan", "always", "Error 409: There were concurrent policy changes")
	_, code := s.run("deploy.sh", staging, "--yes")
	is.True(code != 0) // deploy.sh fails in the end
	calls := s.calls()
	is.Equal(len(find(calls, "terraform", "apply")), 1+6) // bootstrap, and six attempts
	is.Equal(len(find(calls, "sleep")), 5)                // with a wait between attempts
}

// TestDeployRefusesASecondEnvironmentOnLocalState: local state holds one
// environment; deploying another fails before it changes anything.
func TestDeployRefusesASecondEnvironmentOnLocalState(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := deploySandbox(t, false)
	s.write("terraform/env/prod.tfvars", "project = \"proj-1\"\nname_prefix = \"ag-prod\"\n")

	_, code := s.run("deploy.sh", staging, "--yes")
	is.Equal(code, 0)                                                                              // the first environment deploys on local state
	is.Equal(strings.TrimSpace(s.stateFile("../repo/terraform/terraform.tfstate.env")), "staging") // and the state is marked as staging's
	s.write("terraform/terraform.tfstate", `{"version": 4}`)
	before := len(s.calls())

	out, code := s.run("deploy.sh", []string{"ASSETGEN_ENV=prod"}, "--yes")
	is.True(code != 0)                                   // a second environment is refused
	is.True(strings.Contains(out, "backend.tf.example")) // pointing at remote state
	is.Equal(len(s.calls()), before)                     // before any call
}

// TestDeployNeedsAnEnvironment: without ASSETGEN_ENV, or with an unknown one,
// nothing runs.
func TestDeployNeedsAnEnvironment(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := deploySandbox(t, true)
	out, code := s.run("deploy.sh", nil, "--yes")
	is.True(code != 0)                             // no environment, no deployment
	is.True(strings.Contains(out, "ASSETGEN_ENV")) // says what is missing
	out, code = s.run("deploy.sh", []string{"ASSETGEN_ENV=qa"}, "--yes")
	is.True(code != 0)                                        // an environment without settings
	is.True(strings.Contains(out, "terraform/env/qa.tfvars")) // names the file to create
	is.Equal(len(s.calls()), 0)                               // nothing was called
}

// TestDeployPlanChangesNothing: --plan shows the full plan and creates,
// uploads, builds and applies nothing.
func TestDeployPlanChangesNothing(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := deploySandbox(t, true)
	_, code := s.run("deploy.sh", staging, "--plan")
	is.Equal(code, 0) // the plan is shown
	calls := s.calls()
	for _, c := range calls {
		switch {
		case c.Cmd == "gcloud" && (c.has("create") || c.has("add") || c.has("cp") || c.has("enable") || c.has("submit")):
			t.Errorf("--plan changed something: %s", c)
		case c.Cmd == "terraform" && c.has("apply"):
			t.Errorf("--plan applied: %s", c)
		}
	}
	is.Equal(len(find(calls, "terraform", "plan")), 1) // one plan
}

// TestDeployRollback: --rollback moves each function's traffic to the
// revision before the one serving (not merely the second newest), in
// seconds: no package, no build, no terraform plan.
func TestDeployRollback(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := deploySandbox(t, true)
	out, code := s.run("deploy.sh", staging, "--rollback", "--yes")
	is.Equal(code, 0) // the rollback succeeds
	calls := s.calls()
	var moved []string
	for _, i := range find(calls, "gcloud", "run", "services", "update-traffic") {
		moved = append(moved, calls[i].Args[3]+" "+calls[i].Args[4])
	}
	is.Equal(moved, []string{
		"ag-stg-submit --to-revisions=ag-stg-submit-00001-old=100",
		"ag-stg-generate --to-revisions=ag-stg-generate-00001-old=100",
		"ag-stg-progress --to-revisions=ag-stg-progress-00001-old=100",
	}) // every function goes back one revision from the serving one
	is.Equal(len(find(calls, "terraform", "plan")), 0) // no plan
	is.Equal(len(find(calls, "package.sh")), 0)        // no package
	is.Equal(len(find(calls, "gcloud", "builds")), 0)  // no build
	is.True(strings.Contains(out, "--source-object"))  // says how to stay on the release
}
