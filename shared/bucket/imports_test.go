package bucket_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/assetgen/assetgen/"

// imports maps every package of the module to its non-test imports.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", "./...")
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	pkgs := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) > 0 {
			pkgs[strings.TrimPrefix(f[0], module)] = f[1:]
		}
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages", len(pkgs))
	}
	return pkgs
}

// Cloud Storage is reached through this adapter only: besides it, only the
// wiring that builds the client and the URL signer (which signs with the
// storage package's options) import the storage client.
func TestOnlyTheAdapterImportsStorage(t *testing.T) {
	allowed := map[string]bool{"shared/bucket": true, "shared/cloud": true, "shared/urls": true}
	for pkg, deps := range imports(t) {
		for _, d := range deps {
			if d == "cloud.google.com/go/storage" && !allowed[pkg] {
				t.Errorf("%s imports cloud.google.com/go/storage; use shared/bucket", pkg)
			}
		}
	}
}

// The packages that keep their own objects in the bucket use the adapter, not
// the ledger's store.
func TestGenericStorageDoesNotGoThroughTheLedger(t *testing.T) {
	pkgs := imports(t)
	for _, pkg := range []string{"shared/budget", "shared/idempotency", "shared/flags", "shared/auth", "shared/refs", "shared/urls", "shared/health"} {
		deps, ok := pkgs[pkg]
		if !ok {
			t.Errorf("no package %s", pkg)
		}
		for _, d := range deps {
			if d == module+"shared/ledgerstore" {
				t.Errorf("%s imports shared/ledgerstore; its objects are not the ledger's", pkg)
			}
		}
	}
}
