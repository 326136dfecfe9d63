package progress

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

const (
	batchA = "0190f2c4-9a1b-7c3d-8e4f-5a6b7c8d9e0f"
	batchB = "0190f2c4-9a1b-7c3d-8e4f-5a6b7c8d9e10"
)

func TestBatchTag(t *testing.T) {
	is := is.New(t)
	a, b := batchTag(batchA), batchTag(batchB)
	is.True(regexp.MustCompile(`^[0-9a-f]{6}$`).MatchString(a)) // six lowercase hex digits, no '-'
	is.Equal(a, batchTag(batchA))                               // deterministic
	is.True(a != b)                                             // differs between batches
}

func TestFormatID(t *testing.T) {
	cases := []struct {
		name string
		seen []int
		want string
	}{
		{"one never seen", []int{-1}, "t-0"},
		{"one submitted", []int{0}, "t-1"},
		{"mixed", []int{-1, 0, 4, 12}, "t-0.1.5.13"},
		{"below -1 clamps to never seen", []int{-7, 2}, "t-0.3"},
		{"no rows", nil, "t-"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			is.Equal(formatID("t", tc.seen, time.Time{}), tc.want) // rendered id
		})
	}
}

func TestParseIDRoundTrip(t *testing.T) {
	tag := batchTag(batchA)
	cases := []struct {
		name string
		seen []int
	}{
		{"single never seen", []int{-1}},
		{"single submitted", []int{0}},
		{"all never seen", []int{-1, -1, -1}},
		{"mixed with never seen", []int{3, -1, 0, 12, -1}},
		{"largest nine-digit entry", []int{999999998, -1}},
		{"many rows", func() []int {
			s := make([]int, 100)
			for i := range s {
				s[i] = i%7 - 1
			}
			return s
		}()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			id := formatID(tag, tc.seen, time.Time{})
			got, _, ok := parseID(id, tag, len(tc.seen))
			is.True(ok)                                   // own id parses
			is.Equal(got, tc.seen)                        // versions round-trip, -1 included
			is.Equal(formatID(tag, got, time.Time{}), id) // re-formatting gives the same id
		})
	}
}

func TestParseIDRejects(t *testing.T) {
	tag := batchTag(batchA)
	foreign := batchTag(batchB)
	cases := []struct {
		name string
		id   string
		rows int
	}{
		{"empty", "", 2},
		{"empty with zero rows", "", 0},
		{"tag only", tag, 1},
		{"tag and dash, one row", tag + "-", 1},
		{"zero rows expected", tag + "-", 0},
		{"foreign tag", formatID(foreign, []int{0, 1}, time.Time{}), 2},
		{"no tag", "1.2", 2},
		{"tag prefix without dash", tag + "1.2", 2},
		{"too few rows", formatID(tag, []int{0, 1}, time.Time{}), 3},
		{"too many rows", formatID(tag, []int{0, 1, 2}, time.Time{}), 2},
		{"garbage", "abc-x.y", 2},
		{"garbage after own tag", tag + "-x.y", 2},
		{"empty part", tag + "-1..2", 3},
		{"trailing dot", tag + "-1.2.", 3},
		{"leading dot", tag + "-.1.2", 3},
		{"negative entry", tag + "-1.-3", 2},
		{"negative first entry", tag + "--1.2", 2},
		{"overlong entry", tag + "-1234567890.1", 2},
		{"overflowing entry", tag + "-99999999999999999999999.1", 2},
		{"hex entry", tag + "-0x1.1", 2},
		{"exponent entry", tag + "-1e3.1", 2},
		{"space in entry", tag + "- 1.1", 2},
		{"uppercase tag", strings.ToUpper(tag) + "-1.1", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			seen, _, ok := parseID(tc.id, tag, tc.rows)
			is.True(!ok)        // id refused
			is.Equal(seen, nil) // no versions for a refused id
		})
	}
}

// parseID is documented to refuse malformed ids, and formatID never writes a
// sign, but strconv.Atoi accepts a leading '+'.
func TestParseIDRejectsPlusSign(t *testing.T) {
	is := is.New(t)
	tag := batchTag(batchA)
	_, _, ok := parseID(tag+"-+1.2", tag, 2)
	is.True(!ok) // signed entry refused
}

func TestIDsDifferBetweenBatches(t *testing.T) {
	is := is.New(t)
	seen := []int{0, -1, 3}
	a := formatID(batchTag(batchA), seen, time.Time{})
	b := formatID(batchTag(batchB), seen, time.Time{})
	is.True(a != b) // same versions, different batches, different ids

	_, _, ok := parseID(a, batchTag(batchB), len(seen))
	is.True(!ok) // batch A's id is foreign to batch B
	_, _, ok = parseID(b, batchTag(batchA), len(seen))
	is.True(!ok) // and vice versa
}

func TestIDCarriesHeldExpiry(t *testing.T) {
	is := is.New(t)
	tag := batchTag("b")
	exp := time.Unix(1_800_000_000, 0)
	id := formatID(tag, []int{2, -1}, exp)
	seen, held, ok := parseID(id, tag, 2)
	is.True(ok)
	is.Equal(seen, []int{2, -1}) // versions round-trip
	is.True(held.Equal(exp))     // and the expiry of the URLs held
	for _, bad := range []string{tag + "-1.1~", tag + "-1.1~zz!", tag + "-1.1~-5", tag + "-1.1~123456789"} {
		_, _, ok := parseID(bad, tag, 2)
		is.True(!ok) // a malformed expiry makes the id foreign: full snapshot
	}
}
