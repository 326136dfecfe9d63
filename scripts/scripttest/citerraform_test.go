package scripttest

import (
	"strings"
	"testing"

	"github.com/matryer/is"
)

// Without the offline validator, ci-terraform.sh says so and falls back to
// plain terraform: fmt, init without a backend, validate.
func TestCITerraformFallsBackToPlainValidate(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newSandbox(t, "ci-terraform.sh")
	s.commit()
	out, code := s.run("ci-terraform.sh", nil)
	is.Equal(code, 0) // plain validate passed
	is.True(strings.Contains(out, "tf-offline-validate was not found"))
	is.True(strings.Contains(out, "falling back to plain terraform validate"))
	var got []string
	for _, c := range s.calls() {
		if c.Cmd == "terraform" {
			got = append(got, c.Args[1])
		}
	}
	is.Equal(got, []string{"fmt", "init", "validate"})
}

// Without a registry, --if-available (make test) reports the skip and
// succeeds; without it, the script fails.
func TestCITerraformWithoutRegistry(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	for _, tt := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"--if-available"}, 0, "validate SKIPPED"},
		{nil, 1, "terraform init failed"},
	} {
		s := newSandbox(t, "ci-terraform.sh")
		s.commit()
		s.fail("terraform", "*init*", "always", "Failed to query available provider packages")
		out, code := s.run("ci-terraform.sh", nil, tt.args...)
		is.Equal(code, tt.code)
		is.True(strings.Contains(out, tt.says))
	}
}
