package openapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/matryer/is"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"

	"github.com/assetgen/assetgen/shared/openapi"
	"github.com/assetgen/assetgen/shared/openapi/openapitest"
	"github.com/assetgen/assetgen/shared/problem"
)

func TestDocumentPassesTheOpenAPIValidator(t *testing.T) {
	is := is.New(t)
	doc, err := libopenapi.NewDocument(openapi.Document())
	is.NoErr(err) // the document parses
	is.Equal(doc.GetVersion(), "3.1.0")
	v, errs := validator.NewValidator(doc)
	is.Equal(len(errs), 0) // every reference resolves
	ok, verrs := v.ValidateDocument()
	for _, e := range verrs {
		t.Errorf("%s (line %d)", e.Error(), e.SpecLine)
	}
	is.True(ok) // the document is valid OpenAPI 3.1
	_, err = openapitest.Load()
	is.NoErr(err) // the response checker builds from it (event schemas included)
}

func TestDocsCopyIsTheSameBytes(t *testing.T) {
	is := is.New(t)
	b, err := os.ReadFile("../../docs/openapi.json")
	is.NoErr(err)                               // docs/openapi.json exists
	is.True(bytes.Equal(b, openapi.Document())) // docs/openapi.json is shared/openapi/openapi.json: run make openapi
}

func TestDocumentIsIndented(t *testing.T) {
	is := is.New(t)
	var compact, indented bytes.Buffer
	is.NoErr(json.Compact(&compact, openapi.Document()))
	is.NoErr(json.Indent(&indented, compact.Bytes(), "", "  "))
	indented.WriteByte('\n')
	is.Equal(indented.String(), string(openapi.Document())) // two-space indentation, one trailing newline: diffs stay small
}

// tree is the document as plain JSON, for the checks below.
func tree(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(openapi.Document(), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// at follows a path of keys (or a "#/..." reference) through the tree.
func at(v any, keys ...string) any {
	if len(keys) == 1 && strings.HasPrefix(keys[0], "#/") {
		keys = strings.Split(strings.TrimPrefix(keys[0], "#/"), "/")
	}
	for _, k := range keys {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	return v
}

func strs(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	slices.Sort(out)
	return out
}

func TestProblemCodesAreTheTables(t *testing.T) {
	is := is.New(t)
	doc := tree(t)
	var codes []string
	for _, c := range problem.Codes() {
		codes = append(codes, string(c))
	}
	slices.Sort(codes)
	is.Equal(strs(at(doc, "#/components/schemas/ProblemCode/enum")), codes) // ProblemCode lists every code of shared/problem
	fields := problem.FieldCodes()
	slices.Sort(fields)
	is.Equal(strs(at(doc, "#/components/schemas/FieldCode/enum")), fields) // FieldCode lists every field code
}

// Every problem answer of every operation names codes of its own status, in
// a schema that pins that status.
func TestProblemAnswersCarryCodesOfTheirStatus(t *testing.T) {
	is := is.New(t)
	doc := tree(t)
	checked := 0
	for path, item := range at(doc, "paths").(map[string]any) {
		for method, op := range item.(map[string]any) {
			for status, resp := range at(op, "responses").(map[string]any) {
				if ref, ok := at(resp, "$ref").(string); ok {
					resp = at(doc, ref)
				}
				schema := at(resp, "content", problem.ContentType, "schema")
				if schema == nil {
					continue
				}
				where := method + " " + path + " " + status
				ref, _ := at(schema, "$ref").(string)
				schema = at(doc, ref)
				is.Equal(strconv.Itoa(int(at(schema, "properties", "status", "const").(float64))), status) // the schema pins the answer's status
				for _, c := range strs(at(schema, "properties", "code", "enum")) {
					if got := problem.Lookup(problem.Code(c)).Status; strconv.Itoa(got) != status || !slices.Contains(problem.Codes(), problem.Code(c)) {
						t.Errorf("%s lists %s, whose status is %d", where, c, got)
					}
				}
				is.Equal(at(schema, "allOf").([]any)[0].(map[string]any)["$ref"], "#/components/schemas/Problem") // built on Problem
				checked++
			}
		}
	}
	is.True(checked > 50) // every operation's problem answers were checked
}

func TestHandlerServesTheDocument(t *testing.T) {
	is := is.New(t)
	h := openapi.Handler()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	is.Equal(w.Code, http.StatusOK)
	is.Equal(w.Header().Get("Content-Type"), "application/json")
	is.Equal(w.Header().Get("Cache-Control"), "public, max-age=300") // cacheable
	is.True(bytes.Equal(w.Body.Bytes(), openapi.Document()))         // the embedded document, byte for byte
	etag := w.Header().Get("ETag")
	is.True(etag != "") // revalidation works by ETag

	req := httptest.NewRequest(http.MethodGet, "/openapi.json", nil)
	req.Header.Set("If-None-Match", etag)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, req)
	is.Equal(w.Code, http.StatusNotModified) // a current copy is not sent again
	is.Equal(w.Body.Len(), 0)
}

// Every operation names itself and its service, and every answer carries the
// request id, so clients and the route tests can rely on them.
func TestOperationsFollowTheConventions(t *testing.T) {
	doc := tree(t)
	ids := map[string]string{}
	for path, item := range at(doc, "paths").(map[string]any) {
		for method, op := range item.(map[string]any) {
			where := method + " " + path
			id, _ := at(op, "operationId").(string)
			if id == "" || ids[id] != "" {
				t.Errorf("%s: operationId %q is missing or also %s's", where, id, ids[id])
			}
			ids[id] = where
			if s, _ := at(op, "x-service").([]any); len(s) == 0 {
				t.Errorf("%s: no x-service", where)
			}
			for status, resp := range at(op, "responses").(map[string]any) {
				if ref, ok := at(resp, "$ref").(string); ok {
					resp = at(doc, ref)
				}
				if at(resp, "headers", "X-Request-Id") == nil {
					t.Errorf("%s %s: the answer does not declare X-Request-Id", where, status)
				}
			}
		}
	}
}
