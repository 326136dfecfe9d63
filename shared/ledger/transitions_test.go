package ledger_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/ledger"
)

var t0 = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

const (
	holderA = "holder-a"
	holderB = "holder-b"
	lease   = 5 * time.Minute
)

func opAt(now time.Time) ledger.Op {
	return ledger.Op{Actor: "generate/test", RequestID: "req-42", Now: now}
}

// queued is an untouched row of n variants.
func queued(n int) ledger.Row {
	return ledger.NewRow(ledger.ManifestRow{Index: 4, Variants: n})
}

// running is a row started once by holder, leased until until, with the given
// variant statuses and one history entry.
func running(holder string, until time.Time, vs ...ledger.Status) ledger.Row {
	r := ledger.Row{Index: 4, Status: ledger.Running, Attempts: 1, Version: 1, UpdatedAt: t0.Add(-time.Minute),
		History: []ledger.Change{{Version: 1, At: t0.Add(-time.Minute), Actor: "generate/" + holder, Action: "started", Detail: "attempt 1"}}}
	if holder != "" {
		r.Lease = &ledger.Lease{Holder: holder, Until: until}
	}
	for i, s := range vs {
		v := ledger.Variant{Status: s}
		switch s {
		case ledger.Done:
			v.Object = fmt.Sprintf("batches/b/images/r04-v%d.png", i)
			v.CostUSD = 0.039
		case ledger.Failed:
			v.Error = &ledger.Failure{Code: "MODEL_SAFETY_BLOCKED", Message: fmt.Sprintf("v%d blocked", i)}
		}
		r.Variants = append(r.Variants, v)
	}
	return r
}

// final is a terminal row.
func final(s ledger.Status) ledger.Row {
	vs := map[ledger.Status]ledger.Status{ledger.Done: ledger.Done, ledger.Failed: ledger.Failed, ledger.Cancelled: ledger.Cancelled}
	r := running("", time.Time{}, vs[s], vs[s])
	r.Status = s
	return r
}

// deepCopy copies a row without Row.Clone, so purity checks do not trust the
// code under test. nil and empty slices are kept apart.
func deepCopy(r ledger.Row) ledger.Row {
	c := r
	if r.Variants != nil {
		c.Variants = make([]ledger.Variant, len(r.Variants))
		for i, v := range r.Variants {
			c.Variants[i] = v
			if v.Error != nil {
				e := *v.Error
				c.Variants[i].Error = &e
			}
		}
	}
	if r.History != nil {
		c.History = make([]ledger.Change, len(r.History))
		copy(c.History, r.History)
	}
	if r.Lease != nil {
		l := *r.Lease
		c.Lease = &l
	}
	if r.Error != nil {
		e := *r.Error
		c.Error = &e
	}
	return c
}

func statuses(r ledger.Row) []ledger.Status {
	out := make([]ledger.Status, len(r.Variants))
	for i, v := range r.Variants {
		out[i] = v.Status
	}
	return out
}

func last(r ledger.Row) ledger.Change {
	if len(r.History) == 0 {
		return ledger.Change{}
	}
	return r.History[len(r.History)-1]
}

// assertRecorded checks the audit stamp every successful transition leaves.
func assertRecorded(is *is.I, in, out ledger.Row, now time.Time, action string) {
	is.Helper()
	is.Equal(out.Version, in.Version+1)                              // version goes up by one
	is.Equal(out.UpdatedAt, now)                                     // updatedAt is the op's time
	is.Equal(len(out.History), len(in.History)+1)                    // one history entry added
	is.True(slices.Equal(out.History[:len(in.History)], in.History)) // older history kept as is
	h := last(out)
	is.Equal(h.Version, out.Version)   // history entry carries the new version
	is.Equal(h.At, now)                // history entry time
	is.Equal(h.Actor, "generate/test") // history entry actor
	is.Equal(h.RequestID, "req-42")    // history entry request id
	is.Equal(h.Action, action)         // history entry action
}

func TestNewRow(t *testing.T) {
	tests := []struct {
		name     string
		mr       ledger.ManifestRow
		variants int
	}{
		{"one variant", ledger.ManifestRow{Index: 0, Variants: 1}, 1},
		{"three variants", ledger.ManifestRow{Index: 7, Variants: 3, Prompt: "p"}, 3},
		{"no variants", ledger.ManifestRow{Index: 2}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			r := ledger.NewRow(tt.mr)
			is.Equal(r.Index, tt.mr.Index)         // index from the manifest
			is.Equal(r.Status, ledger.Queued)      // untouched rows are queued
			is.Equal(len(r.Variants), tt.variants) // one variant per image
			for _, v := range r.Variants {
				is.Equal(v, ledger.Variant{Status: ledger.Queued}) // variants queued, empty
			}
			is.Equal(r.Version, 0)      // never written
			is.Equal(r.Attempts, 0)     // never attempted
			is.True(r.Lease == nil)     // nobody holds it
			is.True(r.Error == nil)     // no error
			is.Equal(len(r.History), 0) // no history
			is.True(!r.CancelRequested) // not cancelled
		})
	}
}

