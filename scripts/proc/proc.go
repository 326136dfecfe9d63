// Package proc is what the measuring programs under scripts/ share about
// processes: running this program again as a child that talks over its
// stdin and stdout, and reading a process's memory and the machine's load
// from /proc (Linux only).
package proc

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Child is this program started again with other arguments. It speaks in
// lines: its first line of stdout says it is ready, Ask sends it one line
// and reads one back, and closing its stdin tells it to finish. The child
// side of that protocol finishes when a read of os.Stdin ends.
type Child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// Start runs this program's executable with args, env added to this
// process's environment and stderr shared with this process, and returns
// once the child has written its first line, which it returns without the
// surrounding space. The child is stopped when ctx ends.
func Start(ctx context.Context, args []string, env ...string) (*Child, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", fmt.Errorf("proc: finding this program: %w", err)
	}
	cmd := exec.CommandContext(ctx, self, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, "", fmt.Errorf("proc: child's stdin: %w", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", fmt.Errorf("proc: child's stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("proc: starting %s: %w", strings.Join(args, " "), err)
	}
	c := &Child{cmd: cmd, in: in, out: bufio.NewReader(out)}
	line, err := c.out.ReadString('\n')
	if err != nil {
		c.Stop()
		return nil, "", fmt.Errorf("proc: %s did not start: %q: %w", strings.Join(args, " "), line, err)
	}
	return c, strings.TrimSpace(line), nil
}

// Pid is the child's process id.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Ask sends the child one line and returns the line it answers with,
// without the surrounding space.
func (c *Child) Ask(line string) (string, error) {
	if _, err := fmt.Fprintln(c.in, line); err != nil {
		return "", fmt.Errorf("proc: asking %q: %w", line, err)
	}
	answer, err := c.out.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("proc: answer to %q: %w", line, err)
	}
	return strings.TrimSpace(answer), nil
}

// Stop closes the child's stdin and waits for it to exit.
func (c *Child) Stop() {
	_ = c.in.Close()
	_ = c.cmd.Wait()
}

// RSS is the resident set size of process pid, in bytes.
func RSS(pid int) (int64, error) { return status(pid, "VmRSS") }

// PeakRSS is the largest resident set size process pid has had, in bytes.
func PeakRSS(pid int) (int64, error) { return status(pid, "VmHWM") }

// status reads a kB field of /proc/<pid>/status, in bytes.
func status(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("proc: reading a process's memory (Linux /proc only): %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("proc: /proc/%d/status %s: %w", pid, field, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("proc: /proc/%d/status has no %s", pid, field)
}

// LoadAverage is the machine's load average over 1, 5 and 15 minutes as
// /proc/loadavg shows it ("0.52 0.48 0.40"), or "?" where it cannot be read.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
