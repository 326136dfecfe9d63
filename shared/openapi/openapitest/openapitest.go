// Package openapitest holds the document to the code in tests: it checks real
// responses against the OpenAPI document with a third-party validator
// (libopenapi-validator) — status, headers, content type and body schema, and
// every event of a progress stream — and compares the routes a service
// registers with the operations the document gives it.
package openapitest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	valerrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/helpers"
	"github.com/pb33f/libopenapi-validator/paths"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi-validator/strict"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"github.com/assetgen/assetgen/shared/openapi"
)

// eventStream is the media type of the progress stream.
const eventStream = "text/event-stream"

// version is the OpenAPI version the schemas are read as.
const version = 3.1

// ignoredHeaders are response headers the document leaves out: CORS (the
// browser's business, configured per deployment) and generic HTTP ones.
var ignoredHeaders = []string{
	"access-control-allow-origin", "access-control-allow-methods", "access-control-allow-headers",
	"access-control-allow-credentials", "access-control-expose-headers", "access-control-max-age",
	"content-encoding",
}

// maps are the objects whose keys are data, not fields (additionalProperties
// with a schema): strict mode, which otherwise refuses every property a
// schema does not name, leaves their keys alone.
var maps = []string{
	"$.body.checks**",  // Checks: readiness checks by name ("config/flags.json")
	"$.body.headers**", // Upload: the headers a PUT must carry
}

// Checker validates responses against the document.
type Checker struct {
	model     *v3.Document
	responses validator.Validator
	opts      *config.ValidationOptions
	schemas   schema_validation.SchemaValidator
	// event is the schema of one progress event; data the schema of each
	// event type's data, both read from the document.
	event *base.Schema
	data  map[string]*base.Schema
}

var (
	loadOnce sync.Once
	loaded   *Checker
	loadErr  error
)

// Load parses the embedded document and builds its validators, once per
// process.
func Load() (*Checker, error) {
	loadOnce.Do(func() { loaded, loadErr = load(openapi.Document()) })
	return loaded, loadErr
}

func load(spec []byte) (*Checker, error) {
	doc, err := libopenapi.NewDocument(spec)
	if err != nil {
		return nil, fmt.Errorf("openapitest: parsing the document: %w", err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		return nil, fmt.Errorf("openapitest: building the document's model: %w", err)
	}
	opts := []config.Option{
		config.WithFormatAssertions(), config.WithStrictMode(),
		config.WithStrictIgnoredHeadersExtra(ignoredHeaders...), config.WithStrictIgnorePaths(maps...),
	}
	v, errs := validator.NewValidator(doc, opts...)
	if len(errs) > 0 {
		return nil, fmt.Errorf("openapitest: building the validator: %w", errors.Join(errs...))
	}
	c := &Checker{
		model: &m.Model, responses: v, opts: config.NewValidationOptions(opts...),
		schemas: schema_validation.NewSchemaValidator(opts...), data: map[string]*base.Schema{},
	}
	if err := c.readEvents(); err != nil {
		return nil, err
	}
	return c, nil
}

// readEvents reads the schema of one progress event, ProgressEvent (the
// x-itemSchema of the stream's text/event-stream answer), and for each of its
// oneOf alternatives the event name (properties.event.const) and the data's
// contentSchema.
func (c *Checker) readEvents() error {
	proxy, ok := c.model.Components.Schemas.Get("ProgressEvent")
	if !ok {
		return errors.New("openapitest: the document has no ProgressEvent schema")
	}
	c.event = proxy.Schema()
	for _, alt := range c.event.OneOf {
		s := alt.Schema()
		ev, _ := s.Properties.Get("event")
		data, _ := s.Properties.Get("data")
		if ev == nil || data == nil || ev.Schema().Const == nil || data.Schema().ContentSchema == nil {
			return errors.New("openapitest: every ProgressEvent alternative needs event.const and data.contentSchema")
		}
		c.data[ev.Schema().Const.Value] = data.Schema().ContentSchema.Schema()
	}
	return nil
}

// Operation reports whether the document has an operation for the request's
// method and path.
func (c *Checker) Operation(req *http.Request) bool {
	item, errs, _ := paths.FindPath(req, c.model, nil)
	return item != nil && len(errs) == 0 && helpers.ExtractOperation(req, item) != nil
}

// Check validates resp, the answer to req, against the document. A body is
// read whole and put back; a progress stream is wrapped instead, so that each
// event is checked as the caller reads it (a bad one fails that read, and
// report hears of it). A request the document has no operation for is
// checked only when it is refused as the document says every such request
// is (405 METHOD_NOT_ALLOWED with Allow, 404 NOT_FOUND). A body that cannot
// be read is passed on with its read error.
func (c *Checker) Check(req *http.Request, resp *http.Response, report func(error)) error {
	if !c.Operation(req) {
		return c.checkRefusal(req, resp)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == eventStream {
		head := *resp
		head.Body = http.NoBody
		if err := c.validate(req, &head); err != nil {
			return err
		}
		resp.Body = &eventChecker{c: c, req: req, body: resp.Body, r: bufio.NewReader(resp.Body), report: report}
		return nil
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), errReader{err}))
		return nil
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	if err := c.validate(req, resp); err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return nil
}

// refusals are the answers of the document's components that any request
// outside its operations may get, by status. Other answers to such requests
// (the generate function's, behind Cloud Tasks) are not the document's.
var refusals = map[int]string{
	http.StatusMethodNotAllowed: "MethodNotAllowed",
	http.StatusNotFound:         "NotFound",
}

