package ledger

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Op is who is changing the ledger, when, and under which request: the audit
// trail's who/when/why.
type Op struct {
	Actor     string
	RequestID string
	Now       time.Time
}

// maxHistory bounds a row's audit trail; rows see a handful of writes, so this
// only matters for a row retried many times.
const maxHistory = 100

// record stamps a change: the version goes up by one and the audit trail grows.
func record(r *Row, op Op, action, detail string) {
	r.Version++
	r.UpdatedAt = op.Now
	r.History = append(r.History, Change{
		Version: r.Version, At: op.Now, Actor: op.Actor, Action: action,
		RequestID: op.RequestID, Detail: detail,
	})
	if over := len(r.History) - maxHistory; over > 0 {
		r.History = append([]Change(nil), r.History[over:]...)
	}
}

// ErrLeaseLost means the attempt making a transition no longer holds the row:
// another attempt took over its expired lease (or has released the row since).
// The stale attempt's work is superseded; it must write nothing more.
var ErrLeaseLost = errors.New("ledger: the row is no longer leased to this attempt")

// holds checks that holder is the attempt the row is leased to. An expired
// lease nobody took over is still the holder's: its late results are welcome.
func holds(r Row, holder string) error {
	if r.Lease == nil || r.Lease.Holder != holder {
		return ErrLeaseLost
	}
	return nil
}

// Start claims the row for an attempt: running, leased to holder until now+lease.
// A live lease of another holder wins (ErrLeaseHeld); an expired one is taken
// over. A final row is left alone (ErrTerminal).
func Start(r Row, op Op, holder string, lease time.Duration) (Row, error) {
	if r.Status.Terminal() {
		return r, ErrTerminal
	}
	if r.CancelRequested && (r.Lease == nil || !op.Now.Before(r.Lease.Until) || r.Lease.Holder == holder) {
		// Cancelled while its last attempt ran and that attempt is gone: the
		// row ends here instead of paying the model again.
		return finish(r, op, nil)
	}
	detail := fmt.Sprintf("attempt %d", r.Attempts+1)
	if r.Lease != nil && r.Lease.Holder != holder {
		if op.Now.Before(r.Lease.Until) {
			return r, ErrLeaseHeld
		}
		detail += " took over an expired lease"
	}
	r = r.Clone()
	r.Status = Running
	r.Attempts++
	r.Lease = &Lease{Holder: holder, Until: op.Now.Add(lease)}
	for i := range r.Variants {
		if !r.Variants[i].Status.Terminal() {
			r.Variants[i].Status = Running
		}
	}
	record(&r, op, "started", detail)
	return r, nil
}

// VariantResult is the outcome of one variant: an object, or a failure.
type VariantResult struct {
	Index   int
	Object  string
	CostUSD float64
	Failure *Failure
	// Seed is the seed the model was asked with, if any.
	Seed *int64
}

// RecordVariants stores the finished variants of the attempt holder. A variant
// already final keeps its first outcome, so recording the same result twice
// changes nothing. An attempt that lost the row is refused (ErrLeaseLost).
func RecordVariants(r Row, op Op, holder string, results []VariantResult) (Row, error) {
	if err := holds(r, holder); err != nil {
		return r, err
	}
	var notes []string
	out := r.Clone()
	for _, res := range results {
		if res.Index < 0 || res.Index >= len(out.Variants) || out.Variants[res.Index].Status.Terminal() {
			continue
		}
		v := &out.Variants[res.Index]
		if res.Failure != nil {
			// A failed variant may still have been billed: a model answer
			// refused after the call (not an image the platform stores).
			f := *res.Failure
			v.Status, v.Error, v.Seed = Failed, &f, res.Seed
			v.CostUSD += res.CostUSD
			notes = append(notes, fmt.Sprintf("v%d failed %s", res.Index, f.Code))
		} else {
			v.Status, v.Object, v.Error, v.Seed = Done, res.Object, nil, res.Seed
			v.CostUSD += res.CostUSD
			notes = append(notes, fmt.Sprintf("v%d done", res.Index))
		}
	}
	if len(notes) == 0 {
		return r, ErrNoChange
	}
	record(&out, op, "variants", strings.Join(notes, ", "))
	return out, nil
}

// Release gives the row back after a retryable failure: the holder's lease is
// dropped so the next attempt starts at once, and the failure shows while it
// retries. A row held by another attempt is refused (ErrLeaseLost); one that
// nobody holds is free already (ErrNoChange).
func Release(r Row, op Op, holder string, why Failure) (Row, error) {
	if r.Status.Terminal() || r.Lease == nil {
		return r, ErrNoChange
	}
	if err := holds(r, holder); err != nil {
		return r, err
	}
	out := r.Clone()
	out.Lease = nil
	why.Message += "; retrying"
	out.Error = &why
	record(&out, op, "retrying", why.Code+": "+why.Message)
	return out, nil
}

// GaveUp is the final form of a failure that would have been retried, had
// attempts been left: it says so instead of "retrying".
func GaveUp(why Failure, attempts int) Failure {
	why.Message = fmt.Sprintf("%s; gave up after %d attempts", why.Message, attempts)
	return why
}

