package plantest

import (
	"slices"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// workload is a function or job as the secret tests see it: its identity, its
// plain environment and its Secret Manager references (variable → secret id).
type workload struct {
	Address        string // plan address
	ConfigAddress  string // configuration address (no instance key)
	Name           string // Submit, Generate, Progress, or the job's address
	ServiceAccount string // e-mail
	Plain          map[string]string
	Secrets        map[string]string
}

// blocks returns a nested block list, whether get unwrapped a single block or not.
func blocks(v any) []map[string]any {
	var out []map[string]any
	switch v := v.(type) {
	case map[string]any:
		out = append(out, v)
	case []any:
		for _, e := range v {
			if m, ok := e.(map[string]any); ok {
				out = append(out, m)
			}
		}
	}
	return out
}

// secretID reduces "projects/p/secrets/name[/versions/v]" to name.
func secretID(s string) string {
	if _, rest, ok := strings.Cut(s, "/secrets/"); ok {
		s, _, _ = strings.Cut(rest, "/")
	}
	return s
}

// workloads lists the three functions and every Cloud Run job of the plan.
func (p *plan) workloads(t *testing.T) []workload {
	t.Helper()
	var out []workload
	for _, entry := range []string{"Submit", "Generate", "Progress"} {
		fn := p.function(t, entry)
		a := fn.Change.After
		w := workload{
			Address: fn.Address, ConfigAddress: configAddress(fn.Address), Name: entry,
			ServiceAccount: str(a, "service_config", "service_account_email"),
			Plain:          env(a), Secrets: map[string]string{},
		}
		for _, s := range blocks(get(a, "service_config", "secret_environment_variables")) {
			key, _ := s["key"].(string)
			secret, _ := s["secret"].(string)
			w.Secrets[key] = secretID(secret)
		}
		out = append(out, w)
	}
	for _, job := range p.live("google_cloud_run_v2_job") {
		a := job.Change.After
		w := workload{
			Address: job.Address, ConfigAddress: configAddress(job.Address), Name: job.Address,
			ServiceAccount: str(a, "template", "template", "service_account"),
			Plain:          map[string]string{}, Secrets: map[string]string{},
		}
		for _, c := range blocks(get(a, "template", "template", "containers")) {
			for _, e := range blocks(c["env"]) {
				name, _ := e["name"].(string)
				ref := get(e, "value_source", "secret_key_ref", "secret")
				if secret, ok := ref.(string); ok && secret != "" {
					w.Secrets[name] = secretID(secret)
					continue
				}
				value, _ := e["value"].(string)
				w.Plain[name] = value
			}
		}
		out = append(out, w)
	}
	return out
}

// TestWorkloadsGetSecretsAsReferences: every workload mints or verifies
// progress and image-link tokens (PROGRESS_TOKEN_KEYS); every one but the
// progress service may finish a batch and sign its webhook (WEBHOOK_SIGNING_KEYS).
// They receive them only as Secret Manager references (never as plain values),
// all from the same secret.
func TestWorkloadsGetSecretsAsReferences(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		source := map[string]string{} // variable → secret id, the first workload's
		for _, w := range p.workloads(t) {
			required := []string{"PROGRESS_TOKEN_KEYS", "WEBHOOK_SIGNING_KEYS"}
			if strings.Contains(w.Address, "progress") {
				required = required[:1]
				if _, leaked := w.Secrets["WEBHOOK_SIGNING_KEYS"]; leaked {
					t.Errorf("%s: the progress service never signs webhooks; it must not read WEBHOOK_SIGNING_KEYS", w.Address)
				}
			}
			for _, k := range required {
				if v, ok := w.Plain[k]; ok {
					t.Errorf("%s: %s is a plain environment variable (%d characters); it must come from Secret Manager", w.Address, k, len(v))
				}
				secret := w.Secrets[k]
				if secret == "" {
					t.Errorf("%s: %s is not a Secret Manager reference", w.Address, k)
					continue
				}
				if first, ok := source[k]; ok && first != secret {
					t.Errorf("%s: %s comes from secret %q, another workload's from %q", w.Address, k, secret, first)
				}
				source[k] = secret
			}
		}
		is.True(source["PROGRESS_TOKEN_KEYS"] != source["WEBHOOK_SIGNING_KEYS"]) // the webhook keys are not the token keys' secret
	})
}

// TestSecretAccessIsPerSecret: no project-, folder- or organisation-level
// grant of a Secret Manager role; every secret a workload references is
// readable by that workload's account through a binding on that one secret;
// and the workload depends on that binding, so a first start does not race it.
func TestSecretAccessIsPerSecret(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		for _, g := range p.grants(t) {
			broad := strings.HasPrefix(g.Type, "google_project_iam_") || strings.HasPrefix(g.Type, "google_folder_iam_") ||
				strings.HasPrefix(g.Type, "google_organization_iam_")
			if broad && strings.HasPrefix(g.Role, "roles/secretmanager.") {
				t.Errorf("%s grants %s to %s above the secret; grant it on the one secret that account needs", g.Address, g.Role, g.Member)
			}
		}

		// (secret id, member) → config addresses of the accessor bindings.
		type key struct{ secret, member string }
		access := map[key][]string{}
		for _, rc := range p.live("google_secret_manager_secret_iam_member", "google_secret_manager_secret_iam_binding") {
			a := rc.Change.After
			if str(a, "role") != "roles/secretmanager.secretAccessor" {
				continue
			}
			members := []string{str(a, "member")}
			if l, ok := a["members"].([]any); ok {
				members = members[:0]
				for _, m := range l {
					s, _ := m.(string)
					members = append(members, s)
				}
			}
			for _, m := range members {
				k := key{secretID(str(a, "secret_id")), m}
				access[k] = append(access[k], configAddress(rc.Address))
			}
		}

		deps := map[string][]string{}
		for _, r := range p.configResources() {
			deps[r.Address] = r.DependsOn
		}

		checked := 0
		for _, w := range p.workloads(t) {
			if w.ServiceAccount == "" {
				t.Errorf("%s: service account unknown at plan time", w.Address)
				continue
			}
			member := "serviceAccount:" + w.ServiceAccount
			for variable, secret := range w.Secrets {
				checked++
				bindings := access[key{secret, member}]
				if len(bindings) == 0 {
					t.Errorf("%s: %s reads secret %q, but %s has no secretAccessor binding on it", w.Address, variable, secret, w.ServiceAccount)
					continue
				}
				waits := false
				for _, b := range bindings {
					waits = waits || slices.Contains(deps[w.ConfigAddress], b)
				}
				if !waits {
					t.Errorf("%s: does not depend_on %v, so its first instances may start before %s can read secret %q", w.Address, bindings, w.ServiceAccount, secret)
				}
			}
		}
		is.True(checked >= 5) // submit and generate reference two secrets each, progress one
	})
}
