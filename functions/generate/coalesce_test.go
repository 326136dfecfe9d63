package generate

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/matryer/is"
)

// Callers that come while an update runs leave it to that run and return at
// once; the run makes the update once more after them, so it reads what they
// finished. Another key is not held up.
func TestLeadRunsOnceMoreForCallersThatCame(t *testing.T) {
	is := is.New(t)
	var c coalescer
	var runs atomic.Int32
	inFirst, release := make(chan struct{}), make(chan struct{})
	led := make(chan error, 1)
	go func() {
		led <- c.lead("b1", func() error {
			if runs.Add(1) == 1 {
				close(inFirst)
				<-release
			}
			return nil
		})
	}()
	<-inFirst
	for range 3 {
		is.NoErr(c.lead("b1", func() error { t.Error("a caller that came ran the update itself"); return nil }))
	}
	other := 0
	is.NoErr(c.lead("b2", func() error { other++; return nil })) // another batch runs its own
	is.Equal(other, 1)
	close(release)
	is.NoErr(<-led)
	is.Equal(runs.Load(), int32(2)) // the first run, then one more for the three that came

	is.NoErr(c.lead("b1", func() error { runs.Add(1); return nil }))
	is.Equal(runs.Load(), int32(3)) // with the run over, the next caller runs it itself
}

// A run that fails stops and reports the error to its own caller (whose task
// is retried): it does not loop on a failing update.
func TestLeadStopsAtAFailure(t *testing.T) {
	is := is.New(t)
	var c coalescer
	boom := errors.New("boom")
	inFirst, release := make(chan struct{}), make(chan struct{})
	led := make(chan error, 1)
	runs := 0
	go func() {
		led <- c.lead("b", func() error {
			runs++
			close(inFirst)
			<-release
			return boom
		})
	}()
	<-inFirst
	is.NoErr(c.lead("b", func() error { return nil })) // left to the failing run
	close(release)
	is.True(errors.Is(<-led, boom)) // the run's own caller learns of the failure
	is.Equal(runs, 1)               // and it was not run again
}

// An update any one run makes for all is made by one caller at a time: the
// others skip it.
func TestJoinSkipsWhileARunIsOn(t *testing.T) {
	is := is.New(t)
	var c coalescer
	inFirst, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	runs := 0
	wg.Go(func() {
		c.join("b/0", func() {
			runs++
			close(inFirst)
			<-release
		})
	})
	<-inFirst
	c.join("b/0", func() { t.Error("a caller ran the update while another run was on") })
	close(release)
	wg.Wait()
	c.join("b/0", func() { runs++ })
	is.Equal(runs, 2) // the first, and the one after it ended
}