// Finish makes the row final at the end of the attempt holder. Variants still
// open get pending (the reason work stopped), or are cancelled when a cancel
// was requested. The row is done when any variant is, cancelled when it was
// cancelled, failed otherwise. An attempt that lost the row is refused
// (ErrLeaseLost): the attempt holding it now decides how the row ends.
func Finish(r Row, op Op, holder string, pending *Failure) (Row, error) {
	if r.Status.Terminal() {
		return r, ErrNoChange
	}
	if err := holds(r, holder); err != nil {
		return r, err
	}
	return finish(r, op, pending)
}

// Close makes final a row that no attempt holds: one stuck without attempts
// left, or with a cancel pending. While an attempt's lease is live the row is
// that attempt's to finish (ErrLeaseHeld).
func Close(r Row, op Op, pending *Failure) (Row, error) {
	if r.Status.Terminal() {
		return r, ErrNoChange
	}
	if r.Lease != nil && op.Now.Before(r.Lease.Until) {
		return r, ErrLeaseHeld
	}
	return finish(r, op, pending)
}

// finish is Finish without the lease check.
func finish(r Row, op Op, pending *Failure) (Row, error) {
	if r.Status.Terminal() {
		return r, ErrNoChange
	}
	out := r.Clone()
	anyDone := false
	var firstErr *Failure
	for i := range out.Variants {
		v := &out.Variants[i]
		if !v.Status.Terminal() {
			switch {
			case out.CancelRequested:
				v.Status = Cancelled
			case pending != nil:
				f := *pending
				v.Status, v.Error = Failed, &f
			default:
				v.Status, v.Error = Failed, &Failure{Code: "INTERNAL", Message: "the attempt ended without a result"}
			}
		}
		if v.Status == Done {
			anyDone = true
		}
		if v.Error != nil && firstErr == nil {
			firstErr = v.Error
		}
	}
	switch {
	case out.CancelRequested:
		out.Status = Cancelled
		out.Error = nil
	case anyDone:
		out.Status = Done
		out.Error = nil
	default:
		out.Status = Failed
		out.Error = firstErr
	}
	out.Lease = nil
	record(&out, op, "finished", string(out.Status))
	return out, nil
}

// Cancel stops a row: one nobody is working on becomes cancelled at once; one
// that is running is asked to stop after its current variants.
func Cancel(r Row, op Op) (Row, error) {
	live := r.Lease != nil && op.Now.Before(r.Lease.Until)
	if r.Status.Terminal() || (r.CancelRequested && live) {
		return r, ErrNoChange
	}
	out := r.Clone()
	out.CancelRequested = true
	if out.Status == Queued || !live {
		// Nobody is working on it: it ends now.
		return finish(out, op, nil)
	}
	record(&out, op, "cancel_requested", "")
	return out, nil
}

// Counts tallies rows and variants by status.
type Counts struct {
	Queued    int `json:"queued"`
	Running   int `json:"running"`
	Done      int `json:"done"`
	Failed    int `json:"failed"`
	Cancelled int `json:"cancelled"`
}

func (c *Counts) add(s Status) {
	switch s {
	case Queued:
		c.Queued++
	case Running:
		c.Running++
	case Done:
		c.Done++
	case Failed:
		c.Failed++
	case Cancelled:
		c.Cancelled++
	}
}

// Total is the number of things counted.
func (c Counts) Total() int { return c.Queued + c.Running + c.Done + c.Failed + c.Cancelled }

// Summary is a batch's totals, derived from its rows.
type Summary struct {
	Status   Status  `json:"status"`
	Rows     Counts  `json:"rows"`
	Variants Counts  `json:"variants"`
	CostUSD  float64 `json:"costUsd"`
}

// Summarize derives the batch status from its rows: queued until a row starts,
// running until every row is final, then cancelled when a cancel stopped some
// variant (the images made before it are kept and listed all the same), done
// when any image was made, failed otherwise. A row cancelled while its last
// variants were being made, all of them made, stopped nothing: it does not
// make the batch read cancelled (nor, after a retry made the rest, keep it so).
func Summarize(rows []Row) Summary {
	var s Summary
	for _, r := range rows {
		s.Rows.add(r.Status)
		for _, v := range r.Variants {
			s.Variants.add(v.Status)
		}
		s.CostUSD += r.CostUSD()
	}
	// Budgets count micro-dollars: a sum of float prices is rounded to them,
	// so totals read 0.117, not 0.11699999999999999.
	s.CostUSD = math.Round(s.CostUSD*1e6) / 1e6
	switch {
	case s.Rows.Queued == len(rows):
		s.Status = Queued
	case s.Rows.Queued+s.Rows.Running > 0:
		s.Status = Running
	case s.Variants.Cancelled > 0:
		s.Status = Cancelled
	case s.Variants.Done > 0:
		s.Status = Done
	default:
		s.Status = Failed
	}
	return s
}
