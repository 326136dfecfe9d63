package progress

import (
	"strings"
	"testing"

	"github.com/matryer/is"
)

func TestMissingDependencyPanicsAtConstruction(t *testing.T) {
	is := is.New(t)
	defer func() {
		msg, _ := recover().(string)
		is.True(strings.HasPrefix(msg, "progress.New: missing Deps.Store")) // names the constructor and the field
	}()
	New(testConfig(), Deps{})
	t.Fatal("New returned without its dependencies")
}