func TestClone(t *testing.T) {
	rich := running(holderA, t0.Add(lease), ledger.Done, ledger.Failed, ledger.Running)
	rich.Error = &ledger.Failure{Code: "MODEL_RATE_LIMIT", Message: "slow down"}
	tests := []struct {
		name   string
		row    ledger.Row
		mutate func(c *ledger.Row)
	}{
		{"variant status", rich, func(c *ledger.Row) { c.Variants[0].Status = ledger.Queued }},
		{"variant error", rich, func(c *ledger.Row) { c.Variants[1].Error.Message = "changed" }},
		{"lease", rich, func(c *ledger.Row) { c.Lease.Holder = "thief" }},
		{"row error", rich, func(c *ledger.Row) { c.Error.Code = "CHANGED" }},
		{"history entry", rich, func(c *ledger.Row) { c.History[0].Action = "rewritten" }},
		{"history append", rich, func(c *ledger.Row) { c.History = append(c.History, ledger.Change{Version: 99}) }},
		{"queued row", queued(3), func(c *ledger.Row) { c.Variants[2].Status = ledger.Done }},
		{"empty row", ledger.Row{}, func(c *ledger.Row) { c.Status = ledger.Done }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			before := deepCopy(tt.row)
			c := tt.row.Clone()
			is.True(reflect.DeepEqual(c, tt.row)) // clone equals the original
			tt.mutate(&c)
			is.True(reflect.DeepEqual(tt.row, before)) // changing the clone leaves the original alone
			is.True(!reflect.DeepEqual(c, tt.row))     // and the clone did change
		})
	}
}

func TestStart(t *testing.T) {
	released := running(holderA, time.Time{}, ledger.Running, ledger.Running)
	released.Lease = nil
	released.Error = &ledger.Failure{Code: "MODEL_RATE_LIMIT", Message: "the attempt failed; retrying"}

	tests := []struct {
		name         string
		row          ledger.Row
		holder       string
		wantErr      error
		wantAttempts int
		wantVariants []ledger.Status
		wantDetail   string // substring of the history detail
		takeover     bool
	}{
		{"queued row", queued(3), holderA, nil, 1,
			[]ledger.Status{ledger.Running, ledger.Running, ledger.Running}, "attempt 1", false},
		{"same holder restarts", running(holderA, t0.Add(time.Minute), ledger.Running), holderA, nil, 2,
			[]ledger.Status{ledger.Running}, "attempt 2", false},
		{"another holder's lease expired", running(holderB, t0.Add(-time.Second), ledger.Running, ledger.Queued), holderA, nil, 2,
			[]ledger.Status{ledger.Running, ledger.Running}, "attempt 2", true},
		{"another holder's lease expires exactly now", running(holderB, t0, ledger.Running), holderA, nil, 2,
			[]ledger.Status{ledger.Running}, "attempt 2", true},
		{"released row (no lease)", released, holderB, nil, 2,
			[]ledger.Status{ledger.Running, ledger.Running}, "attempt 2", false},
		{"final variants keep their status", running(holderB, t0.Add(-time.Hour), ledger.Done, ledger.Failed, ledger.Queued, ledger.Cancelled), holderA, nil, 2,
			[]ledger.Status{ledger.Done, ledger.Failed, ledger.Running, ledger.Cancelled}, "attempt 2", true},
		{"another holder's lease is live", running(holderB, t0.Add(time.Second), ledger.Running), holderA, ledger.ErrLeaseHeld, 0, nil, "", false},
		{"another holder's lease is live for long", running(holderB, t0.Add(time.Hour), ledger.Running), holderA, ledger.ErrLeaseHeld, 0, nil, "", false},
		{"done row", final(ledger.Done), holderA, ledger.ErrTerminal, 0, nil, "", false},
		{"failed row", final(ledger.Failed), holderA, ledger.ErrTerminal, 0, nil, "", false},
		{"cancelled row", final(ledger.Cancelled), holderA, ledger.ErrTerminal, 0, nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			before := deepCopy(tt.row)

			out, err := ledger.Start(tt.row, opAt(t0), tt.holder, lease)

			is.True(reflect.DeepEqual(tt.row, before)) // input not mutated
			if tt.wantErr != nil {
				is.True(errors.Is(err, tt.wantErr))     // refused with the right error
				is.True(reflect.DeepEqual(out, before)) // row handed back unchanged
				return
			}
			is.NoErr(err)                                                               // started
			is.Equal(out.Status, ledger.Running)                                        // row is running
			is.Equal(out.Attempts, tt.wantAttempts)                                     // attempts counted
			is.Equal(out.Lease, &ledger.Lease{Holder: tt.holder, Until: t0.Add(lease)}) // leased to holder until now+lease
			is.Equal(statuses(out), tt.wantVariants)                                    // open variants running, final ones kept
			is.Equal(out.Error, tt.row.Error)                                           // a retry's failure stays visible
			assertRecorded(is, tt.row, out, t0, "started")
			is.True(strings.Contains(last(out).Detail, tt.wantDetail))                              // detail names the attempt
			is.Equal(strings.Contains(last(out).Detail, "took over an expired lease"), tt.takeover) // takeover noted only when it happened
		})
	}
}

