package refs

import (
	"errors"
	"fmt"

	"github.com/assetgen/assetgen/shared/problem"
)

// failure is why one reference cannot be used: a problem code, a reason that is
// safe to show the user (it never names an address the user did not supply) and
// the cause, which is only logged.
type failure struct {
	code   problem.Code
	reason string
	err    error
}

func (f *failure) Error() string {
	if f.err == nil {
		return f.reason
	}
	return f.reason + ": " + f.err.Error()
}

func (f *failure) Unwrap() error { return f.err }

func fail(code problem.Code, cause error, format string, args ...any) *failure {
	return &failure{code: code, reason: fmt.Sprintf(format, args...), err: cause}
}

// asProblem turns a failure to use rawURL into the problem the API answers with:
// the detail names the URL as the user wrote it and the reason, nothing else;
// the cause (which may name resolved addresses and redirect targets) goes in
// Err, for logs only.
func asProblem(rawURL string, err error) *problem.Error {
	var f *failure
	if !errors.As(err, &f) {
		f = fail(problem.RefFetchFailed, err, "could not be fetched")
	}
	return &problem.Error{
		Code:   f.code,
		Detail: fmt.Sprintf("reference %s %s", rawURL, f.reason),
		Err:    f.err,
	}
}

// sizeText renders a byte count the way people read limits.
func sizeText(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	if n >= 1<<10 && n%(1<<10) == 0 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
