package batch_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/problem"
)

func TestDecodeMalformed(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"nil body", ""},
		{"whitespace only", " \n\t\r "},
		{"null", "null"},
		{"array", `[{"runMode":"dry_run"}]`},
		{"string", `"dry_run"`},
		{"number", `42`},
		{"boolean", `true`},
		{"syntax error: unterminated object", `{"runMode":"dry_run"`},
		{"syntax error: missing value", `{"runMode":}`},
		{"syntax error: single quotes", `{'runMode':'dry_run'}`},
		{"syntax error: trailing comma", `{"runMode":"dry_run",}`},
		{"two objects", `{"runMode":"dry_run"} {"runMode":"live"}`},
		{"trailing garbage", `{"runMode":"dry_run"} xyz`},
		{"trailing closing brace", `{"runMode":"dry_run"}}`},
		{"trailing closing bracket", `{"runMode":"dry_run"}]`},
		{"trailing number", `{} 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			req, fields, err := batch.Decode([]byte(tt.body))
			is.Equal(problem.CodeOf(err), problem.MalformedJSON) // malformed bodies are MALFORMED_JSON
			var pe *problem.Error
			is.True(errors.As(err, &pe)) // a *problem.Error
			is.True(pe.Detail != "")     // with a client-safe detail
			is.Equal(len(fields), 0)     // no field errors alongside
			is.Equal(req.RunMode, "")    // nothing decoded
			is.Equal(len(req.Rows), 0)   // nothing decoded
		})
	}
}

func TestDecodeValid(t *testing.T) {
	tests := []struct {
		name string
		body string
		want batch.Request
	}{
		{
			name: "minimal",
			body: `{"runMode":"dry_run","rows":[{"prompt":"fox"}]}`,
			want: batch.Request{RunMode: "dry_run", Rows: []batch.RowRequest{{Prompt: "fox"}}},
		},
		{
			name: "every field, surrounded by whitespace",
			body: "\n  " + `{"runMode":"live","confirm":"CONFIRM","model":"gemini-3-pro-image-preview",
				"refs":["https://g.example.com/1.png"],
				"rows":[{"id":"hero","prompt":"castle","variants":2,"refs":["gs://b/x.png"],"aspectRatio":"16:9"},
				        {"prompt":"shield"}]}` + "\t\n",
			want: batch.Request{RunMode: "live", Confirm: "CONFIRM", Model: "gemini-3-pro-image-preview",
				Refs: []string{"https://g.example.com/1.png"},
				Rows: []batch.RowRequest{
					{ID: "hero", Prompt: "castle", Variants: intp(2), Refs: []string{"gs://b/x.png"}, AspectRatio: "16:9"},
					{Prompt: "shield"},
				}},
		},
		{
			name: "empty object decodes to the zero request",
			body: `{}`,
			want: batch.Request{},
		},
		{
			name: "null members are left at zero",
			body: `{"runMode":null,"rows":[{"prompt":"p","variants":null,"refs":null}]}`,
			want: batch.Request{Rows: []batch.RowRequest{{Prompt: "p"}}},
		},
		{
			name: "unicode escapes",
			body: `{"runMode":"dry_run","rows":[{"prompt":"caf\u00e9 \ud83e\udd8a"}]}`,
			want: batch.Request{RunMode: "dry_run", Rows: []batch.RowRequest{{Prompt: "café 🦊"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			got, fields, err := batch.Decode([]byte(tt.body))
			is.NoErr(err)            // well-formed JSON
			is.Equal(len(fields), 0) // no field errors
			is.Equal(got, tt.want)   // decoded request
		})
	}
}

func TestDecodeUnknownFields(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []fc
	}{
		{"top level", `{"runMode":"dry_run","colour":"red","rows":[{"prompt":"p"}]}`,
			[]fc{{"/colour", problem.FieldUnknown}}},
		{"inside a row", `{"runMode":"dry_run","rows":[{"prompt":"p"},{"prompt":"q","colour":"red"}]}`,
			[]fc{{"/rows/1/colour", problem.FieldUnknown}}},
		{"several, everywhere", `{"zeta":1,"alpha":2,"rows":[{"prompt":"p","steps":3},{"prompt":"q"},{"prompt":"r","negative":"x","style":"y"}]}`,
			[]fc{{"/alpha", problem.FieldUnknown}, {"/zeta", problem.FieldUnknown},
				{"/rows/0/steps", problem.FieldUnknown}, {"/rows/2/negative", problem.FieldUnknown}, {"/rows/2/style", problem.FieldUnknown}}},
		{"field names are case-sensitive", `{"RunMode":"dry_run","rows":[{"Prompt":"p"}]}`,
			[]fc{{"/RunMode", problem.FieldUnknown}, {"/rows/0/Prompt", problem.FieldUnknown}}},
		{"row field at the top level", `{"runMode":"dry_run","prompt":"p","rows":[{"prompt":"p"}]}`,
			[]fc{{"/prompt", problem.FieldUnknown}}},
		{"top-level field inside a row", `{"runMode":"dry_run","rows":[{"prompt":"p","runMode":"live"}]}`,
			[]fc{{"/rows/0/runMode", problem.FieldUnknown}}},
		{"pointer escapes / and ~", `{"a/b":1,"m~n":2,"rows":[{"prompt":"p","x/y~z":3}]}`,
			[]fc{{"/a~1b", problem.FieldUnknown}, {"/m~0n", problem.FieldUnknown}, {"/rows/0/x~1y~0z", problem.FieldUnknown}}},
		{"empty key", `{"":1,"rows":[{"prompt":"p"}]}`,
			[]fc{{"/", problem.FieldUnknown}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			_, fields, err := batch.Decode([]byte(tt.body))
			is.NoErr(err) // unknown fields are field errors, not a decode failure
			want := append([]fc(nil), tt.want...)
			sortFC(want)
			is.Equal(sortedFC(fields), want) // every unknown field, by JSON pointer
			for _, f := range fields {
				is.True(strings.Contains(f.Detail, "unknown field")) // detail explains
			}
		})
	}
}

// TestDecodeInvalidType covers wrongly typed values whose pointer has no array
// index in it (see TestDecodeInvalidTypeInArray for the ones that do).
func TestDecodeInvalidType(t *testing.T) {
	tests := []struct {
		name string
		body string
		want fc
	}{
		{"runMode as number", `{"runMode":1,"rows":[{"prompt":"p"}]}`, fc{"/runMode", problem.FieldInvalidType}},
		{"confirm as boolean", `{"runMode":"live","confirm":true,"rows":[{"prompt":"p"}]}`, fc{"/confirm", problem.FieldInvalidType}},
		{"refs as string", `{"runMode":"dry_run","refs":"https://x/a.png","rows":[{"prompt":"p"}]}`, fc{"/refs", problem.FieldInvalidType}},
		{"rows as object", `{"runMode":"dry_run","rows":{"prompt":"p"}}`, fc{"/rows", problem.FieldInvalidType}},
		{"rows as string", `{"runMode":"dry_run","rows":"p"}`, fc{"/rows", problem.FieldInvalidType}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			_, fields, err := batch.Decode([]byte(tt.body))
			is.NoErr(err)                                           // type errors are field errors, not a decode failure
			is.Equal(sortedFC(fields), []fc{tt.want})               // pointer and INVALID_TYPE
			is.True(strings.Contains(fields[0].Detail, "expected")) // detail says what was expected
		})
	}
}

// TestDecodeInvalidTypeInArray: the pointer of a wrongly typed value inside an
// array must name the element, e.g. /rows/0/variants.
func TestDecodeInvalidTypeInArray(t *testing.T) {
	tests := []struct {
		name string
		body string
		want fc
	}{
		{"variants as string in row 0", `{"runMode":"dry_run","rows":[{"prompt":"p","variants":"2"}]}`, fc{"/rows/0/variants", problem.FieldInvalidType}},
		{"variants as fraction in row 1", `{"runMode":"dry_run","rows":[{"prompt":"p"},{"prompt":"q","variants":1.5}]}`, fc{"/rows/1/variants", problem.FieldInvalidType}},
		{"prompt as number in row 2", `{"runMode":"dry_run","rows":[{"prompt":"p"},{"prompt":"q"},{"prompt":7}]}`, fc{"/rows/2/prompt", problem.FieldInvalidType}},
		{"row ref as number", `{"runMode":"dry_run","rows":[{"prompt":"p","refs":["https://x/a.png",5]}]}`, fc{"/rows/0/refs/1", problem.FieldInvalidType}},
		{"global ref as object", `{"runMode":"dry_run","refs":[{}],"rows":[{"prompt":"p"}]}`, fc{"/refs/0", problem.FieldInvalidType}},
		{"row as number", `{"runMode":"dry_run","rows":[{"prompt":"p"},3]}`, fc{"/rows/1", problem.FieldInvalidType}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			_, fields, err := batch.Decode([]byte(tt.body))
			is.NoErr(err)                             // type errors are field errors
			is.Equal(sortedFC(fields), []fc{tt.want}) // pointer names the array element
		})
	}
}

// TestDecodeReportsEveryTypeError: Decode promises every wrongly typed value,
// not just the first one encoding/json happens to return.
func TestDecodeReportsEveryTypeError(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []fc
	}{
		{"two top-level fields", `{"runMode":1,"model":2,"rows":[{"prompt":"p"}]}`,
			[]fc{{"/runMode", problem.FieldInvalidType}, {"/model", problem.FieldInvalidType}}},
		{"top level and row", `{"runMode":1,"rows":[{"prompt":"p","variants":"2"}]}`,
			[]fc{{"/runMode", problem.FieldInvalidType}, {"/rows/0/variants", problem.FieldInvalidType}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			_, fields, err := batch.Decode([]byte(tt.body))
			is.NoErr(err) // type errors are field errors
			want := append([]fc(nil), tt.want...)
			sortFC(want)
			is.Equal(sortedFC(fields), want) // every type error is reported
		})
	}
}

// TestDecodeUnknownAndTypeErrorsTogether: unknown fields and a type error come
// back in one list, so the caller can report them with the validation errors.
func TestDecodeUnknownAndTypeErrorsTogether(t *testing.T) {
	tests := []struct {
		name        string
		body        string
		wantUnknown []string
		wantTypeErr int
	}{
		{"unknown in row plus bad variants", `{"runMode":"dry_run","rows":[{"prompt":"p","colour":"red","variants":"2"}]}`, []string{"/rows/0/colour"}, 1},
		{"unknown top plus bad runMode", `{"runMode":true,"extra":1,"rows":[{"prompt":"p"}]}`, []string{"/extra"}, 1},
		{"unknown only", `{"runMode":"dry_run","extra":1,"rows":[{"prompt":"p","more":2}]}`, []string{"/extra", "/rows/0/more"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			_, fields, err := batch.Decode([]byte(tt.body))
			is.NoErr(err) // field errors only
			var unknown []string
			typeErrs := 0
			for _, f := range fields {
				switch f.Code {
				case problem.FieldUnknown:
					unknown = append(unknown, f.Field)
				case problem.FieldInvalidType:
					typeErrs++
				default:
					t.Errorf("unexpected field error code %q", f.Code)
				}
			}
			is.Equal(unknown, tt.wantUnknown)  // unknown fields by pointer
			is.Equal(typeErrs, tt.wantTypeErr) // type errors
		})
	}
}

// TestDecodeThenValidate follows the submit path: a decoded body validates into
// a spec, or the validation errors carry the right pointers.
func TestDecodeThenValidate(t *testing.T) {
	tests := []struct {
		name string
		body string
		code problem.Code
		want []fc
	}{
		{"valid", `{"runMode":"dry_run","rows":[{"prompt":"fox","variants":2}]}`, "", nil},
		{"three bad fields", `{"rows":[{"prompt":"a"},{"prompt":"b","variants":0},{"prompt":"   "}]}`,
			problem.ValidationFailed, []fc{{"/runMode", problem.FieldRequired}, {"/rows/1/variants", problem.FieldOutOfRange}, {"/rows/2/prompt", problem.FieldRequired}}},
		{"bad ref only", `{"runMode":"dry_run","rows":[{"prompt":"a","refs":["file:///etc/passwd"]}]}`,
			problem.RefNotAllowed, []fc{{"/rows/0/refs/0", problem.FieldRefNotAllowed}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			req, fields, err := batch.Decode([]byte(tt.body))
			is.NoErr(err)            // decodes
			is.Equal(len(fields), 0) // no decode field errors
			spec, err := batch.Validate(req, rules())
			is.Equal(problem.CodeOf(err), tt.code) // validation outcome
			if tt.code == "" {
				is.Equal(len(spec.Rows), 1) // one row
				is.Equal(spec.Images(), 2)  // two images
				return
			}
			_, got := problemOf(t, err)
			want := append([]fc(nil), tt.want...)
			sortFC(want)
			is.Equal(got, want) // pointers into the body
		})
	}
}

// TestDecodeMistypedValueReportedOnce: a wrongly typed value is an INVALID_TYPE
// error and nothing else; the submit path (decode errors + validation errors)
// must not also call it out of range or missing.
func TestDecodeMistypedValueReportedOnce(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		field string
	}{
		{"variants as string", `{"runMode":"dry_run","rows":[{"prompt":"p","variants":"2"}]}`, "/rows/0/variants"},
		{"variants as fraction", `{"runMode":"dry_run","rows":[{"prompt":"p","variants":2.5}]}`, "/rows/0/variants"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			req, fields, err := batch.Decode([]byte(tt.body))
			is.NoErr(err) // a field error, not a decode failure
			_, verr := batch.Validate(req, rules())
			var pe *problem.Error
			if errors.As(verr, &pe) {
				fields = append(fields, pe.Fields...)
			}
			is.Equal(sortedFC(fields), []fc{{tt.field, problem.FieldInvalidType}}) // one error, for the wrong type only
		})
	}
}
