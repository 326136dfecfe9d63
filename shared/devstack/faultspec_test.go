package devstack_test

import (
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/devstack"
)

func TestParseStorageFaults(t *testing.T) {
	tests := []struct {
		spec string
		want devstack.StorageFaults
		err  string // a part of the error, "" for none
	}{
		{spec: "", want: devstack.StorageFaults{}},
		{spec: " , ", want: devstack.StorageFaults{}},
		{spec: "error=0.1,lost=0.05,latency=50ms", want: devstack.StorageFaults{Error: 0.1, Lost: 0.05, Latency: 50 * time.Millisecond}},
		{spec: " lost = 1 ", want: devstack.StorageFaults{Lost: 1}},
		{spec: "error=0,latency=0s,seed=42", want: devstack.StorageFaults{Seed: 42}},
		{spec: "error=0.5,lost=0.5", want: devstack.StorageFaults{Error: 0.5, Lost: 0.5}},
		{spec: "error=1.5", err: "error=1.5: want a share between 0 and 1"},
		{spec: "lost=-0.1", err: "lost=-0.1: want a share between 0 and 1"},
		{spec: "error=10%", err: "error=10%: want a share"},
		{spec: "latency=fast", err: "latency=fast: want a duration"},
		{spec: "latency=-5ms", err: "latency=-5ms: want a duration"},
		{spec: "seed=-1", err: "seed=-1: want an unsigned integer"},
		{spec: "errors=0.1", err: `unknown setting "errors" (known: error, lost, latency, seed)`},
		{spec: "error", err: `"error": want key=value`},
		{spec: "error=", err: `"error=": want key=value`},
		{spec: "error=0.1,error=0.2", err: "error is given twice"},
		{spec: "error=0.7,lost=0.4", err: "error and lost add up to more than 1"},
		{spec: "error=2,lost=x", err: "lost=x"}, // every mistake is named
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			is := is.New(t)
			got, err := devstack.ParseStorageFaults(tt.spec)
			if tt.err != "" {
				is.True(err != nil)                            // refused
				is.True(strings.Contains(err.Error(), tt.err)) // with the reason
				is.Equal(got, devstack.StorageFaults{})        // and nothing half-parsed
				return
			}
			is.NoErr(err)          // accepted
			is.Equal(got, tt.want) // as meant
			back, err := devstack.ParseStorageFaults(got.String())
			is.NoErr(err)           // String reads back
			is.Equal(back, tt.want) // to the same spec
		})
	}
}

func TestStorageFaultsIsZero(t *testing.T) {
	is := is.New(t)
	is.True(devstack.StorageFaults{Seed: 9}.IsZero())                    // a seed alone injects nothing
	is.True(!devstack.StorageFaults{Latency: time.Millisecond}.IsZero()) // latency does
}
