package batch_test

import (
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/problem"
)

// TestValidateRejects covers every validation rule: each case starts from a
// valid request, breaks it in one way and names exactly the field errors (and
// the problem code) that must come back.
func TestValidateRejects(t *testing.T) {
	long := strings.Repeat("é", batch.MaxPromptRunes+1) // runes, not bytes, are counted
	tests := []struct {
		name   string
		rules  batch.Rules // zero means rules()
		mutate func(r *batch.Request)
		code   problem.Code
		want   []fc
	}{
		// runMode
		{"runMode missing", batch.Rules{}, func(r *batch.Request) { r.RunMode = "" },
			problem.ValidationFailed, []fc{{"/runMode", problem.FieldRequired}}},
		{"runMode unknown", batch.Rules{}, func(r *batch.Request) { r.RunMode = "preview" },
			problem.ValidationFailed, []fc{{"/runMode", problem.FieldUnknownValue}}},
		{"runMode is case-sensitive", batch.Rules{}, func(r *batch.Request) { r.RunMode = "LIVE" },
			problem.ValidationFailed, []fc{{"/runMode", problem.FieldUnknownValue}}},

		// model
		{"model unknown", batch.Rules{}, func(r *batch.Request) { r.Model = "dall-e-3" },
			problem.ValidationFailed, []fc{{"/model", problem.FieldUnknownValue}}},
		{"unknown model skips the aspect ratio check", batch.Rules{}, func(r *batch.Request) {
			r.Model = "nope"
			r.Rows[0].AspectRatio = "7:3"
		}, problem.ValidationFailed, []fc{{"/model", problem.FieldUnknownValue}}},

		// rows
		{"rows nil", batch.Rules{}, func(r *batch.Request) { r.Rows = nil },
			problem.ValidationFailed, []fc{{"/rows", problem.FieldRequired}}},
		{"rows empty", batch.Rules{}, func(r *batch.Request) { r.Rows = []batch.RowRequest{} },
			problem.ValidationFailed, []fc{{"/rows", problem.FieldRequired}}},
		{"rows 11", batch.Rules{}, func(r *batch.Request) { r.Rows = rowsOf(batch.MaxRows + 1) },
			problem.ValidationFailed, []fc{{"/rows", problem.FieldTooMany}}},
		{"rows beyond the cap are not validated", batch.Rules{}, func(r *batch.Request) {
			r.Rows = rowsOf(batch.MaxRows + 1)
			r.Rows[batch.MaxRows].Prompt = ""
		}, problem.ValidationFailed, []fc{{"/rows", problem.FieldTooMany}}},

		// variants
		{"variants 0", batch.Rules{}, func(r *batch.Request) { r.Rows[0].Variants = intp(0) },
			problem.ValidationFailed, []fc{{"/rows/0/variants", problem.FieldOutOfRange}}},
		{"variants 4", batch.Rules{}, func(r *batch.Request) { r.Rows[0].Variants = intp(batch.MaxVariants + 1) },
			problem.ValidationFailed, []fc{{"/rows/0/variants", problem.FieldOutOfRange}}},
		{"variants negative", batch.Rules{}, func(r *batch.Request) { r.Rows[0].Variants = intp(-1) },
			problem.ValidationFailed, []fc{{"/rows/0/variants", problem.FieldOutOfRange}}},

		// prompt
		{"prompt empty", batch.Rules{}, func(r *batch.Request) { r.Rows[0].Prompt = "" },
			problem.ValidationFailed, []fc{{"/rows/0/prompt", problem.FieldRequired}}},
		{"prompt whitespace only", batch.Rules{}, func(r *batch.Request) { r.Rows[0].Prompt = " \t\n\u00a0 " },
			problem.ValidationFailed, []fc{{"/rows/0/prompt", problem.FieldRequired}}},
		{"prompt over 2000 runes", batch.Rules{}, func(r *batch.Request) { r.Rows[0].Prompt = long },
			problem.ValidationFailed, []fc{{"/rows/0/prompt", problem.FieldTooLong}}},
		{"prompt not UTF-8", batch.Rules{}, func(r *batch.Request) { r.Rows[0].Prompt = "fox \xff" },
			problem.ValidationFailed, []fc{{"/rows/0/prompt", problem.FieldInvalidValue}}},

		// client ids
		{"duplicate id", batch.Rules{}, func(r *batch.Request) {
			r.Rows = rowsOf(3)
			r.Rows[0].ID, r.Rows[1].ID, r.Rows[2].ID = "a", "b", "a"
		}, problem.ValidationFailed, []fc{{"/rows/2/id", problem.FieldDuplicate}}},
		{"id used three times", batch.Rules{}, func(r *batch.Request) {
			r.Rows = rowsOf(3)
			r.Rows[0].ID, r.Rows[1].ID, r.Rows[2].ID = "x", "x", "x"
		}, problem.ValidationFailed, []fc{{"/rows/1/id", problem.FieldDuplicate}, {"/rows/2/id", problem.FieldDuplicate}}},
		{"id over 64 bytes", batch.Rules{}, func(r *batch.Request) { r.Rows[0].ID = strings.Repeat("i", batch.MaxClientID+1) },
			problem.ValidationFailed, []fc{{"/rows/0/id", problem.FieldTooLong}}},
		{"id with a control character", batch.Rules{}, func(r *batch.Request) { r.Rows[0].ID = "row\n1" },
			problem.ValidationFailed, []fc{{"/rows/0/id", problem.FieldInvalidValue}}},
		{"id with DEL", batch.Rules{}, func(r *batch.Request) { r.Rows[0].ID = "row\x7f" },
			problem.ValidationFailed, []fc{{"/rows/0/id", problem.FieldInvalidValue}}},

		// aspect ratio
		{"aspectRatio unsupported", batch.Rules{}, func(r *batch.Request) { r.Rows[0].AspectRatio = "7:3" },
			problem.ValidationFailed, []fc{{"/rows/0/aspectRatio", problem.FieldUnknownValue}}},
		{"aspectRatio is not normalised", batch.Rules{}, func(r *batch.Request) { r.Rows[0].AspectRatio = "16 : 9" },
			problem.ValidationFailed, []fc{{"/rows/0/aspectRatio", problem.FieldUnknownValue}}},

		// references: only disallowed refs → REF_NOT_ALLOWED
		{"global ref ftp", batch.Rules{}, func(r *batch.Request) { r.Refs = []string{"ftp://files.example.com/a.png"} },
			problem.RefNotAllowed, []fc{{"/refs/0", problem.FieldRefNotAllowed}}},
		{"row ref http without AllowHTTPRefs", batch.Rules{}, func(r *batch.Request) { r.Rows[0].Refs = []string{"http://img.example.com/a.png"} },
			problem.RefNotAllowed, []fc{{"/rows/0/refs/0", problem.FieldRefNotAllowed}}},
		{"gs ref outside RefBuckets", batch.Rules{}, func(r *batch.Request) { r.Rows[0].Refs = []string{"gs://other-bucket/a.png"} },
			problem.RefNotAllowed, []fc{{"/rows/0/refs/0", problem.FieldRefNotAllowed}}},
		{"gs ref without object", batch.Rules{}, func(r *batch.Request) { r.Refs = []string{"gs://" + refBucket} },
			problem.RefNotAllowed, []fc{{"/refs/0", problem.FieldRefNotAllowed}}},
		{"ref with credentials", batch.Rules{}, func(r *batch.Request) { r.Refs = []string{"https://u:p@img.example.com/a.png"} },
			problem.RefNotAllowed, []fc{{"/refs/0", problem.FieldRefNotAllowed}}},
		{"only the bad ref of a list is reported", batch.Rules{}, func(r *batch.Request) {
			r.Refs = []string{"https://img.example.com/ok.png", "file:///etc/passwd", "https://img.example.com/ok2.png"}
		}, problem.RefNotAllowed, []fc{{"/refs/1", problem.FieldRefNotAllowed}}},
		{"several disallowed refs stay REF_NOT_ALLOWED", batch.Rules{}, func(r *batch.Request) {
			r.Refs = []string{"javascript:alert(1)"}
			r.Rows[0].Refs = []string{"https://img.example.com/ok.png", "gs://other/x.png"}
		}, problem.RefNotAllowed, []fc{{"/refs/0", problem.FieldRefNotAllowed}, {"/rows/0/refs/1", problem.FieldRefNotAllowed}}},
		{"global refs over 20", batch.Rules{}, func(r *batch.Request) { r.Refs = refsOf(batch.MaxRefsPerList + 1) },
			problem.ValidationFailed, []fc{{"/refs", problem.FieldTooMany}}},
		{"row refs over 20", batch.Rules{}, func(r *batch.Request) { r.Rows[0].Refs = refsOf(batch.MaxRefsPerList + 1) },
			problem.ValidationFailed, []fc{{"/rows/0/refs", problem.FieldTooMany}}},
		{"refs past the per-list cap are not checked", batch.Rules{}, func(r *batch.Request) {
			r.Refs = append(refsOf(batch.MaxRefsPerList), "ftp://x.example.com/a.png")
		}, problem.ValidationFailed, []fc{{"/refs", problem.FieldTooMany}}},
		{"ref error mixed with another error is VALIDATION_FAILED", batch.Rules{}, func(r *batch.Request) {
			r.Refs = []string{"ftp://x.example.com/a.png"}
			r.Rows[0].Prompt = ""
		}, problem.ValidationFailed, []fc{{"/refs/0", problem.FieldRefNotAllowed}, {"/rows/0/prompt", problem.FieldRequired}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			rl := tt.rules
			if rl.Models.Models == nil {
				rl = rules()
			}
			req := validReq()
			tt.mutate(&req)

			spec, err := batch.Validate(req, rl)

			is.True(err != nil)                        // the request must be refused
			is.Equal(problem.CodeOf(err), tt.code)     // problem code
			is.Equal(spec.Rows, []batch.RowSpec(nil))  // no spec on failure
			is.Equal(spec.RunMode, ledger.RunMode("")) // zero spec on failure
			pe, got := problemOf(t, err)
			want := append([]fc(nil), tt.want...)
			sortFC(want)
			is.Equal(got, want) // field errors (pointer, code)
			for _, f := range pe.Fields {
				is.True(f.Detail != "") // every field error explains itself
			}
			if len(pe.Fields) == 1 {
				is.Equal(pe.Detail, pe.Fields[0].Detail) // a single error is the problem's detail
			}
		})
	}
}