func TestRecordVariants(t *testing.T) {
	blocked := &ledger.Failure{Code: "MODEL_SAFETY_BLOCKED", Message: "blocked"}
	tests := []struct {
		name         string
		row          ledger.Row
		results      []ledger.VariantResult
		wantErr      error
		wantVariants []ledger.Variant
		wantDetail   string
	}{
		{
			name:         "one done",
			row:          running(holderA, t0.Add(lease), ledger.Running, ledger.Running),
			results:      []ledger.VariantResult{{Index: 1, Object: "o1.png", CostUSD: 0.039}},
			wantVariants: []ledger.Variant{{Status: ledger.Running}, {Status: ledger.Done, Object: "o1.png", CostUSD: 0.039}},
			wantDetail:   "v1 done",
		},
		{
			name:         "one failure",
			row:          running(holderA, t0.Add(lease), ledger.Running, ledger.Running),
			results:      []ledger.VariantResult{{Index: 0, Failure: blocked}},
			wantVariants: []ledger.Variant{{Status: ledger.Failed, Error: &ledger.Failure{Code: "MODEL_SAFETY_BLOCKED", Message: "blocked"}}, {Status: ledger.Running}},
			wantDetail:   "v0 failed MODEL_SAFETY_BLOCKED",
		},
		{
			name: "several at once",
			row:  running(holderA, t0.Add(lease), ledger.Running, ledger.Running, ledger.Running),
			results: []ledger.VariantResult{
				{Index: 2, Object: "o2.png", CostUSD: 0.1}, {Index: 0, Failure: blocked},
			},
			wantVariants: []ledger.Variant{
				{Status: ledger.Failed, Error: &ledger.Failure{Code: "MODEL_SAFETY_BLOCKED", Message: "blocked"}},
				{Status: ledger.Running},
				{Status: ledger.Done, Object: "o2.png", CostUSD: 0.1},
			},
			wantDetail: "v2 done, v0 failed MODEL_SAFETY_BLOCKED",
		},
		{
			name:         "same index twice in one call: first wins",
			row:          running(holderA, t0.Add(lease), ledger.Running),
			results:      []ledger.VariantResult{{Index: 0, Object: "first.png"}, {Index: 0, Object: "second.png"}},
			wantVariants: []ledger.Variant{{Status: ledger.Done, Object: "first.png"}},
			wantDetail:   "v0 done",
		},
		{
			name:         "out-of-range indexes ignored next to a valid one",
			row:          running(holderA, t0.Add(lease), ledger.Running),
			results:      []ledger.VariantResult{{Index: -1, Object: "neg.png"}, {Index: 1, Object: "far.png"}, {Index: 0, Object: "ok.png"}},
			wantVariants: []ledger.Variant{{Status: ledger.Done, Object: "ok.png"}},
			wantDetail:   "v0 done",
		},
		{
			name:    "index past the end only",
			row:     running(holderA, t0.Add(lease), ledger.Running, ledger.Running),
			results: []ledger.VariantResult{{Index: 2, Object: "x.png"}},
			wantErr: ledger.ErrNoChange,
		},
		{
			name:    "negative index only",
			row:     running(holderA, t0.Add(lease), ledger.Running),
			results: []ledger.VariantResult{{Index: -1, Object: "x.png"}},
			wantErr: ledger.ErrNoChange,
		},
		{
			name:    "no results",
			row:     running(holderA, t0.Add(lease), ledger.Running),
			results: nil,
			wantErr: ledger.ErrNoChange,
		},
		{
			name:    "a final variant keeps its first outcome",
			row:     running(holderA, t0.Add(lease), ledger.Done, ledger.Failed, ledger.Cancelled),
			results: []ledger.VariantResult{{Index: 0, Object: "other.png"}, {Index: 1, Object: "late.png"}, {Index: 2, Failure: blocked}},
			wantErr: ledger.ErrNoChange,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			before := deepCopy(tt.row)

			out, err := ledger.RecordVariants(tt.row, opAt(t0), holderA, tt.results)

			is.True(reflect.DeepEqual(tt.row, before)) // input not mutated
			if tt.wantErr != nil {
				is.True(errors.Is(err, tt.wantErr))     // nothing to record
				is.True(reflect.DeepEqual(out, before)) // row handed back identical
				return
			}
			is.NoErr(err)                           // recorded
			is.Equal(out.Variants, tt.wantVariants) // variant outcomes
			is.Equal(out.Status, tt.row.Status)     // row status untouched
			is.Equal(out.Lease, tt.row.Lease)       // lease untouched
			assertRecorded(is, tt.row, out, t0, "variants")
			is.Equal(last(out).Detail, tt.wantDetail) // detail lists what changed
		})
	}
}

