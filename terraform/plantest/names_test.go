package plantest

import (
	"sort"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// nameAttributes are the attributes that name a resource in its project.
var nameAttributes = []string{"name", "account_id", "secret_id", "repository_id", "role_id", "display_name"}

// namesItself reports whether a resource type's name-like attributes name
// the resource itself. An IAM member's name refers to its target, which the
// checks reach through the target's own resource; the secret bindings are
// checked too, because their secret_id names secrets created outside
// terraform.
func namesItself(typ string) bool {
	return !strings.HasSuffix(typ, "_iam_member") || typ == "google_secret_manager_secret_iam_member"
}

// resourceNames lists (type, attribute, value) of every known name of the
// resources the plan keeps or creates.
func (p *plan) resourceNames() []resourceName {
	var out []resourceName
	for _, rc := range p.live() {
		if !namesItself(rc.Type) {
			continue
		}
		for _, attr := range nameAttributes {
			if v, ok := rc.Change.After[attr].(string); ok && v != "" {
				out = append(out, resourceName{rc.Type, attr, v, rc.Address})
			}
		}
	}
	return out
}

type resourceName struct {
	Type, Attribute, Value string
	Address                string
}

// TestEveryNameCarriesThePrefix: every resource name (queue, secrets, service
// accounts, buckets, functions, job, schedule, repository, custom roles,
// metrics, alerts, channels, budget), and every secret a workload reads,
// carries the environment's name_prefix, so several environments fit one
// project.
func TestEveryNameCarriesThePrefix(t *testing.T) {
	each(t, func(t *testing.T, p *plan) {
		is := is.New(t)
		prefix := p.stringVar(t, "name_prefix")
		rolePrefix := strings.ReplaceAll(prefix, "-", "_") // custom role ids allow no hyphen
		names := p.resourceNames()
		is.True(len(names) >= 20) // the plan names its resources
		for _, n := range names {
			if !strings.Contains(n.Value, prefix) && !strings.Contains(n.Value, rolePrefix) {
				t.Errorf("%s: %s = %q does not carry the environment's name_prefix %q", n.Address, n.Attribute, n.Value, prefix)
			}
		}
		for _, w := range p.workloads(t) {
			for variable, secret := range w.Secrets {
				if !strings.HasPrefix(secret, prefix+"-") {
					t.Errorf("%s: %s reads secret %q, which does not start with %q-", w.Address, variable, secret, prefix)
				}
			}
		}
	})
}

// TestEnvironmentsShareNoName: two plans of one project with different
// name_prefix values (terraform/ci.tfvars and the defaults) name no resource
// alike: deploying one environment never touches the other's queue, secrets,
// accounts, buckets or job.
func TestEnvironmentsShareNoName(t *testing.T) {
	ps := plans(t)
	if len(ps) < 2 {
		t.Skip("needs two plans of one project with different name_prefix values (scripts/ci-terraform.sh gives them)")
	}
	is := is.New(t)
	type key struct{ Type, Attribute, Value string }
	compared := 0
	for i, a := range ps {
		for _, b := range ps[i+1:] {
			if a.projectFromAnywhere() != b.projectFromAnywhere() || a.variable("name_prefix") == b.variable("name_prefix") {
				continue
			}
			compared++
			seen := map[key]string{}
			for _, n := range a.resourceNames() {
				seen[key{n.Type, n.Attribute, n.Value}] = n.Address
			}
			var shared []string
			for _, n := range b.resourceNames() {
				if addr, ok := seen[key{n.Type, n.Attribute, n.Value}]; ok {
					shared = append(shared, n.Type+" "+n.Attribute+"="+n.Value+" ("+a.Name+" "+addr+", "+b.Name+" "+n.Address+")")
				}
			}
			sort.Strings(shared)
			for _, s := range shared {
				t.Errorf("environments %v and %v of project %s share a name: %s", a.variable("name_prefix"), b.variable("name_prefix"), a.projectFromAnywhere(), s)
			}
		}
	}
	is.True(compared > 0) // at least two of the plans are environments of one project
}