// TestValidateReportsAllErrorsAtOnce: a request broken in several places gets
// every field error in one problem, with JSON pointers to each.
func TestValidateReportsAllErrorsAtOnce(t *testing.T) {
	tests := []struct {
		name string
		req  batch.Request
		want []fc
	}{
		{
			name: "three fields in different places",
			req: batch.Request{RunMode: "", Rows: []batch.RowRequest{
				{Prompt: "ok", Variants: intp(0)},
				{Prompt: "ok"},
				{Prompt: "  "},
			}},
			want: []fc{
				{"/runMode", problem.FieldRequired},
				{"/rows/0/variants", problem.FieldOutOfRange},
				{"/rows/2/prompt", problem.FieldRequired},
			},
		},
		{
			name: "every kind of error",
			req: batch.Request{RunMode: "sometimes", Model: "gemini-2.5-flash-image", Refs: []string{"http://x.example.com/a.png"}, Rows: []batch.RowRequest{
				{ID: "dup", Prompt: strings.Repeat("x", batch.MaxPromptRunes+1), Variants: intp(4), AspectRatio: "2:1"},
				{ID: "dup", Prompt: "", Refs: refsOf(batch.MaxRefsPerList + 1)},
				{ID: strings.Repeat("i", 65), Prompt: "fine", Refs: []string{"gs://" + refBucket + "/ok.png", "gs://" + refBucket}},
			}},
			want: []fc{
				{"/runMode", problem.FieldUnknownValue},
				{"/refs/0", problem.FieldRefNotAllowed},
				{"/rows/0/prompt", problem.FieldTooLong},
				{"/rows/0/variants", problem.FieldOutOfRange},
				{"/rows/0/aspectRatio", problem.FieldUnknownValue},
				{"/rows/1/prompt", problem.FieldRequired},
				{"/rows/1/id", problem.FieldDuplicate},
				{"/rows/1/refs", problem.FieldTooMany},
				{"/rows/2/id", problem.FieldTooLong},
				{"/rows/2/refs/1", problem.FieldRefNotAllowed},
			},
		},
		{
			name: "same problem in many rows",
			req: batch.Request{RunMode: "live", Rows: []batch.RowRequest{
				{Prompt: ""}, {Prompt: "ok"}, {Prompt: ""}, {Prompt: "ok"}, {Prompt: "\n"},
			}},
			want: []fc{
				{"/rows/0/prompt", problem.FieldRequired},
				{"/rows/2/prompt", problem.FieldRequired},
				{"/rows/4/prompt", problem.FieldRequired},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			_, err := batch.Validate(tt.req, rules())
			is.Equal(problem.CodeOf(err), problem.ValidationFailed) // mixed errors are VALIDATION_FAILED
			pe, got := problemOf(t, err)
			want := append([]fc(nil), tt.want...)
			sortFC(want)
			is.Equal(got, want)                                          // every invalid field is reported
			is.Equal(len(pe.Fields), len(tt.want))                       // and nothing twice
			is.True(strings.Contains(pe.Detail, "field(s) are invalid")) // detail sums up
		})
	}
}