// TestRecordVariantsIdempotent: recording the same result again is ErrNoChange
// and leaves the row exactly as the first call made it.
func TestRecordVariantsIdempotent(t *testing.T) {
	tests := []struct {
		name   string
		result ledger.VariantResult
	}{
		{"done", ledger.VariantResult{Index: 0, Object: "batches/b/images/r04-v0.png", CostUSD: 0.039}},
		{"failed", ledger.VariantResult{Index: 1, Failure: &ledger.Failure{Code: "MODEL_FAILED", Message: "boom"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			r := running(holderA, t0.Add(lease), ledger.Running, ledger.Running)
			once, err := ledger.RecordVariants(r, opAt(t0), holderA, []ledger.VariantResult{tt.result})
			is.NoErr(err) // first record applies
			snapshot := deepCopy(once)

			twice, err := ledger.RecordVariants(once, opAt(t0.Add(time.Second)), holderA, []ledger.VariantResult{tt.result})
			is.True(errors.Is(err, ledger.ErrNoChange)) // second record is a no-op
			is.True(reflect.DeepEqual(twice, snapshot)) // returned row identical to the first result
			is.True(reflect.DeepEqual(once, snapshot))  // and the first result untouched
			is.Equal(twice.Version, r.Version+1)        // version bumped once only
		})
	}
}

// TestRecordVariantsCopiesFailure: the stored failure is a copy, not the caller's pointer.
func TestRecordVariantsCopiesFailure(t *testing.T) {
	is := is.New(t)
	f := &ledger.Failure{Code: "MODEL_FAILED", Message: "boom"}
	out, err := ledger.RecordVariants(running(holderA, t0.Add(lease), ledger.Running), opAt(t0), holderA, []ledger.VariantResult{{Index: 0, Failure: f}})
	is.NoErr(err) // recorded
	f.Message = "changed by the caller"
	is.Equal(out.Variants[0].Error.Message, "boom") // the row kept its own copy
}

func TestRelease(t *testing.T) {
	why := ledger.Failure{Code: "MODEL_RATE_LIMIT", Message: "the attempt failed"}
	tests := []struct {
		name    string
		row     ledger.Row
		holder  string
		wantErr error
	}{
		{"own lease is dropped", running(holderA, t0.Add(lease), ledger.Running), holderA, nil},
		{"own expired lease is dropped", running(holderA, t0.Add(-lease), ledger.Running), holderA, nil},
		{"another holder's live lease is refused", running(holderB, t0.Add(lease), ledger.Running), holderA, ledger.ErrLeaseLost},
		{"another holder's expired lease is refused", running(holderB, t0.Add(-lease), ledger.Running), holderA, ledger.ErrLeaseLost},
		{"no lease: already free", running("", time.Time{}, ledger.Running), holderA, ledger.ErrNoChange},
		{"queued row", queued(2), holderA, ledger.ErrNoChange},
		{"done row", final(ledger.Done), holderA, ledger.ErrNoChange},
		{"failed row", final(ledger.Failed), holderA, ledger.ErrNoChange},
		{"cancelled row", final(ledger.Cancelled), holderA, ledger.ErrNoChange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			before := deepCopy(tt.row)

			out, err := ledger.Release(tt.row, opAt(t0), tt.holder, why)

			is.True(reflect.DeepEqual(tt.row, before)) // input not mutated
			if tt.wantErr != nil {
				is.True(errors.Is(err, tt.wantErr))     // refused with the right error
				is.True(reflect.DeepEqual(out, before)) // unchanged
				return
			}
			is.NoErr(err)                                                                                 // released
			is.True(out.Lease == nil)                                                                     // the holder's lease goes
			is.Equal(*out.Error, ledger.Failure{Code: why.Code, Message: "the attempt failed; retrying"}) // the failure shows while it retries
			is.Equal(out.Status, tt.row.Status)                                                           // status unchanged
			is.Equal(out.Variants, tt.row.Variants)                                                       // variants unchanged
			assertRecorded(is, tt.row, out, t0, "retrying")
			is.Equal(last(out).Detail, "MODEL_RATE_LIMIT: the attempt failed; retrying") // detail is code: message
		})
	}
}

// An attempt that lost the row writes nothing more: another attempt took over
// its expired lease, or released the row, or the row ended without it. Its
// own lease, even expired, still lets it record.
func TestStaleAttemptIsRefused(t *testing.T) {
	took := running(holderB, t0.Add(lease), ledger.Running, ledger.Running)
	tookExpired := running(holderB, t0.Add(-time.Second), ledger.Running, ledger.Running)
	released := running("", time.Time{}, ledger.Running, ledger.Running)
	closed := final(ledger.Failed)
	closed.Lease = nil
	record := func(r ledger.Row) (ledger.Row, error) {
		return ledger.RecordVariants(r, opAt(t0), holderA, []ledger.VariantResult{{Index: 0, Object: "late.png", CostUSD: 0.039}})
	}
	finish := func(r ledger.Row) (ledger.Row, error) { return ledger.Finish(r, opAt(t0), holderA, nil) }
	tests := []struct {
		name    string
		row     ledger.Row
		fn      func(ledger.Row) (ledger.Row, error)
		wantErr error
	}{
		{"record on a row taken over", took, record, ledger.ErrLeaseLost},
		{"record on a row taken over whose new lease expired too", tookExpired, record, ledger.ErrLeaseLost},
		{"record on a row released since", released, record, ledger.ErrLeaseLost},
		{"record on a row ended without it", closed, record, ledger.ErrLeaseLost},
		{"finish on a row taken over", took, finish, ledger.ErrLeaseLost},
		{"finish on a row taken over whose new lease expired too", tookExpired, finish, ledger.ErrLeaseLost},
		{"finish on a row released since", released, finish, ledger.ErrLeaseLost},
		{"finish on a row ended without it", closed, finish, ledger.ErrNoChange},
		{"record under its own expired lease", running(holderA, t0.Add(-time.Hour), ledger.Running, ledger.Running), record, nil},
		{"finish under its own expired lease", running(holderA, t0.Add(-time.Hour), ledger.Done, ledger.Running), finish, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			before := deepCopy(tt.row)
			out, err := tt.fn(tt.row)
			is.True(reflect.DeepEqual(tt.row, before)) // input not mutated
			if tt.wantErr == nil {
				is.NoErr(err)                           // the holder's write applies
				is.Equal(out.Version, tt.row.Version+1) // and is recorded
				return
			}
			is.True(errors.Is(err, tt.wantErr))     // refused
			is.True(reflect.DeepEqual(out, before)) // nothing changed
		})
	}
}

