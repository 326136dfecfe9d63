// Package notify delivers the completion notifications of a finished batch: a
// signed webhook POST and a write-back of one row per batch row to a Google
// Sheet. The batch's finisher calls each delivery once per batch; each
// delivery retries transient failures with exponential backoff and jitter
// (gax) within a time bound, and returns an Outcome for the ledger instead of
// an error: a notification that fails never fails the batch.
//
// Webhook deliveries carry the same X-Assetgen-Delivery id on every attempt
// (and every repeat of a batch's announcement), so a receiver that saw an
// attempt whose answer was lost can drop the retry. The Sheets write-back
// does that itself: each row carries its delivery id in the column after its
// values, and a write appends only the rows whose ids the sheet lacks.
// Webhook URLs are user input: send through refs.SafeClient, which applies the
// SSRF address policy at dial time; CheckWebhookURL and SheetTarget.Validate
// are the checks at submit.
package notify

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/googleapis/gax-go/v2"
)

// Kinds and statuses of an Outcome.
const (
	KindWebhook = "webhook"
	KindSheet   = "sheet"

	StatusDelivered = "delivered"
	StatusFailed    = "failed"
)

// Defaults.
const (
	// DefaultMaxElapsed bounds a delivery's attempts and pauses when the
	// constructor is given zero or less.
	DefaultMaxElapsed = 30 * time.Second
	// MaxRetryAfter caps how long a Retry-After header can make a delivery
	// wait before its next attempt.
	MaxRetryAfter = 30 * time.Second
)

// Outcome records one delivery for the ledger and the batch state.
type Outcome struct {
	Kind     string    `json:"kind"`            // "webhook" or "sheet"
	Target   string    `json:"target"`          // the URL, or "spreadsheetId!range"
	Status   string    `json:"status"`          // "delivered" or "failed"
	Attempts int       `json:"attempts"`        // requests sent (or tried)
	Code     int       `json:"code,omitempty"`  // last HTTP status
	Error    string    `json:"error,omitempty"` // why it failed (no secrets, no resolved addresses)
	At       time.Time `json:"at"`              // when the outcome was known
	// Retryable says the delivery failed for a reason a later retry may fix:
	// 408, 429, 5xx or a network failure that outlasted the time bound, or a
	// cancelled context.
	Retryable bool `json:"retryable,omitempty"`
}

// Delivered reports whether the delivery succeeded.
func (o Outcome) Delivered() bool { return o.Status == StatusDelivered }

// defaultBackoff is the pause schedule between attempts; gax adds full jitter
// (each pause is uniform in [0, current)).
func defaultBackoff() gax.Backoff {
	return gax.Backoff{Initial: 500 * time.Millisecond, Max: 8 * time.Second, Multiplier: 2}
}

// retryStatus is the one place that says which HTTP answers deserve another
// attempt: 408, 429 and 5xx. Any other non-2xx would fail the same way again.
func retryStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// retryAfter reads a Retry-After header (seconds or an HTTP date) as a pause,
// capped at MaxRetryAfter; ok is false when there is none or it is unreadable.
func retryAfter(h http.Header, now time.Time) (d time.Duration, ok bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0, false
		}
		d = time.Duration(s) * time.Second
	} else if at, err := http.ParseTime(v); err == nil {
		d = max(at.Sub(now), 0)
	} else {
		return 0, false
	}
	return min(d, MaxRetryAfter), true
}

// retrier runs attempts until one succeeds, one fails for good, or the next
// pause would pass the deadline. It owns the backoff state of one delivery.
type retrier struct {
	ctx      context.Context
	deadline time.Time
	bo       gax.Backoff // a copy: a Backoff keeps state
}

func newRetrier(ctx context.Context, maxElapsed time.Duration, bo gax.Backoff) *retrier {
	return &retrier{ctx: ctx, deadline: time.Now().Add(maxElapsed), bo: bo}
}

// attemptContext bounds one attempt by the delivery's deadline.
func (r *retrier) attemptContext() (context.Context, context.CancelFunc) {
	return context.WithDeadline(r.ctx, r.deadline)
}

// expired reports whether the delivery's time is up: an attempt that failed
// then was cut short by the bound, not by the receiver.
func (r *retrier) expired() bool { return !time.Now().Before(r.deadline) }

// wait pauses before the next attempt: the server's Retry-After when it gave
// one, else the next backoff. It returns false, without waiting, when the
// pause would end past the deadline or the context is done.
func (r *retrier) wait(hint time.Duration, hinted bool) bool {
	pause := r.bo.Pause()
	if hinted {
		pause = hint
	}
	if r.ctx.Err() != nil || time.Now().Add(pause).After(r.deadline) {
		return false
	}
	return gax.Sleep(r.ctx, pause) == nil
}

// networkReason describes a transport failure without naming an address, a
// host or the URL (which may hold a token): it goes to the ledger.
func networkReason(ctx context.Context, err error, refused bool) string {
	var (
		ne net.Error
		de *net.DNSError
	)
	switch {
	case refused:
		return "the URL leads to an address that is not publicly reachable"
	case ctx.Err() != nil:
		return "cancelled before delivery"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	case errors.As(err, &de):
		return "the host name did not resolve"
	default:
		return "the connection failed"
	}
}
