package main

import (
	"fmt"
	"time"

	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/problem"
)

// policy says when a row counts as stuck and when it has had enough attempts.
type policy struct {
	// stuckAfter is how long a row may sit queued (or running without a
	// lease, waiting for the queue's retry) without any write.
	stuckAfter time.Duration
	// maxAttempts is TASKS_MAX_ATTEMPTS, the queue's attempt budget.
	maxAttempts int
}

// action is what the job does to one row.
type action int

const (
	keep    action = iota // live, final, or not stuck yet
	requeue               // stuck with attempts left: create its task again
	giveUp                // stuck with no attempts left: fail it
	cancel                // stuck with a cancel pending: finish it as cancelled
)

func (a action) String() string {
	return [...]string{"keep", "requeue", "give up", "cancel"}[a]
}

// verdict is the pure rule for one row at now. createdAt is the batch's
// manifest time, the age of a row nobody has written yet.
func verdict(r ledger.Row, createdAt, now time.Time, p policy) (action, string) {
	if r.Status.Terminal() {
		return keep, ""
	}
	why := stuck(r, createdAt, now, p)
	switch {
	case why == "":
		return keep, ""
	case r.CancelRequested:
		return cancel, why
	case r.Attempts >= p.maxAttempts:
		return giveUp, why
	default:
		return requeue, why
	}
}

// stuck says why a live row is stuck, or "" when it is not.
func stuck(r ledger.Row, createdAt, now time.Time, p policy) string {
	last := r.UpdatedAt
	if last.IsZero() {
		last = createdAt
	}
	idle := now.Sub(last)
	switch {
	case r.Status == ledger.Running && r.Lease != nil:
		// The lease outlives the delivery's dispatch deadline: once it has
		// expired, the attempt that held it is gone.
		if !now.Before(r.Lease.Until) {
			return fmt.Sprintf("lease of %s expired %s ago", r.Lease.Holder, now.Sub(r.Lease.Until).Round(time.Second))
		}
		return ""
	case r.Status == ledger.Running:
		// Released after a retryable failure: the queue retries it with backoff.
		if idle >= p.stuckAfter {
			return fmt.Sprintf("released and idle for %s", idle.Round(time.Second))
		}
		return ""
	default:
		if idle >= p.stuckAfter {
			return fmt.Sprintf("queued for %s", idle.Round(time.Second))
		}
		return ""
	}
}

// gaveUp is the failure of a row that used up its attempts.
func gaveUp(attempts int) *ledger.Failure {
	return &ledger.Failure{Code: string(problem.ModelFailed), Message: fmt.Sprintf("gave up after %d attempts", attempts)}
}

// settle is the transition of a giveUp or cancel verdict, re-judged on the row
// as it is now (the store may re-apply it after a lost race): a row that an
// attempt has meanwhile claimed or finished is left alone (ErrNoChange).
func settle(want action, createdAt time.Time, op ledger.Op, p policy) func(ledger.Row) (ledger.Row, error) {
	return func(r ledger.Row) (ledger.Row, error) {
		if got, _ := verdict(r, createdAt, op.Now, p); got != want {
			return r, ledger.ErrNoChange
		}
		switch want {
		case giveUp:
			return ledger.Close(r, op, gaveUp(r.Attempts))
		case cancel:
			return ledger.Close(r, op, nil)
		default:
			return r, ledger.ErrNoChange
		}
	}
}
