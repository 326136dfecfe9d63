package deps_test

import (
	"fmt"
	"io"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/deps"
)

type store struct{}

type Deps struct {
	Store  *store
	Writer io.Writer
	Sign   func(string) string
	Gens   map[string]int
	Limit  int // a plain value is never missing
}

func full() Deps {
	return Deps{Store: &store{}, Writer: io.Discard, Sign: func(s string) string { return s }, Gens: map[string]int{}}
}

func TestMissing(t *testing.T) {
	var nilStore *store
	tests := []struct {
		name string
		edit func(*Deps)
		want []string
	}{
		{"complete", func(*Deps) {}, nil},
		{"nil pointer", func(d *Deps) { d.Store = nil }, []string{"Deps.Store"}},
		{"nil interface", func(d *Deps) { d.Writer = nil }, []string{"Deps.Writer"}},
		{"interface holding a nil pointer", func(d *Deps) { d.Writer = (*nilWriter)(nil) }, []string{"Deps.Writer"}},
		{"nil func and map", func(d *Deps) { d.Sign, d.Gens = nil, nil }, []string{"Deps.Sign", "Deps.Gens"}},
		{"everything", func(d *Deps) { *d = Deps{Store: nilStore} }, []string{"Deps.Store", "Deps.Writer", "Deps.Sign", "Deps.Gens"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			d := full()
			tt.edit(&d)
			is.Equal(deps.Missing(d), tt.want)  // the nil fields, in order
			is.Equal(deps.Missing(&d), tt.want) // the same through a pointer
		})
	}
}

type nilWriter struct{}

func (*nilWriter) Write(p []byte) (int, error) { return len(p), nil }

func TestCheckPanicsNamingTheOwnerAndFields(t *testing.T) {
	is := is.New(t)
	d := full()
	d.Store, d.Gens = nil, nil
	defer func() {
		is.Equal(fmt.Sprint(recover()), "thing.New: missing Deps.Store, Deps.Gens") // names the constructor and every missing field
	}()
	deps.Check("thing.New", d)
	t.Fatal("Check returned although fields were missing")
}

func TestCheckAcceptsComplete(t *testing.T) {
	deps.Check("thing.New", full()) // does not panic
}
