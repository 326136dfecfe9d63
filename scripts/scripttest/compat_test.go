package scripttest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// Constructs newer than bash 3.2, the bash macOS ships, which operators run
// deploy.sh and smoke.sh with.
var newerThanBash32 = []struct {
	re  *regexp.Regexp
	why string
}{
	{regexp.MustCompile(`\b(declare|local|typeset)\s+-[a-zA-Z]*A`), "associative arrays (bash 4.0)"},
	{regexp.MustCompile(`\b(declare|local|typeset)\s+-[a-zA-Z]*n\b`), "namerefs (bash 4.3)"},
	{regexp.MustCompile(`\b(mapfile|readarray|coproc)\b`), "mapfile/readarray/coproc (bash 4.0)"},
	{regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?(,,?|\^\^?)\}`), "case conversion ${x,,} / ${x^^} (bash 4.0)"},
	{regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?@[QEPAaUuLK]\}`), "parameter transformation ${x@Q} (bash 4.4)"},
	{regexp.MustCompile(`\[-[0-9]+\]\}`), "negative array index (bash 4.3)"},
	{regexp.MustCompile(`\|&|&>>|;;&|[^;];&`), "|&, &>>, ;;& or ;& (bash 4.0)"},
	{regexp.MustCompile(`\bwait\s+-n\b`), "wait -n (bash 4.3)"},
	{regexp.MustCompile(`\bEPOCH(REAL)?(TIME|SECONDS)\b`), "EPOCHSECONDS/EPOCHREALTIME (bash 5.0)"},
	{regexp.MustCompile(`\bshopt\s+-s\s+(globstar|lastpipe|autocd|checkjobs|dirspell|direxpand)\b`), "a bash 4 shell option"},
}

var emptyArray = regexp.MustCompile(`(?m)^\s*(?:local\s+)?([A-Za-z_][A-Za-z0-9_]*)=\(\)`)

// TestScriptsRunOnBash32: deploy.sh and smoke.sh stop at the first error
// (set -euo pipefail) and use nothing bash 3.2 lacks. Under set -u, bash
// before 4.4 treats "${a[@]}" of an empty array as an unbound variable, so
// an array that may be empty is expanded only as ${a[@]+"${a[@]}"}.
func TestScriptsRunOnBash32(t *testing.T) {
	t.Parallel()
	for _, script := range []string{"deploy.sh", "smoke.sh"} {
		t.Run(script, func(t *testing.T) {
			is := is.New(t)
			b, err := os.ReadFile(filepath.Join(repoRoot(t), "scripts", script))
			is.NoErr(err) // read the script
			code := withoutComments(string(b))
			is.True(strings.Contains(code, "set -euo pipefail")) // stops at the first error, unset variable or failed pipe
			for _, c := range newerThanBash32 {
				for _, m := range c.re.FindAllString(code, -1) {
					t.Errorf("%s uses %s: %q", script, c.why, m)
				}
			}
			for _, m := range emptyArray.FindAllStringSubmatch(code, -1) {
				name := regexp.QuoteMeta(m[1])
				guarded := regexp.MustCompile(`\$\{` + name + `\[[@*]\]\+"\$\{` + name + `\[[@*]\]\}"\}`)
				rest := guarded.ReplaceAllString(code, "")
				if regexp.MustCompile(`\$\{` + name + `\[[@*]\]\}`).MatchString(rest) {
					t.Errorf("%s expands the array %s, which may be empty, without ${%s[@]+\"${%s[@]}\"}: bash 3.2 under set -u fails on it", script, m[1], m[1], m[1])
				}
			}
		})
	}
}

// withoutComments drops whole-line comments (the usage text included).
func withoutComments(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
