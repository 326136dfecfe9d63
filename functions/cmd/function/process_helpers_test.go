package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/client"
)

// startFunctions starts bin once per target with env, PORT and
// FUNCTION_TARGET, plus what extra adds for that target, waits until each
// answers, and stops them when the test ends.
func startFunctions(t *testing.T, bin string, ports map[string]string, env []string, extra func(target string) []string, base func(target string) string) {
	t.Helper()
	is := is.New(t)
	for target, port := range ports {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), append(env, append([]string{"FUNCTION_TARGET=" + target, "PORT=" + port}, extra(target)...)...)...)
		cmd.Stderr = os.Stderr
		is.NoErr(cmd.Start()) // the function starts
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	for target := range ports {
		waitHealthy(t, base(target))
	}
}

// doneEvent is the part of a stream's done event the tests check.
type doneEvent struct {
	Status        string             `json:"status"`
	VariantCounts struct{ Done int } `json:"variantCounts"`
}

// followToDone reads a progress stream until its done event.
func followToDone(ctx context.Context, t *testing.T, c *client.Client, progressURL string) doneEvent {
	t.Helper()
	var done doneEvent
	_, err := c.Follow(ctx, progressURL, "", func(ev client.Event) error {
		if ev.Type == "done" {
			return json.Unmarshal(ev.Data, &done)
		}
		return nil
	})
	is.New(t).NoErr(err) // Progress streams to done
	return done
}
