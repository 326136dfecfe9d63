package proc

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// TestMain is also the child Start runs in these tests: with PROC_TEST_CHILD
// "silent" it exits at once; with it otherwise set it says "ready", echoes
// every line upper-cased, and exits when its stdin closes.
func TestMain(m *testing.M) {
	switch os.Getenv("PROC_TEST_CHILD") {
	case "":
	case "silent":
		os.Exit(0)
	default:
		fmt.Println("ready", strings.Join(os.Args[1:], " "))
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			fmt.Println(strings.ToUpper(in.Text()))
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A child started again from this program says it is ready with the
// arguments it was given, answers each line asked, and exits when told.
func TestStart(t *testing.T) {
	is := is.New(t)
	c, first, err := Start(context.Background(), []string{"-serve", "x"}, "PROC_TEST_CHILD=1")
	is.NoErr(err)                     // the child starts
	is.Equal(first, "ready -serve x") // its first line, trimmed
	is.True(c.Pid() > 0)              // it has a process id
	rss, err := RSS(c.Pid())
	is.NoErr(err)    // the child's memory is readable
	is.True(rss > 0) // and resident
	for _, q := range []string{"sample", "wait 3"} {
		a, err := c.Ask(q)
		is.NoErr(err)                   // the child answers
		is.Equal(a, strings.ToUpper(q)) // with its own line
	}
	c.Stop()
	is.True(c.cmd.ProcessState.Exited()) // closing its stdin ended it
	_, err = c.Ask("again")
	is.True(err != nil) // a stopped child answers nothing
}

// A child that exits before its first line is an error, not a hang.
func TestStartFails(t *testing.T) {
	is := is.New(t)
	_, _, err := Start(context.Background(), nil, "PROC_TEST_CHILD=silent")
	is.True(err != nil) // the child wrote no first line
}

// This process's memory is read from /proc: the peak is at least the current.
func TestRSS(t *testing.T) {
	is := is.New(t)
	rss, err := RSS(os.Getpid())
	is.NoErr(err) // VmRSS read
	peak, err := PeakRSS(os.Getpid())
	is.NoErr(err)        // VmHWM read
	is.True(rss > 1<<20) // a Go test binary holds more than a MiB
	is.True(peak >= rss) // the high-water mark is not below the current
	_, err = status(os.Getpid(), "NoSuchField")
	is.True(err != nil) // a missing field is an error, not zero
}

// The load average has the three figures /proc/loadavg starts with.
func TestLoadAverage(t *testing.T) {
	is := is.New(t)
	is.Equal(len(strings.Fields(LoadAverage())), 3) // 1, 5 and 15 minutes
}
