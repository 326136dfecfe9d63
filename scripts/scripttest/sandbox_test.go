package scripttest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The environment's names as terraform console answers them to deploy.sh:
// project region prefix source-bucket manage-source-bucket token-secret
// webhook-signing-keys image-base build-account submit generate progress.
const (
	project      = "proj-1"
	tokenSecret  = "ag-stg-progress-token-keys"
	hookSecret   = "ag-stg-webhook-signing-keys"
	imageBase    = "europe-west1-docker.pkg.dev/proj-1/ag-stg-images"
	buildAccount = "ag-stg-build@proj-1.iam.gserviceaccount.com"
	settings     = project + " europe-west1 ag-stg proj-1-ag-stg-source true " + tokenSecret + " " + hookSecret + " " +
		imageBase + " " + buildAccount + " ag-stg-submit ag-stg-generate ag-stg-progress"
)

// sandbox is a throwaway repository holding a copy of the script under test,
// with the stand-ins first on PATH.
type sandbox struct {
	t     *testing.T
	root  string // the repository
	stubs string // the stand-ins (STUB_DIR), first on PATH
	state string // what the stand-ins remember (STUB_STATE)
	log   string // one line per stand-in call (STUB_LOG)
	env   []string
}

// repoRoot is the real repository, two levels up.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func newSandbox(t *testing.T, script string) *sandbox {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	dir := t.TempDir()
	s := &sandbox{
		t: t, root: filepath.Join(dir, "repo"), stubs: filepath.Join(dir, "stubs"),
		state: filepath.Join(dir, "state"), log: filepath.Join(dir, "calls.log"),
	}
	for _, d := range []string{s.root, s.stubs, s.state, filepath.Join(dir, "tmp"), filepath.Join(dir, "home")} {
		mustMkdir(t, d)
	}
	copyFile(t, filepath.Join(repoRoot(t), "scripts", script), filepath.Join(s.root, "scripts", script), 0o755)
	stubs, err := filepath.Glob(filepath.Join("testdata", "stubs", "*"))
	if err != nil || len(stubs) == 0 {
		t.Fatalf("no stand-ins in testdata/stubs: %v", err)
	}
	for _, f := range stubs {
		if filepath.Base(f) == "package.sh" {
			copyFile(t, f, filepath.Join(s.root, "scripts", "package.sh"), 0o755)
			continue
		}
		copyFile(t, f, filepath.Join(s.stubs, filepath.Base(f)), 0o755)
	}
	s.env = []string{
		"PATH=" + s.stubs + string(os.PathListSeparator) + "/usr/local/bin:/usr/bin:/bin",
		"HOME=" + filepath.Join(dir, "home"),
		"TMPDIR=" + filepath.Join(dir, "tmp"),
		"LANG=C",
		"STUB_DIR=" + s.stubs, "STUB_STATE=" + s.state, "STUB_LOG=" + s.log, "STUB_SETTINGS=" + settings,
		"GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
	}
	return s
}

// write puts a file into the repository.
func (s *sandbox) write(rel, content string) {
	s.t.Helper()
	p := filepath.Join(s.root, rel)
	mustMkdir(s.t, filepath.Dir(p))
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// commit makes the repository's content its last commit.
func (s *sandbox) commit() {
	s.t.Helper()
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-q", "-m", "sandbox"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir, cmd.Env = s.root, s.env
		if out, err := cmd.CombinedOutput(); err != nil {
			s.t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
}

// fail makes the stand-in cmd fail times times ("always" for every call)
// with message when its arguments match glob.
func (s *sandbox) fail(cmd, glob, times, message string) {
	s.t.Helper()
	f, err := os.OpenFile(filepath.Join(s.stubs, "fail"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(cmd + "\t" + glob + "\t" + times + "\t" + message + "\n"); err != nil {
		s.t.Fatal(err)
	}
}

// run runs the script with bash in POSIX mode (which refuses some bash-only
// forms the script would otherwise get away with) and extra environment; it
// returns the combined output and the exit code.
func (s *sandbox) run(script string, env []string, args ...string) (string, int) {
	s.t.Helper()
	cmd := exec.Command("bash", append([]string{"--posix", filepath.Join("scripts", script)}, args...)...)
	cmd.Dir = s.root
	cmd.Env = append(append([]string{}, s.env...), env...)
	cmd.Stdin = strings.NewReader("")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit):
		return out.String(), exit.ExitCode()
	}
	s.t.Fatalf("run %s: %v", script, err)
	return "", -1
}

// call is one recorded stand-in invocation.
type call struct {
	Cmd  string
	Args []string
}

func (c call) String() string { return c.Cmd + " " + strings.Join(c.Args, " ") }

// has reports whether the call's arguments include every part.
func (c call) has(parts ...string) bool {
	for _, p := range parts {
		if !slices.Contains(c.Args, p) {
			return false
		}
	}
	return true
}

// calls returns every recorded invocation, in order.
func (s *sandbox) calls() []call {
	s.t.Helper()
	b, err := os.ReadFile(s.log)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		s.t.Fatal(err)
	}
	var out []call
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		f := strings.Split(line, "\x1f")
		out = append(out, call{Cmd: f[0], Args: f[1:]})
	}
	return out
}

// find returns the indexes of the calls of cmd whose first arguments are
// prefix (terraform's -chdir is skipped).
func find(calls []call, cmd string, prefix ...string) []int {
	var out []int
	for i, c := range calls {
		if c.Cmd != cmd {
			continue
		}
		args := c.Args
		if len(args) > 0 && strings.HasPrefix(args[0], "-chdir=") {
			args = args[1:]
		}
		if len(args) >= len(prefix) && slices.Equal(args[:len(prefix)], prefix) {
			out = append(out, i)
		}
	}
	return out
}

// state reads a file the stand-ins kept.
func (s *sandbox) stateFile(name string) string {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.state, name))
	if err != nil {
		s.t.Fatalf("stand-ins kept no %s: %v", name, err)
	}
	return string(b)
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	mustMkdir(t, filepath.Dir(to))
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

func mustMkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}
