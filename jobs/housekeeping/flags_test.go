package main

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

func TestParseFlags(t *testing.T) {
	t.Parallel()
	none := func(string) string { return "" }
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "HISTORY_RETENTION" {
				return v
			}
			return ""
		}
	}
	t.Run("defaults", func(t *testing.T) {
		is := is.New(t)
		o, err := parseFlags(nil, none, io.Discard)
		is.NoErr(err)
		is.Equal(o, options{maxRows: 500, maxBatches: 200, maxObjects: 5000, retention: 720 * time.Hour, stuckAfter: 15 * time.Minute})
	})
	t.Run("every flag", func(t *testing.T) {
		is := is.New(t)
		o, err := parseFlags([]string{"--dry-run", "--max-rows=10", "--max-batches", "3", "--max-objects=7", "--retention=100h", "--stuck-after=20m"}, none, io.Discard)
		is.NoErr(err)
		is.Equal(o, options{dryRun: true, maxRows: 10, maxBatches: 3, maxObjects: 7, retention: 100 * time.Hour, stuckAfter: 20 * time.Minute})
	})
	t.Run("retention from the environment, the flag wins", func(t *testing.T) {
		is := is.New(t)
		o, err := parseFlags(nil, env("240h"), io.Discard)
		is.NoErr(err)
		is.Equal(o.retention, 240*time.Hour)
		o, err = parseFlags([]string{"--retention=48h"}, env("240h"), io.Discard)
		is.NoErr(err)
		is.Equal(o.retention, 48*time.Hour)
	})
	for _, tt := range []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"bad environment", nil, "30d", "HISTORY_RETENTION"},
		{"short retention", []string{"--retention=24h"}, "", "--retention"},
		{"short stuck-after", []string{"--stuck-after=10s"}, "", "--stuck-after"},
		{"zero bound", []string{"--max-batches=0"}, "", "--max-batches"},
		{"arguments", []string{"now"}, "", "unexpected arguments"},
		{"unknown flag", []string{"--force"}, "", "not defined"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			_, err := parseFlags(tt.args, env(tt.env), io.Discard)
			is.True(err != nil)
			is.True(strings.Contains(err.Error(), tt.want)) // the error names the culprit
		})
	}
	t.Run("help", func(t *testing.T) {
		is := is.New(t)
		var out strings.Builder
		_, err := parseFlags([]string{"-h"}, none, &out)
		is.True(errors.Is(err, flag.ErrHelp))
		is.True(strings.Contains(out.String(), "-max-batches"))
	})
}
