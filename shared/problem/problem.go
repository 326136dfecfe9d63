// Package problem is the one place where failures become HTTP answers: a stable
// enum of error codes, the table that maps each code to a status and a title, and
// the writer of RFC 9457 problem documents (application/problem+json).
package problem

import (
	"errors"
	"fmt"
)

// Code is a stable, machine-readable error code. Clients switch on it; it never
// changes meaning once published (docs/errors.md lists every one).
type Code string

// The codes. Keep this list, the table below and docs/errors.md in step: a test
// fails when they disagree.
const (
	ValidationFailed     Code = "VALIDATION_FAILED"
	PayloadTooLarge      Code = "PAYLOAD_TOO_LARGE"
	UnsupportedMediaType Code = "UNSUPPORTED_MEDIA_TYPE"
	MalformedJSON        Code = "MALFORMED_JSON"
	RefNotAllowed        Code = "REF_NOT_ALLOWED"
	RefFetchFailed       Code = "REF_FETCH_FAILED"
	RefTooLarge          Code = "REF_TOO_LARGE"
	RefNotImage          Code = "REF_NOT_IMAGE"
	IdempotencyConflict  Code = "IDEMPOTENCY_CONFLICT"
	BatchNotFound        Code = "BATCH_NOT_FOUND"
	NotFound             Code = "NOT_FOUND"
	MethodNotAllowed     Code = "METHOD_NOT_ALLOWED"
	ConfirmationRequired Code = "CONFIRMATION_REQUIRED"
	BudgetExceeded       Code = "BUDGET_EXCEEDED"
	BudgetContended      Code = "BUDGET_CONTENDED"
	FeatureDisabled      Code = "FEATURE_DISABLED"
	RateLimited          Code = "RATE_LIMITED"
	ModelRateLimit       Code = "MODEL_RATE_LIMIT"
	ModelSafetyBlocked   Code = "MODEL_SAFETY_BLOCKED"
	ModelFailed          Code = "MODEL_FAILED"
	GCSWriteFailed       Code = "GCS_WRITE_FAILED"
	StorageUnavailable   Code = "STORAGE_UNAVAILABLE"
	TaskEnqueueFailed    Code = "TASK_ENQUEUE_FAILED"
	SubmitInterrupted    Code = "SUBMIT_INTERRUPTED"
	BatchNotFinished     Code = "BATCH_NOT_FINISHED"
	NothingToRetry       Code = "NOTHING_TO_RETRY"
	RetryInterrupted     Code = "RETRY_INTERRUPTED"
	Unauthenticated      Code = "UNAUTHENTICATED"
	Forbidden            Code = "FORBIDDEN"
	RowLeased            Code = "ROW_LEASED"
	NotReady             Code = "NOT_READY"
	ConfigInvalid        Code = "CONFIG_INVALID"
	Overloaded           Code = "OVERLOADED"
	Internal             Code = "INTERNAL"
)

// Spec is what the table says about a code.
type Spec struct {
	Status int
	Title  string
	// RetryAfter is the Retry-After (seconds) every answer with the code
	// carries, unless the error sets its own; 0 sends none.
	RetryAfter int
}

// table is the single code → HTTP status mapping.
var table = map[Code]Spec{
	ValidationFailed:     {400, "The request is invalid", 0},
	PayloadTooLarge:      {413, "The request body is too large", 0},
	UnsupportedMediaType: {415, "The request body must be application/json", 0},
	MalformedJSON:        {400, "The request body is not valid JSON", 0},
	RefNotAllowed:        {400, "A reference image URL is not allowed", 0},
	RefFetchFailed:       {422, "A reference image could not be fetched", 0},
	RefTooLarge:          {422, "A reference image is too large", 0},
	RefNotImage:          {422, "A reference is not a supported image", 0},
	IdempotencyConflict:  {409, "The idempotency key was used with a different request", 0},
	BatchNotFound:        {404, "No such batch", 0},
	NotFound:             {404, "No such resource", 0},
	MethodNotAllowed:     {405, "Method not allowed", 0},
	ConfirmationRequired: {400, "Live runs require the typed confirmation CONFIRM", 0},
	BudgetExceeded:       {402, "The daily budget does not cover this batch", 0},
	BudgetContended:      {503, "The budget is busy; retry shortly", 0},
	FeatureDisabled:      {503, "This feature is not enabled", 0},
	RateLimited:          {429, "Too many requests", 0},
	ModelRateLimit:       {429, "The image model is rate limited", 0},
	ModelSafetyBlocked:   {422, "The image model blocked the prompt or its output", 0},
	ModelFailed:          {502, "The image model failed", 0},
	GCSWriteFailed:       {503, "Storage is temporarily unavailable", 0},
	StorageUnavailable:   {503, "Storage cannot be read right now; retry shortly", 1},
	TaskEnqueueFailed:    {503, "The task queue is temporarily unavailable", 0},
	SubmitInterrupted:    {503, "The submit was interrupted after its batch began to be queued", 2},
	BatchNotFinished:     {409, "The batch has not finished", 0},
	NothingToRetry:       {409, "No variant of the batch failed or was cancelled", 0},
	RetryInterrupted:     {503, "The retry was interrupted after its rows began to be queued", 2},
	Unauthenticated:      {401, "Authentication required", 0},
	Forbidden:            {403, "Not allowed", 0},
	RowLeased:            {409, "Another attempt is working on this row", 0},
	NotReady:             {503, "Not ready", 0},
	ConfigInvalid:        {503, "A configuration object is invalid", 0},
	Overloaded:           {503, "The service is overloaded; retry shortly", 0},
	Internal:             {500, "Internal error", 0},
}

// Codes returns every code in the table (for docs and tests).
func Codes() []Code {
	out := make([]Code, 0, len(table))
	for c := range table {
		out = append(out, c)
	}
	return out
}

// Lookup returns the status and title of a code; unknown codes are INTERNAL.
func Lookup(c Code) Spec {
	if s, ok := table[c]; ok {
		return s
	}
	return table[Internal]
}

// FieldError names one invalid field of a request.
type FieldError struct {
	Field  string `json:"field"` // JSON pointer into the request body, e.g. /rows/2/prompt
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// Coded is an error that carries its code. *Error is one; adapters classify
// their own failures with others (the storage adapter: a failed read is
// STORAGE_UNAVAILABLE, a failed write GCS_WRITE_FAILED), so handlers pass
// those on without wrapping them.
type Coded interface {
	error
	ProblemCode() Code
}

// Error is a failure with a stable code. Detail is safe to show to clients; Err
// (the cause) is only logged.
type Error struct {
	Code   Code
	Detail string
	Fields []FieldError
	// Extra members of the problem document (e.g. estimate and remaining budget).
	Extra map[string]any
	// RetryAfter, when positive, becomes a Retry-After header (seconds).
	RetryAfter int
	Err        error
}

func (e *Error) Error() string {
	msg := string(e.Code)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// ProblemCode implements Coded.
func (e *Error) ProblemCode() Code { return e.Code }

// New returns an error with a code and a client-safe detail.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// Wrap attaches a code and a client-safe detail to a cause that is only logged.
func Wrap(code Code, cause error, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...), Err: cause}
}

// CodeOf returns the code of err: the code of the first Coded error in its
// chain, INTERNAL for anything else, and "" for nil.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	if c := coded(err); c != nil {
		return c.ProblemCode()
	}
	return Internal
}

// coded returns the first Coded error in err's chain, or nil.
func coded(err error) Coded {
	var c Coded
	if errors.As(err, &c) {
		return c
	}
	return nil
}