func TestClose(t *testing.T) {
	gaveUp := &ledger.Failure{Code: "MODEL_FAILED", Message: "gave up after 8 attempts"}
	cancelled := running(holderA, t0.Add(-time.Second), ledger.Done, ledger.Running)
	cancelled.CancelRequested = true
	tests := []struct {
		name         string
		row          ledger.Row
		wantErr      error
		wantStatus   ledger.Status
		wantVariants []ledger.Status
	}{
		{name: "expired lease", row: running(holderA, t0.Add(-time.Second), ledger.Running),
			wantStatus: ledger.Failed, wantVariants: []ledger.Status{ledger.Failed}},
		{name: "lease expiring exactly now", row: running(holderA, t0, ledger.Done, ledger.Running),
			wantStatus: ledger.Done, wantVariants: []ledger.Status{ledger.Done, ledger.Failed}},
		{name: "released row", row: running("", time.Time{}, ledger.Running),
			wantStatus: ledger.Failed, wantVariants: []ledger.Status{ledger.Failed}},
		{name: "queued row", row: queued(2),
			wantStatus: ledger.Failed, wantVariants: []ledger.Status{ledger.Failed, ledger.Failed}},
		{name: "cancel pending", row: cancelled,
			wantStatus: ledger.Cancelled, wantVariants: []ledger.Status{ledger.Done, ledger.Cancelled}},
		{name: "live lease", row: running(holderA, t0.Add(time.Second), ledger.Running), wantErr: ledger.ErrLeaseHeld},
		{name: "done row", row: final(ledger.Done), wantErr: ledger.ErrNoChange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			before := deepCopy(tt.row)

			out, err := ledger.Close(tt.row, opAt(t0), gaveUp)

			is.True(reflect.DeepEqual(tt.row, before)) // input not mutated
			if tt.wantErr != nil {
				is.True(errors.Is(err, tt.wantErr))     // refused with the right error
				is.True(reflect.DeepEqual(out, before)) // unchanged
				return
			}
			is.NoErr(err)                            // closed
			is.Equal(out.Status, tt.wantStatus)      // row outcome
			is.Equal(statuses(out), tt.wantVariants) // open variants end
			is.True(out.Lease == nil)                // no lease left
			assertRecorded(is, tt.row, out, t0, "finished")
		})
	}
}

func TestFinish(t *testing.T) {
	pending := &ledger.Failure{Code: "BUDGET_EXCEEDED", Message: "out of budget"}
	cancelReq := func(r ledger.Row) ledger.Row { r.CancelRequested = true; return r }
	withErr := func(r ledger.Row) ledger.Row {
		r.Error = &ledger.Failure{Code: "MODEL_RATE_LIMIT", Message: "retrying"}
		return r
	}
	tests := []struct {
		name         string
		row          ledger.Row
		pending      *ledger.Failure
		wantErr      error
		wantStatus   ledger.Status
		wantVariants []ledger.Status
		wantRowErr   *ledger.Failure
		wantVarErrs  []*ledger.Failure // nil = don't check
	}{
		{name: "all done", row: running(holderA, t0.Add(lease), ledger.Done, ledger.Done),
			wantStatus: ledger.Done, wantVariants: []ledger.Status{ledger.Done, ledger.Done}},
		{name: "done clears a retry's error", row: withErr(running(holderA, t0.Add(lease), ledger.Done)),
			wantStatus: ledger.Done, wantVariants: []ledger.Status{ledger.Done}},
		{name: "mix of done and failed is done", row: running(holderA, t0.Add(lease), ledger.Done, ledger.Failed),
			wantStatus: ledger.Done, wantVariants: []ledger.Status{ledger.Done, ledger.Failed}},
		{name: "all failed", row: running(holderA, t0.Add(lease), ledger.Failed, ledger.Failed),
			wantStatus: ledger.Failed, wantVariants: []ledger.Status{ledger.Failed, ledger.Failed},
			wantRowErr: &ledger.Failure{Code: "MODEL_SAFETY_BLOCKED", Message: "v0 blocked"}},
		{name: "open variants get the pending failure", row: running(holderA, t0.Add(lease), ledger.Running, ledger.Queued), pending: pending,
			wantStatus: ledger.Failed, wantVariants: []ledger.Status{ledger.Failed, ledger.Failed}, wantRowErr: pending,
			wantVarErrs: []*ledger.Failure{pending, pending}},
		{name: "pending failure with a done variant is done", row: running(holderA, t0.Add(lease), ledger.Done, ledger.Running), pending: pending,
			wantStatus: ledger.Done, wantVariants: []ledger.Status{ledger.Done, ledger.Failed},
			wantVarErrs: []*ledger.Failure{nil, pending}},
		{name: "earlier failure comes first in the row error", row: running(holderA, t0.Add(lease), ledger.Failed, ledger.Running), pending: pending,
			wantStatus: ledger.Failed, wantVariants: []ledger.Status{ledger.Failed, ledger.Failed},
			wantRowErr: &ledger.Failure{Code: "MODEL_SAFETY_BLOCKED", Message: "v0 blocked"}},
		{name: "open variants without a pending failure are INTERNAL", row: running(holderA, t0.Add(lease), ledger.Running),
			wantStatus: ledger.Failed, wantVariants: []ledger.Status{ledger.Failed},
			wantRowErr: &ledger.Failure{Code: "INTERNAL", Message: "the attempt ended without a result"}},
		{name: "cancel requested cancels open variants", row: cancelReq(running(holderA, t0.Add(lease), ledger.Done, ledger.Running, ledger.Queued)),
			wantStatus: ledger.Cancelled, wantVariants: []ledger.Status{ledger.Done, ledger.Cancelled, ledger.Cancelled}},
		{name: "cancel wins over a pending failure", row: withErr(cancelReq(running(holderA, t0.Add(lease), ledger.Running))), pending: pending,
			wantStatus: ledger.Cancelled, wantVariants: []ledger.Status{ledger.Cancelled}, wantVarErrs: []*ledger.Failure{nil}},
		{name: "done row", row: final(ledger.Done), wantErr: ledger.ErrNoChange},
		{name: "failed row", row: final(ledger.Failed), pending: pending, wantErr: ledger.ErrNoChange},
		{name: "cancelled row", row: final(ledger.Cancelled), wantErr: ledger.ErrNoChange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			before := deepCopy(tt.row)

			out, err := ledger.Finish(tt.row, opAt(t0), holderA, tt.pending)

			is.True(reflect.DeepEqual(tt.row, before)) // input not mutated
			if tt.wantErr != nil {
				is.True(errors.Is(err, tt.wantErr))     // final rows are left alone
				is.True(reflect.DeepEqual(out, before)) // unchanged
				return
			}
			is.NoErr(err)                            // finished
			is.Equal(out.Status, tt.wantStatus)      // row outcome
			is.True(out.Status.Terminal())           // and it is final
			is.Equal(statuses(out), tt.wantVariants) // variant outcomes
			is.Equal(out.Error, tt.wantRowErr)       // row error
			is.True(out.Lease == nil)                // lease released
			for i, want := range tt.wantVarErrs {
				is.Equal(out.Variants[i].Error, want) // variant error
			}
			assertRecorded(is, tt.row, out, t0, "finished")
			is.Equal(last(out).Detail, string(tt.wantStatus)) // detail is the outcome
		})
	}
}

