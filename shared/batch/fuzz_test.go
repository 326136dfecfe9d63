package batch_test

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/problem"
)

// FuzzDecodeValidate feeds arbitrary bodies through the submit path's pure half:
// Decode and Validate must never panic, every error must carry a code from the
// problem table, and an accepted spec must respect the batch limits.
func FuzzDecodeValidate(f *testing.F) {
	seeds := []string{
		``,
		`null`,
		`{}`,
		`[]`,
		`{"runMode":"dry_run","rows":[{"prompt":"fox"}]}`,
		`{"runMode":"live","confirm":"CONFIRM","model":"gemini-3-pro-image-preview","refs":["https://g.example.com/1.png"],` +
			`"rows":[{"id":"hero","prompt":"castle","variants":3,"refs":["gs://assetgen-refs/x.png"],"aspectRatio":"16:9"}]}`,
		`{"runMode":"dry_run","rows":[{"prompt":"p","variants":"2","colour":"red"}]}`,
		`{"runMode":1,"rows":{"prompt":"p"}}`,
		`{"rows":[{"prompt":" "},{"prompt":"b","variants":0},{"prompt":"c","id":"a"},{"prompt":"d","id":"a"}]}`,
		`{"runMode":"dry_run","refs":["ftp://x/a","http://u:p@x/a","gs://other/a","gs://assetgen-refs","javascript:alert(1)"],"rows":[{"prompt":"p"}]}`,
		`{"runMode":"dry_run"} trailing`,
		`{"a/b~c":1,"rows":[1,"x",null,{"prompt":null}]}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	codes := problem.Codes()
	rl := batch.Rules{RefBuckets: []string{refBucket}}
	rl.Models = rules().Models

	f.Fuzz(func(t *testing.T, body []byte) {
		req, fields, err := batch.Decode(body)
		if err != nil {
			code := problem.CodeOf(err)
			if !slices.Contains(codes, code) {
				t.Fatalf("Decode: code %q is not in the problem table (err %v)", code, err)
			}
			if code != problem.MalformedJSON {
				t.Fatalf("Decode: unexpected code %q (err %v)", code, err)
			}
			if len(fields) != 0 {
				t.Fatalf("Decode: field errors %v alongside error %v", fields, err)
			}
			return
		}
		for _, fe := range fields {
			if fe.Code != problem.FieldUnknown && fe.Code != problem.FieldInvalidType {
				t.Fatalf("Decode: field error code %q", fe.Code)
			}
			if !strings.HasPrefix(fe.Field, "/") {
				t.Fatalf("Decode: field %q is not a JSON pointer", fe.Field)
			}
		}

		spec, err := batch.Validate(req, rl)
		if err != nil {
			code := problem.CodeOf(err)
			if !slices.Contains(codes, code) {
				t.Fatalf("Validate: code %q is not in the problem table (err %v)", code, err)
			}
			if code != problem.ValidationFailed && code != problem.RefNotAllowed {
				t.Fatalf("Validate: unexpected code %q (err %v)", code, err)
			}
			pe, _ := err.(*problem.Error)
			if pe == nil || len(pe.Fields) == 0 {
				t.Fatalf("Validate: error without field errors: %v", err)
			}
			for _, fe := range pe.Fields {
				if !strings.HasPrefix(fe.Field, "/") {
					t.Fatalf("Validate: field %q is not a JSON pointer", fe.Field)
				}
			}
			if len(spec.Rows) != 0 {
				t.Fatalf("Validate: spec with %d rows returned alongside an error", len(spec.Rows))
			}
		} else {
			if spec.RunMode != ledger.DryRun && spec.RunMode != ledger.Live {
				t.Fatalf("Validate: accepted runMode %q", spec.RunMode)
			}
			if n := len(spec.Rows); n < 1 || n > batch.MaxRows {
				t.Fatalf("Validate: accepted %d rows", n)
			}
			for i, r := range spec.Rows {
				if r.Index != i || r.Variants < 1 || r.Variants > batch.MaxVariants {
					t.Fatalf("Validate: accepted row %+v", r)
				}
				if n := utf8.RuneCountInString(r.Prompt); n == 0 || n > batch.MaxPromptRunes || strings.TrimSpace(r.Prompt) != r.Prompt {
					t.Fatalf("Validate: accepted prompt of %d runes %q", n, r.Prompt)
				}
				if r.AspectRatio == "" {
					t.Fatalf("Validate: row %d has no aspect ratio", i)
				}
				for _, u := range r.RefURLs {
					if why := batch.RefAllowed(u, rl); why != "" {
						t.Fatalf("Validate: accepted disallowed ref %q: %s", u, why)
					}
				}
			}
		}
		// The confirmation check never panics and only ever says CONFIRMATION_REQUIRED.
		if err := batch.CheckConfirm(req); err != nil && problem.CodeOf(err) != problem.ConfirmationRequired {
			t.Fatalf("CheckConfirm: code %q", problem.CodeOf(err))
		}
	})
}
