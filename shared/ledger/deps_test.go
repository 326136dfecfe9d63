package ledger_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The ledger is the pure core: besides the standard library it may use only
// the bucket layout (for its object names) — no cloud client, no metrics, no
// request types.
func TestLedgerDependsOnNothingButTheLayout(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := map[string]bool{
		"github.com/assetgen/assetgen/shared/ledger": true,
		"github.com/assetgen/assetgen/shared/layout": true,
	}
	var deps int
	for dep := range strings.FieldsSeq(string(out)) {
		deps++
		if !allowed[dep] {
			t.Errorf("shared/ledger depends on %s", dep)
		}
	}
	if deps == 0 {
		t.Fatal("go list named no package: not even the ledger itself")
	}
}