// TestValidateAccepts checks the normalised spec: defaults filled in, prompts
// trimmed, references merged row-first.
func TestValidateAccepts(t *testing.T) {
	exactly2000 := strings.Repeat("語", batch.MaxPromptRunes) // 6000 bytes, 2000 runes
	tests := []struct {
		name  string
		rules batch.Rules
		req   batch.Request
		want  batch.Spec
	}{
		{
			name:  "defaults: model, variants 1, first aspect ratio",
			rules: rules(),
			req:   batch.Request{RunMode: "dry_run", Rows: []batch.RowRequest{{Prompt: "fox"}}},
			want: batch.Spec{RunMode: ledger.DryRun, Model: "gemini-2.5-flash-image", Rows: []batch.RowSpec{
				{Index: 0, Prompt: "fox", Variants: 1, AspectRatio: "1:1", RefURLs: []string{}},
			}},
		},
		{
			name:  "live with named model, explicit variants and ratio",
			rules: rules(),
			req: batch.Request{RunMode: "live", Confirm: "CONFIRM", Model: "gemini-3-pro-image-preview", Rows: []batch.RowRequest{
				{ID: "hero", Prompt: "  castle at dusk \n", Variants: intp(3), AspectRatio: "16:9"},
				{ID: "icon", Prompt: "shield", Variants: intp(1), AspectRatio: "21:9"},
			}},
			want: batch.Spec{RunMode: ledger.Live, Model: "gemini-3-pro-image-preview", Rows: []batch.RowSpec{
				{Index: 0, ID: "hero", Prompt: "castle at dusk", Variants: 3, AspectRatio: "16:9", RefURLs: []string{}},
				{Index: 1, ID: "icon", Prompt: "shield", Variants: 1, AspectRatio: "21:9", RefURLs: []string{}},
			}},
		},
		{
			name:  "limits exactly: 2000 runes, 64-byte id, 3 variants",
			rules: rules(),
			req: batch.Request{RunMode: "dry_run", Rows: []batch.RowRequest{
				{ID: strings.Repeat("i", batch.MaxClientID), Prompt: " " + exactly2000 + " ", Variants: intp(batch.MaxVariants)},
			}},
			want: batch.Spec{RunMode: ledger.DryRun, Model: "gemini-2.5-flash-image", Rows: []batch.RowSpec{
				{Index: 0, ID: strings.Repeat("i", batch.MaxClientID), Prompt: exactly2000, Variants: 3, AspectRatio: "1:1", RefURLs: []string{}},
			}},
		},
		{
			name:  "ten rows, empty ids are not duplicates",
			rules: rules(),
			req:   batch.Request{RunMode: "dry_run", Rows: rowsOf(batch.MaxRows)},
			want: func() batch.Spec {
				s := batch.Spec{RunMode: ledger.DryRun, Model: "gemini-2.5-flash-image"}
				for i, r := range rowsOf(batch.MaxRows) {
					s.Rows = append(s.Rows, batch.RowSpec{Index: i, Prompt: r.Prompt, Variants: 1, AspectRatio: "1:1", RefURLs: []string{}})
				}
				return s
			}(),
		},
		{
			name:  "refs merged row-first then global, textual duplicates removed",
			rules: rules(),
			req: batch.Request{RunMode: "dry_run",
				Refs: []string{"https://g.example.com/1.png", "gs://" + refBucket + "/style.png", "https://r.example.com/a.png"},
				Rows: []batch.RowRequest{
					{Prompt: "one", Refs: []string{"https://r.example.com/a.png", "https://r.example.com/b.png", "https://r.example.com/a.png"}},
					{Prompt: "two"},
				}},
			want: batch.Spec{RunMode: ledger.DryRun, Model: "gemini-2.5-flash-image", Rows: []batch.RowSpec{
				{Index: 0, Prompt: "one", Variants: 1, AspectRatio: "1:1", RefURLs: []string{
					"https://r.example.com/a.png", "https://r.example.com/b.png",
					"https://g.example.com/1.png", "gs://" + refBucket + "/style.png",
				}},
				{Index: 1, Prompt: "two", Variants: 1, AspectRatio: "1:1", RefURLs: []string{
					"https://g.example.com/1.png", "gs://" + refBucket + "/style.png", "https://r.example.com/a.png",
				}},
			}},
		},
		{
			name:  "twenty refs per list is the limit",
			rules: rules(),
			req:   batch.Request{RunMode: "dry_run", Refs: refsOf(20), Rows: []batch.RowRequest{{Prompt: "p", Refs: refsOf(20)}}},
			want: batch.Spec{RunMode: ledger.DryRun, Model: "gemini-2.5-flash-image", Rows: []batch.RowSpec{
				{Index: 0, Prompt: "p", Variants: 1, AspectRatio: "1:1", RefURLs: refsOf(20)},
			}},
		},
		{
			name:  "http refs when AllowHTTPRefs",
			rules: httpRules(),
			req:   batch.Request{RunMode: "dry_run", Rows: []batch.RowRequest{{Prompt: "p", Refs: []string{"http://localhost:8080/a.png"}}}},
			want: batch.Spec{RunMode: ledger.DryRun, Model: "gemini-2.5-flash-image", Rows: []batch.RowSpec{
				{Index: 0, Prompt: "p", Variants: 1, AspectRatio: "1:1", RefURLs: []string{"http://localhost:8080/a.png"}},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			got, err := batch.Validate(tt.req, tt.rules)
			is.NoErr(err)                        // the request is valid
			is.Equal(got, withDefaults(tt.want)) // normalised spec
			n := 0
			for _, r := range tt.want.Rows {
				n += r.Variants
			}
			is.Equal(got.Images(), n) // Images sums the variants
		})
	}
}

// TestValidateDoesNotMutateRequest: Validate works on a copy; the caller's
// slices keep their contents.
func TestValidateDoesNotMutateRequest(t *testing.T) {
	tests := []struct {
		name string
		req  batch.Request
	}{
		{"valid", batch.Request{RunMode: "dry_run", Refs: refsOf(2), Rows: []batch.RowRequest{{Prompt: " p ", Refs: refsOf(3)}}}},
		{"invalid", batch.Request{RunMode: "x", Refs: refsOf(9), Rows: []batch.RowRequest{{Prompt: " ", Refs: []string{"ftp://a/b"}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			before := cloneReq(tt.req)
			_, _ = batch.Validate(tt.req, rules())
			is.Equal(tt.req, before) // request unchanged
		})
	}
}

func cloneReq(r batch.Request) batch.Request {
	c := r
	c.Refs = append([]string(nil), r.Refs...)
	c.Rows = nil
	for _, row := range r.Rows {
		row.Refs = append([]string(nil), row.Refs...)
		c.Rows = append(c.Rows, row)
	}
	return c
}

func TestCheckConfirm(t *testing.T) {
	tests := []struct {
		name    string
		runMode string
		confirm string
		wantErr bool
	}{
		{"live with CONFIRM", "live", "CONFIRM", false},
		{"live without confirm", "live", "", true},
		{"live lower case", "live", "confirm", true},
		{"live title case", "live", "Confirm", true},
		{"live leading space", "live", " CONFIRM", true},
		{"live trailing space", "live", "CONFIRM ", true},
		{"live other word", "live", "YES", true},
		{"dry_run without confirm", "dry_run", "", false},
		{"dry_run with anything", "dry_run", "nope", false},
		{"dry_run with CONFIRM", "dry_run", "CONFIRM", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			err := batch.CheckConfirm(batch.Request{RunMode: tt.runMode, Confirm: tt.confirm})
			if !tt.wantErr {
				is.NoErr(err) // confirmation accepted or not needed
				return
			}
			is.Equal(problem.CodeOf(err), problem.ConfirmationRequired) // live needs the exact word
			is.True(strings.Contains(err.Error(), batch.ConfirmWord))   // the message names the word
		})
	}
}

// uploadRules are the rules of a deployment whose bucket is "platform".
func uploadRules() batch.Rules {
	r := rules()
	r.UploadsBucket = "platform"
	return r
}

func TestRefAllowed(t *testing.T) {
	tests := []struct {
		name   string
		ref    string
		rules  batch.Rules
		reason string // "" = allowed; otherwise a substring of the reason
	}{
		{"https", "https://img.example.com/a.png", rules(), ""},
		{"https upper-case scheme", "HTTPS://img.example.com/a.png", rules(), ""},
		{"https with port and query", "https://img.example.com:8443/a.png?w=1", rules(), ""},
		{"https at the length limit", "https://img.example.com/" + strings.Repeat("a", batch.MaxRefURL-len("https://img.example.com/")), rules(), ""},
		{"https over the length limit", "https://img.example.com/" + strings.Repeat("a", batch.MaxRefURL+1-len("https://img.example.com/")), rules(), "longer than"},
		{"http refused by default", "http://img.example.com/a.png", rules(), "https://"},
		{"http allowed when enabled", "http://img.example.com/a.png", httpRules(), ""},
		{"gs in an allowed bucket", "gs://" + refBucket + "/refs/a.png", rules(), ""},
		{"gs in another bucket", "gs://someone-else/a.png", rules(), `bucket "someone-else"`},
		{"gs with no buckets configured", "gs://" + refBucket + "/a.png", batch.Rules{}, "not allowed"},
		{"gs upload in the platform's bucket", "gs://platform/uploads/4f1c/20250102T030405.006Z-ab", uploadRules(), ""},
		{"gs elsewhere in the platform's bucket", "gs://platform/batches/x/images/r00-v0.png", uploadRules(), "only uploads"},
		{"gs refs of the platform's bucket", "gs://platform/refs/abc", uploadRules(), "only uploads"},
		{"gs in the platform's bucket listed in RefBuckets too", "gs://" + refBucket + "/config/apikeys.json", batch.Rules{RefBuckets: []string{refBucket}, UploadsBucket: refBucket}, "only uploads"},
		{"gs without object", "gs://" + refBucket, rules(), "name an object"},
		{"gs with only a slash", "gs://" + refBucket + "/", rules(), "name an object"},
		{"gs with only slashes", "gs://" + refBucket + "///", rules(), "name an object"},
		{"ftp", "ftp://files.example.com/a.png", rules(), `scheme "ftp"`},
		{"file with host", "file://server/etc/passwd", rules(), `scheme "file"`},
		{"file without host", "file:///etc/passwd", rules(), "absolute"},
		{"javascript", "javascript:alert(1)", rules(), "absolute"},
		{"data", "data:image/png;base64,iVBORw0KGgo=", rules(), "absolute"},
		{"scheme-relative", "//img.example.com/a.png", rules(), "scheme"},
		{"relative path", "/a.png", rules(), "absolute"},
		{"empty", "", rules(), "absolute"},
		{"unparseable", "https://img.example.com/%zz", rules(), "absolute"},
		{"control character", "https://img.example.com/a\n.png", rules(), "absolute"},
		{"user and password", "https://user:secret@img.example.com/a.png", rules(), "credentials"},
		{"user only", "https://user@img.example.com/a.png", rules(), "credentials"},
		{"empty userinfo", "https://@img.example.com/a.png", rules(), "credentials"},
		{"credentials on http even when allowed", "http://u:p@localhost/a.png", httpRules(), "credentials"},
		{"credentials on gs", "gs://u@" + refBucket + "/a.png", rules(), "credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			got := batch.RefAllowed(tt.ref, tt.rules)
			if tt.reason == "" {
				is.Equal(got, "") // reference is allowed
				return
			}
			is.True(got != "")                        // reference is refused
			is.True(strings.Contains(got, tt.reason)) // reason says why
		})
	}
}

func TestMergeRefURLs(t *testing.T) {
	tests := []struct {
		name   string
		own    []string
		global []string
		want   []string
	}{
		{"both nil", nil, nil, []string{}},
		{"own only", []string{"a", "b"}, nil, []string{"a", "b"}},
		{"global only", nil, []string{"g1", "g2"}, []string{"g1", "g2"}},
		{"own first, then global", []string{"a", "b"}, []string{"g1", "g2"}, []string{"a", "b", "g1", "g2"}},
		{"repeat across lists keeps the row's position", []string{"b", "a"}, []string{"a", "g", "b"}, []string{"b", "a", "g"}},
		{"repeat within own", []string{"a", "a", "b", "a"}, nil, []string{"a", "b"}},
		{"repeat within global", nil, []string{"g", "g"}, []string{"g"}},
		{"dedupe is textual, not semantic", []string{"https://x/a.png"}, []string{"https://X/a.png", "https://x/a.png?"}, []string{"https://x/a.png", "https://X/a.png", "https://x/a.png?"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			own, global := append([]string(nil), tt.own...), append([]string(nil), tt.global...)
			got := batch.MergeRefURLs(tt.own, tt.global)
			is.Equal(got, tt.want)                                // merged order
			is.Equal(append([]string(nil), tt.own...), own)       // own list untouched
			is.Equal(append([]string(nil), tt.global...), global) // global list untouched
		})
	}
}

func TestValidID(t *testing.T) {
	fresh := batch.NewID()
	tests := []struct {
		name string
		id   string
		want bool
	}{
		{"fresh id", fresh, true},
		{"canonical v7", "01890a5d-ac96-774b-bcce-b302099a8057", true},
		{"upper case", strings.ToUpper("01890a5d-ac96-774b-bcce-b302099a8057"), false},
		{"mixed case", "01890A5d-ac96-774b-bcce-b302099a8057", false},
		{"no hyphens", "01890a5dac96774bbcceb302099a8057", false},
		{"braces", "{01890a5d-ac96-774b-bcce-b302099a8057}", false},
		{"urn", "urn:uuid:01890a5d-ac96-774b-bcce-b302099a8057", false},
		{"empty", "", false},
		{"too short", "01890a5d-ac96-774b-bcce-b302099a805", false},
		{"too long", "01890a5d-ac96-774b-bcce-b302099a80570", false},
		{"non-hex of the right length", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", false},
		{"path traversal of the right length", "../../../../../../../../../../etc/pw", false},
		{"slashes in place of hyphens", "01890a5d/ac96/774b/bcce/b302099a8057", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			is.Equal(batch.ValidID(tt.id), tt.want) // ValidID verdict
		})
	}
}

func TestNewID(t *testing.T) {
	is := is.New(t)
	const n = 200
	seen := map[string]bool{}
	prev := ""
	for range n {
		id := batch.NewID()
		is.True(batch.ValidID(id))  // NewID issues ids ValidID accepts
		is.Equal(id[14], byte('7')) // version nibble is 7 (UUIDv7)
		is.True(!seen[id])          // ids are unique
		is.True(id > prev)          // ids sort by creation order
		seen[id] = true
		prev = id
	}
	is.Equal(len(seen), n) // n distinct ids
}

func TestSpecImages(t *testing.T) {
	tests := []struct {
		name string
		spec batch.Spec
		want int
	}{
		{"empty", batch.Spec{}, 0},
		{"one row", batch.Spec{Rows: []batch.RowSpec{{Variants: 3}}}, 3},
		{"several rows", batch.Spec{Rows: []batch.RowSpec{{Variants: 1}, {Variants: 2}, {Variants: 3}}}, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			is.Equal(tt.spec.Images(), tt.want) // image count
		})
	}
}
