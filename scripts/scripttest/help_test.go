package scripttest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// TestHelpMatchesTheDocs: the --help text of each operator script is the
// one docs/deploy.md shows under "### `scripts/<name> --help`".
func TestHelpMatchesTheDocs(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, script := range []string{"deploy.sh", "smoke.sh", "ci-terraform.sh"} {
		t.Run(script, func(t *testing.T) {
			is := is.New(t)
			cmd := exec.Command("bash", filepath.Join(repoRoot(t), "scripts", script), "--help")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			is.NoErr(cmd.Run()) // --help succeeds
			shown, ok := helpBlock(string(doc), "### `scripts/"+script+" --help`")
			is.True(ok)                   // docs/deploy.md shows the help text
			is.Equal(out.String(), shown) // as the script prints it
		})
	}
}

// helpBlock returns the first ```text block after the heading line.
func helpBlock(doc, heading string) (string, bool) {
	_, rest, ok := strings.Cut(doc, "\n"+heading+"\n")
	if !ok {
		return "", false
	}
	_, rest, ok = strings.Cut(rest, "```text\n")
	if !ok {
		return "", false
	}
	block, _, ok := strings.Cut(rest, "```\n")
	return block, ok
}
