package plantest

import (
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// TestGenerateIsInternalByDefault: generate's ingress defaults to
// ALLOW_INTERNAL_ONLY (Cloud Tasks of the same project is internal to Cloud
// Run), and the function takes the configured value.
func TestGenerateIsInternalByDefault(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		is.Equal(p.defaultOf("generate_ingress"), "ALLOW_INTERNAL_ONLY") // generate is internal unless an operator says otherwise
		gen := p.function(t, "Generate").Change.After
		is.Equal(str(gen, "service_config", "ingress_settings"), p.stringVar(t, "generate_ingress")) // generate's ingress follows the variable
	})
}

// TestGenerateChecksTheQueuesClaims: generate knows what to expect of the
// OIDC token Cloud Run hands on after verifying it (signature removed): the
// audience the queue puts in it (the origin of GENERATE_URL, which submit and
// the housekeeping job post tasks to) and the tasks account's e-mail.
func TestGenerateChecksTheQueuesClaims(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		gen := env(p.function(t, "Generate").Change.After)
		submit := env(p.function(t, "Submit").Change.After)
		invoker := p.tasksInvoker(t)

		u, err := url.Parse(submit["GENERATE_URL"])
		is.NoErr(err)                                               // submit's GENERATE_URL parses
		is.Equal(gen["TASKS_OIDC_AUDIENCE"], u.Scheme+"://"+u.Host) // generate expects the audience tasks carry (GENERATE_URL's origin)
		is.Equal(gen["TASKS_SERVICE_ACCOUNT"], invoker)             // generate expects the queue's account
		for _, job := range p.live("google_cloud_run_v2_job") {
			if got := jobEnv(job.Change.After)["GENERATE_URL"]; got != submit["GENERATE_URL"] {
				t.Errorf("%s: GENERATE_URL %q differs from submit's %q: its tasks would carry another audience", job.Address, got, submit["GENERATE_URL"])
			}
		}
	})
}

// TestCallersServicesArePublic: submit and progress are invokable by allUsers
// (they authenticate callers themselves: CORS preflights carry no credentials,
// EventSource sends no headers, and Cloud Run would strip the signature of a
// user's token it verified), take every ingress, require real authentication
// (in google mode with an allow-list), and no variable can take the public
// binding away.
func TestCallersServicesArePublic(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		for _, entry := range []string{"Submit", "Progress"} {
			fn := p.function(t, entry)
			is.Equal(str(fn.Change.After, "service_config", "ingress_settings"), "ALLOW_ALL") // browsers reach it
			mode := env(fn.Change.After)["AUTH_MODE"]
			is.True(mode == "google" || mode == "apikey") // the function verifies its callers
			if mode == "google" {
				is.True(env(fn.Change.After)["AUTH_ALLOW"] != "") // and admits only listed identities
			}

			var public []grant
			for _, g := range p.grantsOn(t, fn) {
				if g.Member == "allUsers" && g.Role == "roles/run.invoker" {
					public = append(public, g)
				}
			}
			is.Equal(len(public), 1) // one allUsers run.invoker binding
			r, ok := p.configResource(configAddress(public[0].Address))
			is.True(ok) // the binding is in the configuration
			if len(r.Count) > 0 || len(r.ForEach) > 0 {
				t.Errorf("%s: the public binding of %s has a count/for_each: a private %s breaks browsers (preflights, EventSource) and user tokens (signature stripped)", r.Address, entry, entry)
			}
		}
	})
}

// TestURLSigningHoldsSignBlobOnly: the functions that sign URLs do so through
// a custom role holding iam.serviceAccounts.signBlob alone, granted on their
// own account; nobody holds roles/iam.serviceAccountTokenCreator (which would
// also mint access and ID tokens).
func TestURLSigningHoldsSignBlobOnly(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		for _, g := range p.grants(t) {
			if g.Role == "roles/iam.serviceAccountTokenCreator" {
				t.Errorf("%s grants roles/iam.serviceAccountTokenCreator to %s; URL signing needs signBlob only", g.Address, g.Member)
			}
		}
		signer := p.customRole(t, "iam.serviceAccounts.signBlob")
		for _, entry := range []string{"Submit", "Progress"} {
			a := p.function(t, entry).Change.After
			sa := str(a, "service_config", "service_account_email")
			is.Equal(env(a)["SIGNING_SERVICE_ACCOUNT"], sa) // the function signs as itself
			found := false
			for _, rc := range p.live("google_service_account_iam_member") {
				found = found || (str(rc.Change.After, "role") == signer && str(rc.Change.After, "member") == "serviceAccount:"+sa)
			}
			is.True(found) // the signing account holds the signBlob role (on itself)
		}
	})
}

