package batch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/assetgen/assetgen/shared/problem"
)

// Decode parses a request body. Malformed JSON is MALFORMED_JSON; unknown fields
// and wrongly typed values are returned as field errors — every one, each with
// its exact JSON pointer — so they are reported together with the validation
// errors. A mistyped field is left at its zero value.
func Decode(body []byte) (Request, []problem.FieldError, error) {
	var req Request
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return req, nil, problem.New(problem.MalformedJSON, "the body is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	var top map[string]json.RawMessage
	if err := dec.Decode(&top); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return req, nil, problem.New(problem.MalformedJSON, "the body must be a JSON object")
		}
		return req, nil, problem.Wrap(problem.MalformedJSON, err, "the body is not valid JSON: %s", syntaxDetail(err))
	}
	if top == nil {
		return req, nil, problem.New(problem.MalformedJSON, "the body must be a JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return req, nil, problem.New(problem.MalformedJSON, "the body holds more than one JSON value")
	}

	d := decoder{}
	for _, k := range sortedKeys(top) {
		raw, at := top[k], "/"+escapePointer(k)
		switch k {
		case "runMode":
			d.field(raw, at, &req.RunMode)
		case "confirm":
			d.field(raw, at, &req.Confirm)
		case "model":
			d.field(raw, at, &req.Model)
		case "refs":
			req.Refs = d.strings(raw, at)
		case "rows":
			req.Rows = d.rows(raw, at)
		case "webhookUrl":
			d.field(raw, at, &req.WebhookURL)
		case "sheet":
			req.Sheet = d.sheet(raw, at)
		case "imageSize":
			d.field(raw, at, &req.ImageSize)
		case "outputFormat":
			d.field(raw, at, &req.OutputFormat)
		default:
			d.unknown(at, k)
		}
	}
	return req, d.errs, nil
}

type decoder struct{ errs []problem.FieldError }

func (d *decoder) unknown(at, name string) {
	d.errs = append(d.errs, problem.FieldError{Field: at, Code: problem.FieldUnknown, Detail: fmt.Sprintf("unknown field %q", name)})
}

func (d *decoder) mistyped(at, want string, raw json.RawMessage) {
	d.errs = append(d.errs, problem.FieldError{Field: at, Code: problem.FieldInvalidType, Detail: fmt.Sprintf("expected %s, got %s", want, kindOf(raw))})
}

// field decodes one string; on a type error dst keeps its zero value.
func (d *decoder) field(raw json.RawMessage, at string, dst *string) {
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		d.mistyped(at, "a string", raw)
		return
	}
	*dst = v
}

// integer decodes an optional integer; on a type error it stays unset.
func (d *decoder) integer(raw json.RawMessage, at string) *int {
	var v *int
	if err := json.Unmarshal(raw, &v); err != nil {
		d.mistyped(at, "an integer", raw)
		return nil
	}
	return v
}

// integer64 decodes an optional 64-bit integer; on a type error (or a number
// out of its range) it stays unset.
func (d *decoder) integer64(raw json.RawMessage, at string) *int64 {
	var v *int64
	if err := json.Unmarshal(raw, &v); err != nil {
		d.mistyped(at, "an integer", raw)
		return nil
	}
	return v
}

func (d *decoder) strings(raw json.RawMessage, at string) []string {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		d.mistyped(at, "an array of strings", raw)
		return nil
	}
	if items == nil {
		return nil
	}
	out := make([]string, 0, len(items))
	for i, item := range items {
		var s string
		if err := json.Unmarshal(item, &s); err != nil {
			d.mistyped(fmt.Sprintf("%s/%d", at, i), "a string", item)
			continue
		}
		out = append(out, s)
	}
	return out
}

func (d *decoder) rows(raw json.RawMessage, at string) []RowRequest {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		d.mistyped(at, "an array of rows", raw)
		return nil
	}
	out := make([]RowRequest, 0, len(items))
	for i, item := range items {
		rowAt := fmt.Sprintf("%s/%d", at, i)
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(item, &fields); err != nil || fields == nil {
			d.mistyped(rowAt, "a row object", item)
			out = append(out, RowRequest{})
			continue
		}
		var row RowRequest
		for _, k := range sortedKeys(fields) {
			v, fat := fields[k], rowAt+"/"+escapePointer(k)
			switch k {
			case "id":
				d.field(v, fat, &row.ID)
			case "prompt":
				d.field(v, fat, &row.Prompt)
			case "variants":
				row.Variants = d.integer(v, fat)
			case "aspectRatio":
				d.field(v, fat, &row.AspectRatio)
			case "refs":
				row.Refs = d.strings(v, fat)
			case "imageSize":
				d.field(v, fat, &row.ImageSize)
			case "outputFormat":
				d.field(v, fat, &row.OutputFormat)
			case "seed":
				row.Seed = d.integer64(v, fat)
			default:
				d.unknown(fat, k)
			}
		}
		out = append(out, row)
	}
	return out
}

func (d *decoder) sheet(raw json.RawMessage, at string) *SheetRequest {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		d.mistyped(at, "an object with spreadsheetId and range", raw)
		return nil
	}
	var s SheetRequest
	for _, k := range sortedKeys(fields) {
		v, fat := fields[k], at+"/"+escapePointer(k)
		switch k {
		case "spreadsheetId":
			d.field(v, fat, &s.SpreadsheetID)
		case "range":
			d.field(v, fat, &s.Range)
		default:
			d.unknown(fat, k)
		}
	}
	return &s
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// kindOf names a JSON value's type for error messages.
func kindOf(raw json.RawMessage) string {
	s := bytes.TrimSpace(raw)
	if len(s) == 0 {
		return "nothing"
	}
	switch s[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		if bytes.ContainsAny(s, ".eE") {
			return "a non-integer number"
		}
		return "a number"
	}
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