func (c *Checker) checkRefusal(req *http.Request, resp *http.Response) error {
	name, ok := refusals[resp.StatusCode]
	if !ok {
		return nil
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	if err != nil {
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), errReader{err}))
		return nil
	}
	if err := c.CheckComponent(name, resp.Header, b); err != nil {
		return fmt.Errorf("openapi: %s %s answered %d, which is not #/components/responses/%s: %w", req.Method, req.URL.Path, resp.StatusCode, name, err)
	}
	return nil
}

// CheckComponent validates an answer against one of the document's
// response components: its required headers, its content type and its body.
func (c *Checker) CheckComponent(name string, header http.Header, body []byte) error {
	comp, ok := c.model.Components.Responses.Get(name)
	if !ok {
		return fmt.Errorf("the document has no response %s", name)
	}
	for h, spec := range comp.Headers.FromOldest() {
		if spec.Required && header.Get(h) == "" {
			return fmt.Errorf("header %s is missing", h)
		}
	}
	mt, _, _ := mime.ParseMediaType(header.Get("Content-Type"))
	media, ok := comp.Content.Get(mt)
	if !ok {
		return fmt.Errorf("content type %q is not one of the response's", mt)
	}
	if media.Schema == nil {
		return nil
	}
	schema := media.Schema.Schema()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("the body is not JSON: %w", err)
	}
	return c.checkValue(schema, v, "body")
}

// checkValue validates a decoded value against a schema, strictly: a
// property the schema does not declare is refused too.
func (c *Checker) checkValue(schema *base.Schema, v any, what string) error {
	if ok, errs := c.schemas.ValidateSchemaObjectWithVersion(schema, v, version); !ok {
		return fmt.Errorf("%s: %s", what, describe(errs))
	}
	if res := strict.ValidateBody(schema, v, strict.DirectionResponse, c.opts, version); res != nil && !res.Valid {
		var names []string
		for _, u := range res.UndeclaredValues {
			names = append(names, u.Path)
		}
		return fmt.Errorf("%s has fields the document does not declare: %s", what, strings.Join(names, ", "))
	}
	return nil
}

func (c *Checker) validate(req *http.Request, resp *http.Response) error {
	if ok, errs := c.responses.ValidateHttpResponse(req, resp); !ok {
		return mismatch(req, resp.StatusCode, errs)
	}
	return nil
}

// CheckEvent validates one progress event: the event as a whole (its name,
// id and data fields), then its data against the event's contentSchema.
// id is "" when the event had no id field.
func (c *Checker) CheckEvent(event, id, data string) error {
	fields := map[string]any{"event": event, "data": data}
	if id != "" {
		fields["id"] = id
	}
	if ok, errs := c.schemas.ValidateSchemaObjectWithVersion(c.event, fields, version); !ok {
		return fmt.Errorf("event %q: %s", event, describe(errs))
	}
	schema := c.data[event]
	var v any
	if err := json.Unmarshal([]byte(data), &v); err != nil {
		return fmt.Errorf("event %q: data is not JSON: %w", event, err)
	}
	if err := c.checkValue(schema, v, "data "+data); err != nil {
		return fmt.Errorf("event %q: %w", event, err)
	}
	return nil
}

// mismatch describes a response that the document does not allow.
func mismatch(req *http.Request, status int, errs []*valerrors.ValidationError) error {
	return fmt.Errorf("openapi: %s %s answered %d, which the document does not allow: %s", req.Method, req.URL.Path, status, describe(errs))
}

func describe(errs []*valerrors.ValidationError) string {
	var out []string
	for _, e := range errs {
		msg := e.Message
		if e.Reason != "" {
			msg += " (" + e.Reason + ")"
		}
		for _, f := range e.SchemaValidationErrors {
			msg += fmt.Sprintf("; %s at %s", f.Reason, f.FieldPath)
		}
		out = append(out, msg)
	}
	slices.Sort(out)
	return strings.Join(slices.Compact(out), " | ")
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// eventChecker passes a progress stream through, checking each event once
// its blank line arrives.
type eventChecker struct {
	c      *Checker
	req    *http.Request
	body   io.ReadCloser
	r      *bufio.Reader
	report func(error)
	// the event being read
	event, id string
	data      []string
	line      []byte
	err       error
}

func (e *eventChecker) Read(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.r.Read(p)
	if cerr := e.scan(p[:n]); cerr != nil {
		cerr = fmt.Errorf("openapi: GET %s: progress stream: %w", e.req.URL.Path, cerr)
		if e.report != nil {
			e.report(cerr)
		}
		e.err = cerr
		return n, cerr
	}
	return n, err
}

func (e *eventChecker) Close() error { return e.body.Close() }

// scan feeds bytes into the line parser and checks every event it ends.
func (e *eventChecker) scan(b []byte) error {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			e.line = append(e.line, b...)
			return nil
		}
		line := strings.TrimSuffix(string(append(e.line, b[:i]...)), "\r")
		e.line, b = e.line[:0], b[i+1:]
		if err := e.field(line); err != nil {
			return err
		}
	}
	return nil
}

// field handles one line of the stream (the Server-Sent Events format).
func (e *eventChecker) field(line string) error {
	if line == "" {
		defer func() { e.event, e.id, e.data = "", "", nil }()
		if e.event == "" && e.data == nil {
			return nil // a retry: frame, or a comment
		}
		return e.c.CheckEvent(e.event, e.id, strings.Join(e.data, "\n"))
	}
	if strings.HasPrefix(line, ":") {
		return nil
	}
	name, value, _ := strings.Cut(line, ":")
	value = strings.TrimPrefix(value, " ")
	switch name {
	case "event":
		e.event = value
	case "id":
		e.id = value
	case "data":
		e.data = append(e.data, value)
	case "retry":
	default:
		return fmt.Errorf("unknown field %q", name)
	}
	return nil
}