// TestVertexHoldsPredictOnly: with Vertex AI, generate calls models through a
// custom role holding aiplatform.endpoints.predict alone; nobody holds the
// broad Vertex AI roles.
func TestVertexHoldsPredictOnly(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		for _, g := range p.grants(t) {
			if strings.HasPrefix(g.Role, "roles/aiplatform.") {
				t.Errorf("%s grants %s to %s; calling a model needs aiplatform.endpoints.predict only", g.Address, g.Role, g.Member)
			}
		}
		if p.variable("genai_backend") != "vertex" {
			return
		}
		role := p.customRole(t, "aiplatform.endpoints.predict")
		sa := "serviceAccount:" + str(p.function(t, "Generate").Change.After, "service_config", "service_account_email")
		found := false
		for _, g := range p.grants(t) {
			found = found || (g.Type == "google_project_iam_member" && g.Role == role && g.Member == sa)
		}
		is.True(found) // generate holds the predict role
	})
}

// customRole returns the full name of the one custom role of the plan whose
// only permission is perm.
func (p *plan) customRole(t *testing.T, perm string) string {
	t.Helper()
	var names []string
	for _, rc := range p.live("google_project_iam_custom_role") {
		perms, _ := rc.Change.After["permissions"].([]any)
		if len(perms) == 1 && perms[0] == perm {
			project := str(rc.Change.After, "project")
			if project == "" {
				project = p.projectFromAnywhere()
			}
			names = append(names, "projects/"+project+"/roles/"+str(rc.Change.After, "role_id"))
		}
	}
	if len(names) != 1 {
		t.Fatalf("want one custom role holding only %s, found %v", perm, names)
	}
	return names[0]
}

// TestBuildAccountWritesOnlyItsRepository: the functions build with the
// dedicated build account into the environment's own Artifact Registry
// repository, and that account may write images there and nowhere else.
func TestBuildAccountWritesOnlyItsRepository(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		repos := p.live("google_artifact_registry_repository")
		is.Equal(len(repos), 1) // the environment has one image repository
		repo := repos[0].Change.After
		repoName := "projects/" + p.projectFromAnywhere() + "/locations/" + str(repo, "location") + "/repositories/" + str(repo, "repository_id")

		var builder string
		for _, entry := range []string{"Submit", "Generate", "Progress"} {
			a := p.function(t, entry).Change.After
			is.Equal(str(a, "build_config", "docker_repository"), repoName) // the function's image goes to the environment's repository
			sa := str(a, "build_config", "service_account")
			is.True(sa != "") // a dedicated build account builds it
			if builder != "" && builder != sa {
				t.Errorf("%s builds as %s, another function as %s", entry, sa, builder)
			}
			builder = sa
		}
		member := "serviceAccount:" + builder[strings.LastIndex(builder, "/")+1:]

		writers := 0
		for _, g := range p.grants(t) {
			if g.Member != member || !strings.HasPrefix(g.Role, "roles/artifactregistry.") {
				continue
			}
			if g.Type != "google_artifact_registry_repository_iam_member" {
				t.Errorf("%s grants %s to the build account beyond its repository", g.Address, g.Role)
				continue
			}
			writers++
			is.Equal(g.Role, "roles/artifactregistry.writer") // write, not administer
		}
		is.Equal(writers, 1) // the build account writes to its repository
		for _, rc := range p.live("google_artifact_registry_repository_iam_member") {
			if str(rc.Change.After, "member") == member && str(rc.Change.After, "repository") != str(repo, "repository_id") {
				t.Errorf("%s: the build account writes to repository %q, not the environment's %q", rc.Address, str(rc.Change.After, "repository"), str(repo, "repository_id"))
			}
		}
	})
}

var digestRef = regexp.MustCompile(`^[^@]+/[^@/]+@sha256:[0-9a-f]{64}$`)

// TestHousekeepingImageByDigest: the job runs an image of the environment's
// repository, named by digest, so what runs is what was built and a tag
// moving cannot change it.
func TestHousekeepingImageByDigest(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		repos := p.live("google_artifact_registry_repository")
		is.Equal(len(repos), 1) // the environment has one image repository
		repo := repos[0].Change.After
		base := str(repo, "location") + "-docker.pkg.dev/" + p.projectFromAnywhere() + "/" + str(repo, "repository_id") + "/"
		for _, job := range p.live("google_cloud_run_v2_job") {
			for _, c := range blocks(get(job.Change.After, "template", "template", "containers")) {
				image, _ := c["image"].(string)
				is.True(strings.HasPrefix(image, base)) // the job's image comes from the environment's repository
				is.True(digestRef.MatchString(image))   // and is named by digest
			}
		}
	})
}