func TestCancel(t *testing.T) {
	requested := running(holderA, t0.Add(lease), ledger.Running)
	requested.CancelRequested = true
	released := running("", time.Time{}, ledger.Done, ledger.Running)
	tests := []struct {
		name         string
		row          ledger.Row
		wantErr      error
		wantStatus   ledger.Status
		wantVariants []ledger.Status
		wantAction   string
	}{
		{name: "queued row is cancelled at once", row: queued(2),
			wantStatus: ledger.Cancelled, wantVariants: []ledger.Status{ledger.Cancelled, ledger.Cancelled}, wantAction: "finished"},
		{name: "running with a live lease is only asked to stop", row: running(holderA, t0.Add(time.Second), ledger.Done, ledger.Running),
			wantStatus: ledger.Running, wantVariants: []ledger.Status{ledger.Done, ledger.Running}, wantAction: "cancel_requested"},
		{name: "running with an expired lease is cancelled", row: running(holderA, t0.Add(-time.Second), ledger.Done, ledger.Running),
			wantStatus: ledger.Cancelled, wantVariants: []ledger.Status{ledger.Done, ledger.Cancelled}, wantAction: "finished"},
		{name: "lease expiring exactly now counts as expired", row: running(holderA, t0, ledger.Running),
			wantStatus: ledger.Cancelled, wantVariants: []ledger.Status{ledger.Cancelled}, wantAction: "finished"},
		{name: "released row (no lease) is cancelled", row: released,
			wantStatus: ledger.Cancelled, wantVariants: []ledger.Status{ledger.Done, ledger.Cancelled}, wantAction: "finished"},
		{name: "done row", row: final(ledger.Done), wantErr: ledger.ErrNoChange},
		{name: "failed row", row: final(ledger.Failed), wantErr: ledger.ErrNoChange},
		{name: "cancelled row", row: final(ledger.Cancelled), wantErr: ledger.ErrNoChange},
		{name: "cancel already requested", row: requested, wantErr: ledger.ErrNoChange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			before := deepCopy(tt.row)

			out, err := ledger.Cancel(tt.row, opAt(t0))

			is.True(reflect.DeepEqual(tt.row, before)) // input not mutated
			if tt.wantErr != nil {
				is.True(errors.Is(err, tt.wantErr))     // nothing to do
				is.True(reflect.DeepEqual(out, before)) // unchanged
				return
			}
			is.NoErr(err)                            // cancel accepted
			is.True(out.CancelRequested)             // the request is recorded
			is.Equal(out.Status, tt.wantStatus)      // row status
			is.Equal(statuses(out), tt.wantVariants) // variants
			is.True(out.Error == nil)                // a cancel is not an error
			assertRecorded(is, tt.row, out, t0, tt.wantAction)
			if tt.wantStatus == ledger.Cancelled {
				is.True(out.Lease == nil) // a cancelled row holds no lease
			} else {
				is.Equal(out.Lease, tt.row.Lease) // the running attempt keeps its lease
			}
		})
	}
}

// TestCancelThenFinish: a row asked to stop ends cancelled when its attempt finishes.
func TestCancelThenFinish(t *testing.T) {
	tests := []struct {
		name         string
		variants     []ledger.Status
		wantVariants []ledger.Status
	}{
		{"one done, one open", []ledger.Status{ledger.Done, ledger.Running}, []ledger.Status{ledger.Done, ledger.Cancelled}},
		{"all open", []ledger.Status{ledger.Running, ledger.Running}, []ledger.Status{ledger.Cancelled, ledger.Cancelled}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			r, err := ledger.Cancel(running(holderA, t0.Add(lease), tt.variants...), opAt(t0))
			is.NoErr(err)                      // cancel requested
			is.Equal(r.Status, ledger.Running) // still running
			r, err = ledger.Finish(r, opAt(t0.Add(time.Second)), holderA, nil)
			is.NoErr(err)                          // finished
			is.Equal(r.Status, ledger.Cancelled)   // ends cancelled
			is.Equal(statuses(r), tt.wantVariants) // open variants cancelled
		})
	}
}

