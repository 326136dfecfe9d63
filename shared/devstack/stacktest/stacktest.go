// Package stacktest starts the embedded Cloud Storage emulator for tests and
// returns the production clients pointed at it.
package stacktest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/assetgen/assetgen/shared/cloud"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/devstack"
)

// TestBucket is the bucket test stacks create.
const TestBucket = "assetgen-test"

// Open starts an emulator on a free loopback port with a fresh
// directory, wrapped by faults (which may be nil), and returns the production
// clients pointed at it. Everything stops when the test ends.
func Open(tb testing.TB, faults *devstack.Faults) *cloud.Clients {
	tb.Helper()
	if faults == nil {
		return OpenWith(tb, nil)
	}
	return OpenWith(tb, faults.Wrap)
}

// OpenWith is Open with any handler between the clients and the emulator
// (nil for none): a test's own fault, at the moment it needs it.
func OpenWith(tb testing.TB, wrap func(http.Handler) http.Handler) *cloud.Clients {
	tb.Helper()
	o := devstack.GCSOptions{Addr: "127.0.0.1:0", Root: tb.TempDir(), Buckets: []string{TestBucket}, Wrap: wrap}
	g, err := devstack.StartGCS(o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Close(ctx)
	})
	env := map[string]string{"BUCKET": TestBucket, "STORAGE_EMULATOR_HOST": g.Addr, "SIGNING_KEY_FILE": tb.TempDir() + "/key.pem"}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		tb.Fatal(err)
	}
	c, err := cloud.Open(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}
