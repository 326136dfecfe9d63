package flags_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/flags"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    string // the value's String; "" when Parse must fail
		wantErr bool
	}{
		{in: "on", want: "on"},
		{in: "ON", want: "on"},
		{in: " On ", want: "on"},
		{in: "true", want: "on"},
		{in: "TRUE", want: "on"},
		{in: "1", want: "on"},
		{in: "100%", want: "on"},
		{in: "100.0%", want: "on"},
		{in: "off", want: "off"},
		{in: "Off", want: "off"},
		{in: "false", want: "off"},
		{in: "0", want: "off"},
		{in: "0%", want: "off"},
		{in: "0.0%", want: "off"},
		{in: "12.5%", want: "12.5%"},
		{in: " 12.5% ", want: "12.5%"},
		{in: "50%", want: "50%"},
		{in: "0.01%", want: "0.01%"},
		{in: "99.99%", want: "99.99%"},
		{in: "", wantErr: true},
		{in: "yes", wantErr: true},
		{in: "enabled", wantErr: true},
		{in: "2", wantErr: true},
		{in: "50", wantErr: true}, // a percentage needs its sign
		{in: "%", wantErr: true},
		{in: "abc%", wantErr: true},
		{in: "101%", wantErr: true},
		{in: "100.5%", wantErr: true},
		{in: "-1%", wantErr: true},
		{in: "-0.01%", wantErr: true},
		{in: "Inf%", wantErr: true},
		{in: "50 %", wantErr: true},
		{in: "%50", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.in), func(t *testing.T) {
			is := is.New(t)
			v, err := flags.Parse(tt.in)
			if tt.wantErr {
				is.True(err != nil)                                              // refused
				is.True(strings.Contains(err.Error(), fmt.Sprintf("%q", tt.in))) // the error quotes the value
				return
			}
			is.NoErr(err)
			is.Equal(v.String(), tt.want)
		})
	}
}

func TestParseRejectsNaN(t *testing.T) {
	is := is.New(t)
	_, err := flags.Parse("NaN%")
	is.True(err != nil) // not a percentage
}

func TestStringRoundTrip(t *testing.T) {
	for _, in := range []string{"on", "off", "12.5%", "50%", "1%", "0.01%", "99.99%", "10%", "25.25%", "0.5%"} {
		t.Run(in, func(t *testing.T) {
			is := is.New(t)
			v, err := flags.Parse(in)
			is.NoErr(err)
			is.Equal(v.String(), in) // renders the way it was written
			back, err := flags.Parse(v.String())
			is.NoErr(err)
			is.Equal(back, v) // and parses back to the same value
		})
	}
}

// Every value String can render must parse back to itself: every basis point
// from 0 to 10,000.
func TestStringRoundTripEveryBasisPoint(t *testing.T) {
	is := is.New(t)
	bad := 0
	for bp := 0; bp <= 10000; bp++ {
		in := strconv.FormatFloat(float64(bp)/100, 'f', -1, 64) + "%"
		want := in
		switch bp {
		case 0:
			want = "off"
		case 10000:
			want = "on"
		}
		v, err := flags.Parse(in)
		is.NoErr(err)
		if v.String() != want {
			bad++
			if bad <= 5 {
				t.Errorf("%s parsed as %s", in, v)
			}
		}
	}
	is.Equal(bad, 0) // every basis point round-trips
}

func users(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("user-%04d@example.com", i)
	}
	return out
}

