package main

import (
	"testing"
	"time"

	"github.com/matryer/is"
)

func TestCursorComplete(t *testing.T) {
	t.Parallel()
	started := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	capID := idFloor(started.Add(-lateManifest))
	older := idAt(started.Add(-72 * time.Hour))
	newer := idAt(started.Add(-time.Hour))
	tests := []struct {
		name        string
		floor, open string
		want        string
	}{
		{"nothing open: the floor rises to the cap", "", "", capID},
		{"an old open batch holds it there", "", older, older},
		{"a recent open batch: the cap still applies", "", newer, capID},
		{"the floor never goes down", capID, older, capID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			c := cursor{Floor: tt.floor, Pass: &pass{Started: started, Top: newer, Next: "", Open: tt.open}}
			c.complete()
			is.Equal(c.Floor, tt.want)
			is.Equal(c.Pass, nil)
		})
	}
}
