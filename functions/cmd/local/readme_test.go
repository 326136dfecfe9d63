package main

import (
	"os"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/config"
)

// The README's configuration tables list every variable the code reads.
func TestReadmeListsEveryVariable(t *testing.T) {
	is := is.New(t)
	b, err := os.ReadFile("../../../README.md")
	is.NoErr(err)
	readme := string(b)
	for _, v := range append(append([]config.Var{}, LocalVars...), config.Vars...) {
		if !strings.Contains(readme, "| `"+v.Name+"` |") {
			t.Errorf("README.md has no configuration row for %s", v.Name)
		}
	}
	is.True(strings.Contains(readme, "make run") && strings.Contains(readme, "make test")) // the two commands
}