func TestSummarize(t *testing.T) {
	row := func(s ledger.Status, vs ...ledger.Status) ledger.Row {
		r := running("", time.Time{}, vs...)
		r.Status = s
		return r
	}
	tests := []struct {
		name     string
		rows     []ledger.Row
		status   ledger.Status
		rowC     ledger.Counts
		variantC ledger.Counts
		cost     float64
	}{
		{"no rows", nil, ledger.Queued, ledger.Counts{}, ledger.Counts{}, 0},
		{"all queued", []ledger.Row{queued(2), queued(1)}, ledger.Queued,
			ledger.Counts{Queued: 2}, ledger.Counts{Queued: 3}, 0},
		{"one running", []ledger.Row{queued(1), row(ledger.Running, ledger.Running, ledger.Done)}, ledger.Running,
			ledger.Counts{Queued: 1, Running: 1}, ledger.Counts{Queued: 1, Running: 1, Done: 1}, 0.039},
		{"queued next to final rows is running", []ledger.Row{queued(1), row(ledger.Done, ledger.Done)}, ledger.Running,
			ledger.Counts{Queued: 1, Done: 1}, ledger.Counts{Queued: 1, Done: 1}, 0.039},
		{"all done", []ledger.Row{row(ledger.Done, ledger.Done, ledger.Done), row(ledger.Done, ledger.Done)}, ledger.Done,
			ledger.Counts{Done: 2}, ledger.Counts{Done: 3}, 3 * 0.039},
		{"done and failed rows", []ledger.Row{row(ledger.Done, ledger.Done, ledger.Failed), row(ledger.Failed, ledger.Failed)}, ledger.Done,
			ledger.Counts{Done: 1, Failed: 1}, ledger.Counts{Done: 1, Failed: 2}, 0.039},
		{"all failed", []ledger.Row{row(ledger.Failed, ledger.Failed), row(ledger.Failed, ledger.Failed, ledger.Failed)}, ledger.Failed,
			ledger.Counts{Failed: 2}, ledger.Counts{Failed: 3}, 0},
		{"all cancelled", []ledger.Row{row(ledger.Cancelled, ledger.Cancelled), row(ledger.Cancelled, ledger.Cancelled)}, ledger.Cancelled,
			ledger.Counts{Cancelled: 2}, ledger.Counts{Cancelled: 2}, 0},
		{"cancelled row with an image is cancelled, its image counted", []ledger.Row{row(ledger.Cancelled, ledger.Done, ledger.Cancelled)}, ledger.Cancelled,
			ledger.Counts{Cancelled: 1}, ledger.Counts{Done: 1, Cancelled: 1}, 0.039},
		{"a cancelled row beside done rows makes the batch cancelled", []ledger.Row{row(ledger.Done, ledger.Done), row(ledger.Cancelled, ledger.Cancelled)}, ledger.Cancelled,
			ledger.Counts{Done: 1, Cancelled: 1}, ledger.Counts{Done: 1, Cancelled: 1}, 0.039},
		{"failed and cancelled rows without images", []ledger.Row{row(ledger.Failed, ledger.Failed), row(ledger.Cancelled, ledger.Cancelled)}, ledger.Cancelled,
			ledger.Counts{Failed: 1, Cancelled: 1}, ledger.Counts{Failed: 1, Cancelled: 1}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			var before []ledger.Row
			for _, r := range tt.rows {
				before = append(before, deepCopy(r))
			}
			s := ledger.Summarize(tt.rows)
			is.Equal(s.Status, tt.status)                                 // batch status
			is.Equal(s.Rows, tt.rowC)                                     // row counts
			is.Equal(s.Variants, tt.variantC)                             // variant counts
			is.Equal(s.Rows.Total(), len(tt.rows))                        // every row counted once
			is.True(s.CostUSD-tt.cost < 1e-9 && tt.cost-s.CostUSD < 1e-9) // cost sums the variants
			is.True(reflect.DeepEqual(tt.rows, before))                   // rows not mutated
		})
	}
}

func TestCountsTotal(t *testing.T) {
	tests := []struct {
		name string
		c    ledger.Counts
		want int
	}{
		{"zero", ledger.Counts{}, 0},
		{"every status", ledger.Counts{Queued: 1, Running: 2, Done: 3, Failed: 4, Cancelled: 5}, 15},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			is.Equal(tt.c.Total(), tt.want) // sum of all statuses
		})
	}
}

// TestHistoryCapped: the audit trail keeps the newest 100 entries.
func TestHistoryCapped(t *testing.T) {
	const maxHistory = 100
	withHistory := func(n int) ledger.Row {
		r := running(holderA, t0.Add(lease), ledger.Running)
		r.History = nil
		for v := 1; v <= n; v++ {
			r.History = append(r.History, ledger.Change{Version: v, Action: "old"})
		}
		r.Version = n
		return r
	}
	tests := []struct {
		name      string
		history   int
		writes    int
		wantLen   int
		wantFirst int // version of the oldest entry kept
	}{
		{"one below the cap", maxHistory - 1, 1, maxHistory, 1},
		{"at the cap", maxHistory, 1, maxHistory, 2},
		{"far past the cap", maxHistory, 150, maxHistory, 151},
		{"empty history", 0, 3, 3, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			in := withHistory(tt.history)
			before := deepCopy(in)
			r := in
			for i := range tt.writes {
				var err error
				r, err = ledger.Start(r, opAt(t0.Add(time.Duration(i)*time.Second)), holderA, lease)
				is.NoErr(err) // each write applies
			}
			is.True(reflect.DeepEqual(in, before))          // input history not touched
			is.Equal(len(r.History), tt.wantLen)            // capped length
			is.Equal(r.History[0].Version, tt.wantFirst)    // oldest entries dropped first
			is.Equal(last(r).Version, tt.history+tt.writes) // newest entry is the latest write
			is.Equal(r.Version, tt.history+tt.writes)       // version keeps counting past the cap
			for i := 1; i < len(r.History); i++ {
				is.Equal(r.History[i].Version, r.History[i-1].Version+1) // entries stay contiguous
			}
		})
	}
}

