package refs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/assetgen/assetgen/shared/problem"
)

// statusError is a non-2xx answer.
type statusError struct{ status int }

func (e *statusError) Error() string {
	return fmt.Sprintf("HTTP %d %s", e.status, http.StatusText(e.status))
}

// timeoutError is an attempt that ran out of its own time (not the caller's).
type timeoutError struct{ err error }

func (e *timeoutError) Error() string { return "timed out: " + e.err.Error() }
func (e *timeoutError) Unwrap() error { return e.err }

// redirectError is a redirect the fetcher will not follow.
type redirectError struct{ why string }

func (e *redirectError) Error() string { return "redirect refused: " + e.why }

// shouldRetry is the one place that decides which failed attempts deserve
// another: timeouts, 429 and 5xx. Everything else (refused addresses, 4xx,
// oversize or broken content) would fail the same way again.
func shouldRetry(err error) bool {
	var te *timeoutError
	if errors.As(err, &te) {
		return true
	}
	var se *statusError
	if errors.As(err, &se) {
		return se.status == http.StatusTooManyRequests || se.status >= 500
	}
	return false
}

// errDeadline is the cause of a Resolve's context ending at ResolveTimeout.
var errDeadline = errors.New("refs: the time allowed for the batch's references ran out")

// lateError is a fetch that the Resolve's deadline cut short.
type lateError struct{ err error }

func (e *lateError) Error() string { return "out of time: " + e.err.Error() }
func (e *lateError) Unwrap() error { return e.err }

// late marks err as the deadline's doing when the Resolve's time ran out and
// err is not a verdict on the reference itself.
func late(ctx context.Context, err error) error {
	var fl *failure
	if errors.As(err, &fl) || !errors.Is(context.Cause(ctx), errDeadline) {
		return err
	}
	return &lateError{err: err}
}

// attemptError marks an attempt's error as a timeout when the attempt's own
// deadline (or a network timeout) caused it; when the caller's context is done,
// the error stays as it is and is not retried, and so do the failures that are
// not the transfer's (a check, the bucket, the wait for the limits).
func attemptError(ctx context.Context, err error) error {
	var (
		fl *failure
		se *storeError
		qe *queuedError
	)
	if errors.As(err, &fl) || errors.As(err, &se) || errors.As(err, &qe) || ctx.Err() != nil {
		return err
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &timeoutError{err: err}
	}
	return err
}

// describe turns the last attempt's error into a failure whose reason is safe
// to show: it says what went wrong, never which address or host a redirect or a
// DNS answer led to.
func describe(err error, attempts int, o Options) *failure {
	after := ""
	if attempts > 1 {
		after = fmt.Sprintf(" (%d attempts)", attempts)
	}
	var (
		fl *failure
		le *lateError
		qe *queuedError
		re *refusedError
		rd *redirectError
		te *timeoutError
		se *statusError
		de *net.DNSError
	)
	switch {
	case errors.As(err, &fl):
		return fl
	case errors.As(err, &le) && errors.As(err, &qe):
		return fail(problem.RefFetchFailed, err, "could not be fetched within %s: this instance was busy with other references; retry later", o.ResolveTimeout)
	case errors.As(err, &le):
		return fail(problem.RefFetchFailed, err, "did not finish within %s, the time allowed for a batch's references", o.ResolveTimeout)
	case errors.As(err, &re):
		return fail(problem.RefFetchFailed, err, "could not be fetched: it leads to an address that is not publicly reachable")
	case errors.As(err, &rd):
		return fail(problem.RefFetchFailed, err, "could not be fetched: %s", rd.why)
	case errors.As(err, &te):
		return fail(problem.RefFetchFailed, err, "could not be fetched: timed out after %s%s", o.Timeout, after)
	case errors.As(err, &se):
		return fail(problem.RefFetchFailed, err, "could not be fetched: the server answered %d %s%s", se.status, http.StatusText(se.status), after)
	case errors.As(err, &de):
		return fail(problem.RefFetchFailed, err, "could not be fetched: a host name did not resolve")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fail(problem.RefFetchFailed, err, "could not be fetched: the request was cancelled")
	default:
		return fail(problem.RefFetchFailed, err, "could not be fetched: the connection failed")
	}
}
