package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/matryer/is"
)

func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.0.0.2": true, "::1": true, "[::1]": true, "localhost": true, "LOCALHOST": true,
		"": false, "0.0.0.0": false, "::": false, "192.168.1.20": false, "10.0.0.1": false, "example.com": false, "localhost.example.com": false,
	} {
		t.Run(host, func(t *testing.T) {
			is := is.New(t)
			is.Equal(loopbackHost(host), want)
		})
	}
}

// The local stack trusts X-Assetgen-User under AUTH_MODE=none, so it refuses
// to listen beyond loopback in that mode, with a one-line reason that says
// what to set, before it binds anything.
func TestNoAuthStackRefusesANonLoopbackHost(t *testing.T) {
	t.Parallel()
	for _, host := range []string{"0.0.0.0", "192.0.2.1", "::"} {
		t.Run("HOST="+host, func(t *testing.T) {
			is := is.New(t)
			env := map[string]string{
				"PORT": "0", "DATA_DIR": t.TempDir(), "LOCAL_GCS_ADDR": "127.0.0.1:0", "LOCAL_TASKS_ADDR": "127.0.0.1:0",
			}
			getenv := func(k string) string {
				if k == "HOST" {
					return host
				}
				return env[k]
			}
			// Already cancelled: a stack that wrongly starts stops at once
			// instead of serving until the test times out.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var stdout bytes.Buffer
			err := run(ctx, nil, getenv, &stdout, io.Discard)
			is.True(err != nil)                                      // refused
			is.True(strings.Contains(err.Error(), "AUTH_MODE=none")) // says why
			is.True(strings.Contains(err.Error(), "HOST=127.0.0.1")) // and what to set
			is.True(!strings.Contains(err.Error(), "\n"))            // on one line
			is.Equal(stdout.Len(), 0)                                // nothing started
		})
	}
	is := is.New(t)
	is.NoErr(checkExposure("0.0.0.0", "apikey")) // a real authenticator may serve the network
	is.NoErr(checkExposure("127.0.0.1", "none")) // loopback needs none
}