// TestTransitionsArePure: no transition mutates its input, and the output shares
// no memory with it.
func TestTransitionsArePure(t *testing.T) {
	rich := func() ledger.Row {
		r := running(holderA, t0.Add(lease), ledger.Done, ledger.Failed, ledger.Running, ledger.Queued)
		r.Error = &ledger.Failure{Code: "MODEL_RATE_LIMIT", Message: "retrying"}
		// Spare capacity: an in-place append would write into the caller's array.
		h := make([]ledger.Change, len(r.History), len(r.History)+8)
		copy(h, r.History)
		r.History = h
		return r
	}
	expired := func() ledger.Row {
		r := rich()
		r.Lease.Until = t0.Add(-time.Second)
		return r
	}
	tests := []struct {
		name string
		in   func() ledger.Row
		fn   func(ledger.Row) (ledger.Row, error)
	}{
		{"Start same holder", rich, func(r ledger.Row) (ledger.Row, error) { return ledger.Start(r, opAt(t0), holderA, lease) }},
		{"Start takeover", expired, func(r ledger.Row) (ledger.Row, error) { return ledger.Start(r, opAt(t0), holderB, lease) }},
		{"RecordVariants", rich, func(r ledger.Row) (ledger.Row, error) {
			return ledger.RecordVariants(r, opAt(t0), holderA, []ledger.VariantResult{{Index: 2, Object: "o"}, {Index: 3, Failure: &ledger.Failure{Code: "X"}}})
		}},
		{"Release", rich, func(r ledger.Row) (ledger.Row, error) {
			return ledger.Release(r, opAt(t0), holderA, ledger.Failure{Code: "Y", Message: "m"})
		}},
		{"Finish", rich, func(r ledger.Row) (ledger.Row, error) {
			return ledger.Finish(r, opAt(t0), holderA, &ledger.Failure{Code: "Z", Message: "m"})
		}},
		{"Close", expired, func(r ledger.Row) (ledger.Row, error) {
			return ledger.Close(r, opAt(t0), &ledger.Failure{Code: "Z", Message: "m"})
		}},
		{"Cancel live", rich, func(r ledger.Row) (ledger.Row, error) { return ledger.Cancel(r, opAt(t0)) }},
		{"Cancel expired", expired, func(r ledger.Row) (ledger.Row, error) { return ledger.Cancel(r, opAt(t0)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			in := tt.in()
			before := deepCopy(in)

			out, err := tt.fn(in)
			is.NoErr(err)                                                            // the transition applies
			is.True(reflect.DeepEqual(in, before))                                   // input not mutated
			is.Equal(in.History[:cap(in.History)][len(in.History)], ledger.Change{}) // nothing appended into the input's spare capacity

			// Scribble over every reference-typed part of the output.
			for i := range out.Variants {
				out.Variants[i].Status = "scribbled"
				if out.Variants[i].Error != nil {
					out.Variants[i].Error.Message = "scribbled"
				}
			}
			for i := range out.History {
				out.History[i].Detail = "scribbled"
			}
			if out.Lease != nil {
				out.Lease.Holder = "scribbled"
			}
			if out.Error != nil {
				out.Error.Message = "scribbled"
			}
			is.True(reflect.DeepEqual(in, before)) // output shares no memory with the input
		})
	}
}

// A row whose cancel was requested while an attempt ran, and whose attempt then
// went away (released, or its lease expired), ends on the next touch instead of
// being generated again.
func TestCancelledRowIsNotRestarted(t *testing.T) {
	is := is.New(t)
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	op := ledger.Op{Actor: "t", Now: now}
	r := ledger.NewRow(ledger.ManifestRow{Index: 0, Variants: 3})
	r, err := ledger.Start(r, op, "first", time.Minute)
	is.NoErr(err)
	r, err = ledger.RecordVariants(r, op, "first", []ledger.VariantResult{{Index: 0, Object: "img0"}})
	is.NoErr(err)
	r, err = ledger.Cancel(r, op)
	is.NoErr(err)
	is.True(r.CancelRequested)         // the running attempt is asked to stop
	is.Equal(r.Status, ledger.Running) // but it is still running

	released, err := ledger.Release(r, op, "first", ledger.Failure{Code: "GCS_WRITE_FAILED"})
	is.NoErr(err)
	restarted, err := ledger.Start(released, op, "second", time.Minute)
	is.NoErr(err)
	is.Equal(restarted.Status, ledger.Cancelled)             // the retry ends the row
	is.Equal(restarted.Variants[0].Status, ledger.Done)      // keeping what was made
	is.Equal(restarted.Variants[1].Status, ledger.Cancelled) // and paying for nothing more

	later := ledger.Op{Actor: "t", Now: now.Add(time.Hour)} // the first attempt's lease expired
	again, err := ledger.Cancel(r, later)
	is.NoErr(err)
	is.Equal(again.Status, ledger.Cancelled) // a second cancel finishes a row nobody works on

	_, err = ledger.Cancel(r, op)
	is.True(errors.Is(err, ledger.ErrNoChange)) // while the attempt is alive, cancelling again changes nothing
}

func TestGaveUpSaysSo(t *testing.T) {
	is := is.New(t)
	why := ledger.Failure{Code: "MODEL_RATE_LIMIT", Message: "the model is rate limited: quota"}
	is.Equal(ledger.GaveUp(why, 3), ledger.Failure{Code: "MODEL_RATE_LIMIT", Message: "the model is rate limited: quota; gave up after 3 attempts"})
}