func mustParse(t *testing.T, s string) flags.Value {
	t.Helper()
	v, err := flags.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestForOffAndOn(t *testing.T) {
	is := is.New(t)
	off, on := mustParse(t, "0%"), mustParse(t, "100%")
	for _, f := range flags.Registry {
		for _, u := range users(2000) {
			is.True(!off.For(f, u)) // 0% is never on
			is.True(on.For(f, u))   // 100% is always on
		}
	}
}

func TestBucket(t *testing.T) {
	is := is.New(t)
	seen := map[int]bool{}
	for _, u := range users(2000) {
		b := flags.Bucket(flags.BatchAPI, u)
		is.True(b >= 0 && b < 10000)                 // in range
		is.Equal(b, flags.Bucket(flags.BatchAPI, u)) // stable
		seen[b] = true
	}
	is.True(len(seen) > 1500) // spread out, not a handful of buckets
}

func share(v flags.Value, f flags.Flag, us []string) (map[string]bool, float64) {
	in := map[string]bool{}
	for _, u := range us {
		if v.For(f, u) {
			in[u] = true
		}
	}
	return in, float64(len(in)) / float64(len(us))
}

// A user in at 10% is still in at 50%: widening a canary never drops anyone.
func TestForIsStableAsThePercentageGrows(t *testing.T) {
	is := is.New(t)
	us := users(2000)
	ladder := []string{"1%", "5%", "10%", "12.5%", "25%", "50%", "75%", "99.99%"}
	for _, f := range flags.Registry {
		var prev map[string]bool
		for _, p := range ladder {
			in, _ := share(mustParse(t, p), f, us)
			for u := range prev {
				is.True(in[u]) // everyone in at the lower percentage is in at this one
			}
			prev = in
		}
	}
	at10, s10 := share(mustParse(t, "10%"), flags.BatchAPI, us)
	at50, s50 := share(mustParse(t, "50%"), flags.BatchAPI, us)
	for u := range at10 {
		is.True(at50[u]) // the 10% set is a subset of the 50% set
	}
	is.True(s10 >= 0.075 && s10 <= 0.125) // about 10% of users
	is.True(s50 >= 0.45 && s50 <= 0.55)   // about 50% of users
	t.Logf("share at 10%%: %.3f, at 50%%: %.3f", s10, s50)
}

// Two flags at the same percentage pick different users.
func TestFlagsPickIndependentUsers(t *testing.T) {
	is := is.New(t)
	us := users(2000)
	half := mustParse(t, "50%")
	a, _ := share(half, flags.BatchAPI, us)
	b, _ := share(half, flags.LiveRuns, us)
	both := 0
	for u := range a {
		if b[u] {
			both++
		}
	}
	overlap := float64(both) / float64(len(us))
	is.True(len(a) != both || len(b) != both)   // not the same users
	is.True(overlap >= 0.20 && overlap <= 0.30) // independent: about 50% × 50%
	t.Logf("in both at 50%%: %.3f", overlap)
}

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestNewReadsEnvironment(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	s, err := flags.New(envOf(map[string]string{"HYBRID_V1_ENABLED": "off"}), nil, 0)
	is.NoErr(err)
	is.Equal(s.Value(ctx, flags.BatchAPI).String(), "off")                  // set in the environment
	is.Equal(s.Value(ctx, flags.LiveRuns).String(), flags.LiveRuns.Default) // unset: the default
	is.True(!s.Enabled(ctx, flags.BatchAPI, "anyone"))
	is.True(s.Enabled(ctx, flags.LiveRuns, "anyone"))
}

func TestNewRefusesBadEnvironment(t *testing.T) {
	is := is.New(t)
	_, err := flags.New(envOf(map[string]string{"HYBRID_V1_ENABLED": "sometimes"}), nil, 0)
	is.True(err != nil)                                         // refused at start
	is.True(strings.Contains(err.Error(), "HYBRID_V1_ENABLED")) // naming the variable
	is.True(strings.Contains(err.Error(), "sometimes"))         // and the value
	is.True(!strings.Contains(err.Error(), "LIVE_RUNS"))        // and only the bad one

	_, err = flags.New(envOf(map[string]string{"HYBRID_V1_ENABLED": "101%", "LIVE_RUNS": "maybe"}), nil, 0)
	is.True(err != nil)
	is.True(strings.Contains(err.Error(), "HYBRID_V1_ENABLED")) // every bad variable is named
	is.True(strings.Contains(err.Error(), "LIVE_RUNS"))
}

// source is a scripted flags object: each read returns the next answer (the last
// one repeats) and is counted.
type source struct {
	mu      sync.Mutex
	answers []answer
	reads   int
}

type answer struct {
	m   map[string]string
	err error
}

func (s *source) read(context.Context) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.answers[min(s.reads, len(s.answers)-1)]
	s.reads++
	return a.m, a.err
}

func (s *source) Reads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

func TestObjectOverridesEnvironment(t *testing.T) {
	tests := []struct {
		name   string
		env    string
		object answer
		want   string
	}{
		{"object names the flag", "off", answer{m: map[string]string{"HYBRID_V1_ENABLED": "25%"}}, "25%"},
		{"object turns it off", "on", answer{m: map[string]string{"HYBRID_V1_ENABLED": "off"}}, "off"},
		{"object names another flag", "off", answer{m: map[string]string{"LIVE_RUNS": "on"}}, "off"},
		{"object value does not parse: every flag off", "12.5%", answer{m: map[string]string{"HYBRID_V1_ENABLED": "bogus"}}, "off"},
		{"object names an unknown flag", "off", answer{m: map[string]string{"NEWER_FLAG": "bogus", "HYBRID_V1_ENABLED": "25%"}}, "25%"},
		{"empty object", "12.5%", answer{m: map[string]string{}}, "12.5%"},
		{"no object", "12.5%", answer{err: flags.ErrNoObject}, "12.5%"},
		{"object unreadable from the start", "12.5%", answer{err: errors.New("503")}, "12.5%"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			src := &source{answers: []answer{tt.object}}
			s, err := flags.New(envOf(map[string]string{"HYBRID_V1_ENABLED": tt.env}), src.read, 0)
			is.NoErr(err)
			is.Equal(s.Value(context.Background(), flags.BatchAPI).String(), tt.want)
			is.True(src.Reads() >= 1) // the object was consulted
		})
	}
}

// A deleted flags object means only the environment counts again.
func TestNoObjectDropsOverrides(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	src := &source{answers: []answer{
		{m: map[string]string{"HYBRID_V1_ENABLED": "off"}},
		{err: flags.ErrNoObject},
	}}
	s, err := flags.New(envOf(nil), src.read, 0)
	is.NoErr(err)
	is.Equal(s.Value(ctx, flags.BatchAPI).String(), "off") // the override
	is.Equal(s.Value(ctx, flags.BatchAPI).String(), "on")  // object gone: the environment's default
}

func TestSetIsSafeForConcurrentUse(t *testing.T) {
	is := is.New(t)
	src := &source{answers: []answer{
		{m: map[string]string{"HYBRID_V1_ENABLED": "100%"}},
		{err: errors.New("flaky")},
		{m: map[string]string{"HYBRID_V1_ENABLED": "on"}},
	}}
	s, err := flags.New(envOf(map[string]string{"HYBRID_V1_ENABLED": "off"}), src.read, 0)
	is.NoErr(err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	offSeen := 0
	for i := range 20 {
		wg.Go(func() {
			for j := range 50 {
				if !s.Enabled(context.Background(), flags.BatchAPI, fmt.Sprint("u", i, "-", j)) {
					mu.Lock()
					offSeen++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	is.Equal(offSeen, 0) // the environment's "off" never showed through the overrides
}
