package layout_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/layout"
)

// rule is one lifecycle rule of the ledger bucket as terraform states it.
type rule struct {
	prefixes  []string
	retention layout.Retention
}

// ledgerRules reads the lifecycle rules of the ledger bucket from
// terraform/storage.tf: each rule's matches_prefix and whether its condition is
// an age or days since custom time.
func ledgerRules(t *testing.T) []rule {
	t.Helper()
	b, err := os.ReadFile("../../terraform/storage.tf")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for l := range strings.Lines(string(b)) {
		if s := strings.TrimSpace(l); !strings.HasPrefix(s, "#") {
			lines = append(lines, l)
		}
	}
	src := strings.Join(lines, "")
	bucket := block(src, `resource "google_storage_bucket" "ledger" {`)
	if bucket == "" {
		t.Fatal("terraform/storage.tf has no ledger bucket")
	}
	quoted := regexp.MustCompile(`"([^"]*)"`)
	prefixList := regexp.MustCompile(`matches_prefix\s*=\s*\[([^\]]*)\]`)
	var rules []rule
	for rest := bucket; ; {
		body := block(rest, "lifecycle_rule {")
		if body == "" {
			return rules
		}
		rest = rest[strings.Index(rest, body)+len(body):]
		var r rule
		switch {
		case regexp.MustCompile(`\bdays_since_custom_time\s*=`).MatchString(body):
			r.retention = layout.ByUse
		case regexp.MustCompile(`\bage\s*=`).MatchString(body):
			r.retention = layout.ByAge
		default:
			t.Fatalf("a lifecycle rule of the ledger bucket has neither age nor days_since_custom_time:\n%s", body)
		}
		m := prefixList.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("a lifecycle rule of the ledger bucket names no prefix (it would apply to config/ too):\n%s", body)
		}
		for _, q := range quoted.FindAllStringSubmatch(m[1], -1) {
			r.prefixes = append(r.prefixes, q[1])
		}
		rules = append(rules, r)
	}
}

// block returns the text between the brace that ends open and its match.
func block(src, open string) string {
	i := strings.Index(src, open)
	if i < 0 {
		return ""
	}
	start := i + len(open)
	depth := 1
	for j := start; j < len(src); j++ {
		switch src[j] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return src[start:j]
			}
		}
	}
	return ""
}

// Terraform's lifecycle rules and the layout agree: every prefix terraform
// deletes is one the code writes, with the same kind of retention, and every
// prefix the code retains has its rule. Kept prefixes (config/) have none.
func TestTerraformLifecycleMatchesLayout(t *testing.T) {
	is := is.New(t)
	inTerraform := map[string]layout.Retention{}
	for _, r := range ledgerRules(t) {
		for _, p := range r.prefixes {
			_, dup := inTerraform[p]
			is.True(!dup) // one rule per prefix
			inTerraform[p] = r.retention
		}
	}
	is.True(len(inTerraform) > 0) // the rules were found

	inCode := map[string]layout.Retention{}
	for _, p := range layout.Prefixes() {
		inCode[p.Name] = p.Retention
	}
	for p, ret := range inTerraform {
		want, ok := inCode[p]
		if !ok {
			t.Errorf("terraform/storage.tf deletes under %q, a prefix the layout does not know", p)
			continue
		}
		if want != ret {
			t.Errorf("terraform/storage.tf deletes %q %s; the layout says %s", p, ret, want)
		}
	}
	for p, ret := range inCode {
		if _, ok := inTerraform[p]; ret != layout.Kept && !ok {
			t.Errorf("the layout retains %q %s but terraform/storage.tf has no rule for it", p, ret)
		}
	}
}

func TestPrefixesAreTopLevelAndDistinct(t *testing.T) {
	is := is.New(t)
	seen := map[string]bool{}
	for _, p := range layout.Prefixes() {
		is.True(strings.HasSuffix(p.Name, "/")) // a prefix ends in /
		is.Equal(strings.Count(p.Name, "/"), 1) // top level
		is.True(!seen[p.Name])                  // listed once
		is.True(p.Holds != "")                  // says what it holds
		seen[p.Name] = true
	}
	for _, name := range layout.ConfigObjects() {
		is.True(strings.HasPrefix(name, layout.Config)) // operator settings live under config/
	}
	is.True(strings.HasPrefix(layout.CursorObject, layout.Housekeeping)) // the cursor lives under its prefix
	is.Equal(layout.ProbeObject("rev-1"), "probes/rev-1.json")           // one probe object per instance
}

// The batches/ prefix is spelled out once in the code: everything else builds
// on layout.Batches.
func TestBatchesLiteralIsDefinedOnce(t *testing.T) {
	is := is.New(t)
	var files []string
	walkGo(t, "../..", func(path, src string) {
		if strings.Contains(src, `"batches/`) {
			files = append(files, path)
		}
	})
	is.Equal(files, []string{"../../shared/layout/layout.go"}) // only the layout names batches/
}

// walkGo calls fn with every non-test Go file of the repository under root.
func walkGo(t *testing.T, root string, fn func(path, src string)) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fn(path, string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
