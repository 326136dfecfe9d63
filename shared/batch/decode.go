package batch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/assetgen/assetgen/shared/problem"
)

// Field error codes of decoding.
const (
	FieldUnknown     = "UNKNOWN_FIELD"
	FieldInvalidType = "INVALID_TYPE"
)

// The fields a request may carry; anything else is reported with its JSON pointer.
var (
	requestFields = fieldSet(reflect.TypeFor[Request]())
	rowFields     = fieldSet(reflect.TypeFor[RowRequest]())
)

// Decode parses a request body. Malformed JSON is MALFORMED_JSON; unknown fields
// and wrongly typed values are returned as field errors (all of them), so they can
// be reported together with the validation errors.
func Decode(body []byte) (Request, []problem.FieldError, error) {
	var req Request
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return req, nil, problem.New(problem.MalformedJSON, "the body is empty; send a JSON object")
	}
	var generic any
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		return req, nil, problem.Wrap(problem.MalformedJSON, err, "the body is not valid JSON: %s", syntaxDetail(err))
	}
	if dec.More() {
		return req, nil, problem.New(problem.MalformedJSON, "the body holds more than one JSON value")
	}
	top, ok := generic.(map[string]any)
	if !ok {
		return req, nil, problem.New(problem.MalformedJSON, "the body must be a JSON object")
	}

	var errs []problem.FieldError
	errs = append(errs, unknown(top, "", requestFields)...)
	if rows, ok := top["rows"].([]any); ok {
		for i, r := range rows {
			if obj, ok := r.(map[string]any); ok {
				errs = append(errs, unknown(obj, fmt.Sprintf("/rows/%d", i), rowFields)...)
			}
		}
	}

	// Type errors: decode leniently (unknown fields were reported above).
	if err := json.Unmarshal(trimmed, &req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			errs = append(errs, problem.FieldError{
				Field: pointer(te.Field), Code: FieldInvalidType,
				Detail: fmt.Sprintf("expected %s, got %s", te.Type.String(), te.Value),
			})
		} else {
			return req, nil, problem.Wrap(problem.MalformedJSON, err, "the body could not be decoded")
		}
	}
	return req, errs, nil
}

func unknown(obj map[string]any, prefix string, allowed map[string]bool) []problem.FieldError {
	var out []problem.FieldError
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !allowed[k] {
			out = append(out, problem.FieldError{
				Field: prefix + "/" + escapePointer(k), Code: FieldUnknown,
				Detail: fmt.Sprintf("unknown field %q", k),
			})
		}
	}
	return out
}

// pointer turns encoding/json's dotted path ("rows.0.variants") into a JSON
// pointer ("/rows/0/variants").
func pointer(dotted string) string {
	if dotted == "" {
		return ""
	}
	parts := strings.Split(dotted, ".")
	for i, p := range parts {
		parts[i] = escapePointer(p)
	}
	return "/" + strings.Join(parts, "/")
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func syntaxDetail(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at byte %d", se.Error(), se.Offset)
	}
	return err.Error()
}

// fieldSet lists the JSON names of a struct's fields, from their tags.
func fieldSet(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out[name] = true
		}
	}
	return out
}
