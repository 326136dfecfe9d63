package flags

import (
	"context"
	"testing"
	"time"

	"github.com/matryer/is"
)

// An override changed in the flags object is picked up only once the TTL has
// passed, and the object is not read more than once per TTL.
func TestSetReloadsAfterTTL(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	now := time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)
	object := map[string]string{"HYBRID_V1_ENABLED": "10%"}
	reads := 0
	src := func(context.Context) (map[string]string, error) {
		reads++
		out := map[string]string{}
		for k, v := range object {
			out[k] = v
		}
		return out, nil
	}
	s, err := New(func(string) string { return "" }, src, time.Minute)
	is.NoErr(err)
	s.now = func() time.Time { return now } // the test runs on one goroutine

	is.Equal(s.Value(ctx, BatchAPI).String(), "10%") // first use reads the object
	is.Equal(reads, 1)

	object["HYBRID_V1_ENABLED"] = "off"
	now = now.Add(time.Minute - time.Nanosecond)
	is.Equal(s.Value(ctx, BatchAPI).String(), "10%") // within the TTL: the old value
	is.Equal(s.Value(ctx, LiveRuns).String(), "on")  // (other flags from the environment)
	is.Equal(reads, 1)                               // and no read

	now = now.Add(time.Nanosecond)
	is.Equal(s.Value(ctx, BatchAPI).String(), "off") // TTL passed: the new value
	is.Equal(reads, 2)
	is.Equal(s.Value(ctx, BatchAPI).String(), "off")
	is.Equal(reads, 2) // the reload restarted the TTL

	delete(object, "HYBRID_V1_ENABLED")
	now = now.Add(time.Minute)
	is.Equal(s.Value(ctx, BatchAPI).String(), "on") // no longer named: the environment's
	is.Equal(reads, 3)
}
