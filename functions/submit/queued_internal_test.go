package submit

import (
	"testing"
	"time"

	"github.com/matryer/is"
)

func TestMayWriteFirst(t *testing.T) {
	for _, tc := range []struct {
		name      string
		hint      capHint
		rows, max int
		want      bool
	}{
		{"a user not counted yet", capHint{}, 10, 100, true},
		{"a batch larger than the cap", capHint{}, 10, 8, false},
		{"room for the batch", capHint{rows: 80}, 10, 100, true},
		{"exactly at the cap once written", capHint{rows: 90}, 10, 100, true},
		{"over the cap once written", capHint{rows: 91}, 10, 100, false},
		{"the last count was over the cap", capHint{rows: 120}, 1, 100, false},
		{"another submit writes first already", capHint{writing: true}, 1, 100, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.hint.mayWriteFirst(tc.rows, tc.max); got != tc.want {
				t.Errorf("mayWriteFirst(%d, %d) of %+v = %v, want %v", tc.rows, tc.max, tc.hint, got, tc.want)
			}
		})
	}
}

// One submit per user writes before its count at a time; a count over the
// cap makes the user's next submits count first until a count shows room;
// batches accepted here count until the next count.
func TestCapHintsLearnFromCounts(t *testing.T) {
	is := is.New(t)
	var h capHints
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	is.True(h.begin("u", 5, 10, now))  // not counted yet: writes first
	is.True(!h.begin("u", 5, 10, now)) // but only one submit at a time
	is.True(h.begin("v", 5, 10, now))  // other users are apart
	h.observe("u", 12, now)            // the count: over the cap
	h.end("u")
	is.True(!h.begin("u", 1, 10, now)) // so the next is counted first
	h.observe("u", 4, now)             // and that count shows room
	h.accepted("u", 5, now)            // for a batch accepted here
	is.True(h.begin("u", 1, 10, now))  // 4 + 5 + 1 fits
	h.end("u")
	is.True(!h.begin("u", 2, 10, now)) // 4 + 5 + 2 does not
}

func TestCapHintsForgetIdleUsers(t *testing.T) {
	is := is.New(t)
	var h capHints
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h.observe("idle", 50, now)
	h.begin("busy", 1, 10, now) // writing: kept however long it takes
	h.observe("recent", 50, now.Add(hintIdle))
	h.observe("new", 0, now.Add(hintIdle+2*time.Minute)) // a new user sweeps
	_, idle := h.users["idle"]
	_, busy := h.users["busy"]
	_, recent := h.users["recent"]
	is.True(!idle)  // forgotten: counted again, and may write first once
	is.True(busy)   // its count is still under way
	is.True(recent) // seen within hintIdle
	is.Equal(len(h.users), 3)
}
