package batch_test

import (
	"cmp"
	"errors"
	"slices"
	"testing"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/models"
	"github.com/assetgen/assetgen/shared/problem"
)

// refBucket is the one bucket gs:// references may name in these tests.
const refBucket = "assetgen-refs"

// fc is a field error reduced to what clients switch on: where and which code.
type fc struct {
	Field string
	Code  string
}

func intp(n int) *int { return &n }

func rules() batch.Rules {
	return batch.Rules{Models: models.Builtin(), RefBuckets: []string{refBucket}}
}

func httpRules() batch.Rules {
	r := rules()
	r.AllowHTTPRefs = true
	return r
}

// validReq is the smallest request Validate accepts.
func validReq() batch.Request {
	return batch.Request{RunMode: string(ledger.DryRun), Rows: []batch.RowRequest{{Prompt: "a red fox"}}}
}

// rowsOf returns n valid rows with distinct prompts.
func rowsOf(n int) []batch.RowRequest {
	out := make([]batch.RowRequest, n)
	for i := range out {
		out[i] = batch.RowRequest{Prompt: "prompt " + string(rune('a'+i))}
	}
	return out
}

// refsOf returns n distinct https references.
func refsOf(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "https://img.example.com/" + string(rune('a'+i)) + ".png"
	}
	return out
}

// problemOf unpacks err as a *problem.Error and returns its code and its field
// errors sorted by field then code, so comparisons do not depend on check order.
func problemOf(t *testing.T, err error) (*problem.Error, []fc) {
	t.Helper()
	var pe *problem.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *problem.Error", err, err)
	}
	return pe, sortedFC(pe.Fields)
}

func sortedFC(fields []problem.FieldError) []fc {
	out := make([]fc, 0, len(fields))
	for _, f := range fields {
		out = append(out, fc{f.Field, f.Code})
	}
	sortFC(out)
	return out
}

func sortFC(s []fc) {
	slices.SortFunc(s, func(a, b fc) int {
		return cmp.Or(cmp.Compare(a.Field, b.Field), cmp.Compare(a.Code, b.Code))
	})
}

// withDefaults fills in what Validate adds to a spec that names no size,
// format or seed: the model's API and default size, png, and the prices.
func withDefaults(s batch.Spec) batch.Spec {
	m, _ := models.Builtin().Lookup(s.Model)
	s.ModelAPI, s.PriceUSD = m.API, m.Price(m.DefaultSize())
	for i := range s.Rows {
		r := &s.Rows[i]
		if r.ImageSize == "" {
			r.ImageSize = m.DefaultSize()
		}
		if r.OutputFormat == "" {
			r.OutputFormat = models.PNG
		}
		r.PriceUSD = m.Price(r.ImageSize)
	}
	return s
}
