package problem

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/assetgen/assetgen/shared/obs"
)

// ContentType is the media type of problem documents (RFC 9457).
const ContentType = "application/problem+json"

// Document is the RFC 9457 problem document, with the product's code and the
// request id added.
type Document struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	Instance  string       `json:"instance,omitempty"`
	Code      Code         `json:"code"`
	RequestID string       `json:"requestId,omitempty"`
	Errors    []FieldError `json:"errors,omitempty"`
	// ErrorsOmitted counts the field errors left out past MaxFieldErrors.
	ErrorsOmitted int            `json:"errorsOmitted,omitempty"`
	Extra         map[string]any `json:"-"`
}

// A problem document stays small whatever the request held: a body of many
// unknown (or long) field names must not be echoed back at several times its
// size. errors[] keeps its first MaxFieldErrors entries, and each pointer and
// detail keeps at most MaxFieldText bytes.
const (
	MaxFieldErrors = 50
	MaxFieldText   = 200
)

// capFields applies MaxFieldErrors and MaxFieldText to a copy of fields.
func capFields(fields []FieldError) ([]FieldError, int) {
	omitted := 0
	if len(fields) > MaxFieldErrors {
		omitted = len(fields) - MaxFieldErrors
		fields = fields[:MaxFieldErrors]
	}
	out := make([]FieldError, len(fields))
	for i, f := range fields {
		out[i] = FieldError{Field: clip(f.Field), Code: f.Code, Detail: clip(f.Detail)}
	}
	return out, omitted
}

// clip shortens s to at most MaxFieldText bytes on a rune boundary, marking
// the cut with an ellipsis.
func clip(s string) string {
	if len(s) <= MaxFieldText {
		return s
	}
	const mark = "…"
	cut := MaxFieldText - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// MarshalJSON flattens Extra into the top level, as RFC 9457 extension members.
func (d Document) MarshalJSON() ([]byte, error) {
	type plain Document
	b, err := json.Marshal(plain(d))
	if err != nil || len(d.Extra) == 0 {
		return b, err
	}
	m := make(map[string]any, len(d.Extra)+8)
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for k, v := range d.Extra {
		if _, taken := m[k]; !taken {
			m[k] = v
		}
	}
	return json.Marshal(m)
}

// TypeURI is the problem type of a code: a stable URI that documents it.
func TypeURI(c Code) string {
	return "https://assetgen.dev/errors#" + string(c)
}

// DocumentFor builds the document for err as the client sees it. Anything that is
// not an *Error becomes INTERNAL with no detail, so causes never leak.
func DocumentFor(r *http.Request, err error) Document {
	code := CodeOf(err)
	spec := Lookup(code)
	doc := Document{
		Type:      TypeURI(code),
		Title:     spec.Title,
		Status:    spec.Status,
		Code:      code,
		Instance:  r.URL.Path,
		RequestID: obs.RequestID(r.Context()),
	}
	// Detail, fields and extensions come from the error that set the code;
	// other Coded errors speak through the title.
	if pe, ok := coded(err).(*Error); ok {
		if code != Internal {
			doc.Detail = pe.Detail
		}
		if len(pe.Fields) > 0 {
			doc.Errors, doc.ErrorsOmitted = capFields(pe.Fields)
		}
		doc.Extra = pe.Extra
	}
	return doc
}

// Write answers the request with the problem document for err. Internal errors are
// logged in full; the client only ever sees their code and request id.
func Write(w http.ResponseWriter, r *http.Request, err error) {
	doc := DocumentFor(r, err)
	// The request's log line carries the code, so log-based metrics count
	// refusals by code (budget refusals, rate limits) without parsing bodies.
	obs.Annotate(r.Context(), "code", string(doc.Code))
	log := obs.Logger(r.Context())
	if doc.Code == Internal {
		log.Error("internal error", slog.String("path", r.URL.Path), slog.Any("error", err))
	} else if doc.Status >= 500 {
		log.Warn("request failed", slog.String("code", string(doc.Code)), slog.Any("error", err))
	}
	retryAfter := Lookup(doc.Code).RetryAfter
	if pe, ok := coded(err).(*Error); ok && pe.RetryAfter > 0 {
		retryAfter = pe.RetryAfter
	}
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(doc.Status)
	_ = json.NewEncoder(w).Encode(doc)
}
