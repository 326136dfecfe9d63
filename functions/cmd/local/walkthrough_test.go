package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"
)

// docBlock is a fenced block of a document marked for the tests with an HTML
// comment on the line before it: <!-- walkthrough --> for commands to run,
// <!-- walkthrough: label --> for a block a test looks up by its label.
type docBlock struct {
	label, lang, text string
}

var docMarker = regexp.MustCompile(`^<!-- walkthrough(?::\s*([\w-]+))?\s*-->$`)

// docBlocks reads the marked blocks of a document of the repository, in order.
func docBlocks(t *testing.T, doc string) []docBlock {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", doc))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var out []docBlock
	for i := 0; i < len(lines); i++ {
		m := docMarker.FindStringSubmatch(strings.TrimSpace(lines[i]))
		if m == nil {
			continue
		}
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "```") {
			t.Fatalf("%s:%d: a walkthrough marker must stand right above a fenced block", doc, i+1)
		}
		blk := docBlock{label: m[1], lang: strings.TrimPrefix(lines[i+1], "```")}
		var body []string
		closed := false
		for i += 2; i < len(lines); i++ {
			if lines[i] == "```" {
				closed = true
				break
			}
			body = append(body, lines[i])
		}
		if !closed {
			t.Fatalf("%s: the walkthrough block %q is not closed", doc, blk.label)
		}
		blk.text = strings.Join(body, "\n") + "\n"
		out = append(out, blk)
	}
	return out
}

// labelled finds the one block with label.
func labelled(t *testing.T, blocks []docBlock, label string) docBlock {
	t.Helper()
	for _, b := range blocks {
		if b.label == label {
			return b
		}
	}
	t.Fatalf("no walkthrough block labelled %q", label)
	return docBlock{}
}

// walkthroughTools checks that the commands the documents use are installed:
// without them the test skips on a developer machine and fails in CI, which
// installs them (.ci/run).
func walkthroughTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			msg := tool + " is not installed (apt-get install " + tool + "): the documented commands cannot be run"
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

// blockSeparator is printed between the commands of two blocks, so each
// block's output can be told apart.
const blockSeparator = "@@ next walkthrough block @@"

// runBlocks runs the commands of blocks in one bash session, as a reader
// pastes them into one terminal: variables set by one block are there for
// the next. Any failing command, or any unset variable, fails the run. It
// returns each block's output, and the session's variables named in vars.
func runBlocks(t *testing.T, ctx context.Context, dir string, env []string, blocks []docBlock, vars ...string) (outputs []string, values map[string]string) {
	t.Helper()
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	for i, b := range blocks {
		if i > 0 {
			fmt.Fprintf(&script, "echo %q\n", blockSeparator)
		}
		script.WriteString(b.text)
	}
	for _, v := range vars {
		fmt.Fprintf(&script, "echo %q\nprintf '%%s\\n' \"$%s\"\n", blockSeparator, v)
	}
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir, cmd.Env = dir, env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("the walkthrough's commands failed (%v)\nscript:\n%s\nstdout:\n%s\nstderr:\n%s", err, script.String(), stdout.String(), stderr.String())
	}
	parts := strings.Split(stdout.String(), blockSeparator+"\n")
	if len(parts) != len(blocks)+len(vars) {
		t.Fatalf("want the output of %d blocks and %d variables, got %d parts:\n%s", len(blocks), len(vars), len(parts), stdout.String())
	}
	values = map[string]string{}
	for i, v := range vars {
		values[v] = strings.TrimSuffix(parts[len(blocks)+i], "\n")
	}
	return parts[:len(blocks)], values
}

// sseEvent is one event as curl prints a stream.
type sseEvent struct{ id, event, data string }

// parseSSE reads the events of a stream's text; the retry field before them
// is returned on its own.
func parseSSE(text string) (retry string, events []sseEvent) {
	var cur sseEvent
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		field, value, _ := strings.Cut(sc.Text(), ": ")
		switch field {
		case "retry":
			retry = value
		case "id":
			cur.id = value
		case "event":
			cur.event = value
		case "data":
			cur.data = value
		case "":
			if cur.event != "" {
				events = append(events, cur)
			}
			cur = sseEvent{}
		}
	}
	if cur.event != "" {
		events = append(events, cur)
	}
	return retry, events
}

// shape is a JSON value's structure: the keys of every object, recursively,
// with arrays reduced to their first element; leaves are their JSON type.
func shape(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = shape(e)
		}
		return out
	case []any:
		if len(x) == 0 {
			return []any{}
		}
		return []any{shape(x[0])}
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	default:
		return "null"
	}
}

// startWalkthroughStack starts the local stack with make run's settings (empty
// values are the defaults) behind a proxy, and answers the proxy's origin,
// which the stack's answers name. A reader pastes the submit and the stream
// at once, and a default dry run takes a second or two; on a machine busy
// enough to take longer to start curl, the batch could finish first and the
// stream answer 204 instead of its events. So task deliveries wait until the
// proxy has passed on a stream's first answer: the batch runs while the
// walk-through's stream watches, however slowly the commands start.
func startWalkthroughStack(t *testing.T) string {
	t.Helper()
	gate := make(chan struct{})
	var open sync.Once
	var upstream *url.URL
	front := httptest.NewUnstartedServer(&httputil.ReverseProxy{
		FlushInterval: -1, // events pass as they come
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(upstream) },
		ModifyResponse: func(resp *http.Response) error {
			if strings.HasPrefix(resp.Request.URL.Path, "/progress/") && resp.StatusCode == http.StatusOK {
				open.Do(func() { close(gate) })
			}
			return nil
		},
	})
	t.Cleanup(front.Close)
	origin := "http://" + front.Listener.Addr().String()
	a := startAppWith(t, map[string]string{
		"SSE_HEARTBEAT": "", "SSE_POLL_MIN": "", "SSE_POLL_MAX": "", "LOG_LEVEL": "",
		"PUBLIC_BASE_URL": origin,
	}, options{deliveries: &http.Client{Transport: gated{gate: gate, next: http.DefaultTransport}}})
	t.Cleanup(func() { open.Do(func() { close(gate) }) }) // before the stack stops
	u, err := url.Parse(a.base)
	if err != nil {
		t.Fatal(err)
	}
	upstream = u
	front.Start()
	return origin
}

// The README's walk-through, run as written against a local stack wired as
// `make run` wires it (only the ports differ, and deliveries wait for the
// stream: startWalkthroughStack): the submit sets SUB and
// BATCH, the stream prints events ending with done, a stream opened after that
// answers 204, an image is fetched through its signed URL, and the cancel and
// history commands print what the README says. The answer shown in the README
// has the fields of the real one.
func TestWalkthroughRunsAsWritten(t *testing.T) {
	walkthroughTools(t, "bash", "curl", "jq")
	is := is.New(t)
	blocks := docBlocks(t, "README.md")
	var commands []docBlock
	for _, b := range blocks {
		if b.label == "" {
			is.Equal(b.lang, "sh") // commands are shell
			commands = append(commands, b)
		}
	}
	is.True(len(commands) >= 4) // submit and stream, 204, image, cancel and history

	base := startWalkthroughStack(t)
	const documented = "http://127.0.0.1:8080"
	for i := range commands {
		if strings.Contains(commands[i].text, "8080") {
			is.True(strings.Contains(commands[i].text, documented)) // the README names make run's address
		}
		commands[i].text = strings.ReplaceAll(commands[i].text, documented, base)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	out, vars := runBlocks(t, ctx, dir, os.Environ(), commands, "SUB", "BATCH")

	// 1. The submit's answer, printed by jq, then the stream.
	var answer map[string]any
	is.NoErr(json.Unmarshal([]byte(vars["SUB"]), &answer)) // SUB holds the submit's JSON answer
	batchID, _ := answer["batchId"].(string)
	is.True(batchID != "")                                                  // with a batch id
	is.Equal(vars["BATCH"], batchID)                                        // BATCH is set to it
	is.True(strings.HasPrefix(out[0], "{\n  \"batchId\": \""+batchID+"\"")) // jq printed the answer
	retry, events := parseSSE(out[0][strings.Index(out[0], "\nretry: ")+1:])
	is.Equal(retry, "2000") // the stream opened, with its reconnect delay
	is.True(len(events) >= 3)
	var names []string
	for _, e := range events {
		names = append(names, e.event)
	}
	is.True(slices.Contains(names, "row"))   // rows arrived
	is.True(slices.Contains(names, "batch")) // with totals
	last := events[len(events)-1]
	is.Equal(last.event, "done") // the stream ended with done
	var done struct {
		Status        string         `json:"status"`
		VariantCounts map[string]int `json:"variantCounts"`
	}
	is.NoErr(json.Unmarshal([]byte(last.data), &done))
	is.Equal(done.Status, "done")              // the batch is done
	is.Equal(done.VariantCounts["done"], 5)    // with its 3 + 2 images
	is.True(!strings.Contains(out[0], "ping")) // nothing but progress before done

	// The README's answer has the real answer's fields, and its stream the
	// real stream's kinds of event.
	var shown any
	is.NoErr(json.Unmarshal([]byte(labelled(t, blocks, "answer").text), &shown)) // the README's answer is JSON
	is.Equal(shape(shown), shape(answer))                                        // with the fields the submit answers
	_, shownEvents := parseSSE(labelled(t, blocks, "stream").text)
	is.True(len(shownEvents) > 0)
	for _, e := range shownEvents {
		is.True(slices.Contains(names, e.event)) // every event the README shows is one the stream sends
	}
	is.Equal(shownEvents[len(shownEvents)-1].event, "done") // ending with done, as the real one

	// 2. The stream of a finished batch.
	is.Equal(strings.TrimSpace(out[1]), "204") // answers 204 No Content

	// 3. An image through its signed URL.
	png, err := os.ReadFile(filepath.Join(dir, "lighthouse.png"))
	is.NoErr(err)                                              // the image was saved
	is.True(bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n"))) // and is a PNG

	// 4. Cancel, the lasting link and the history.
	var cancelled struct {
		Kept     int  `json:"kept"`
		Finished bool `json:"finished"`
	}
	dec := json.NewDecoder(strings.NewReader(out[3]))
	is.NoErr(dec.Decode(&cancelled)) // jq printed the cancel's account
	is.Equal(cancelled.Kept, 5)      // every image of the finished batch is kept
	is.True(cancelled.Finished)
	rest := out[3][dec.InputOffset():]
	is.True(strings.Contains(rest, base+"/assets/"+batchID+"/0/0?token=")) // the lasting link of the first image
	is.True(strings.Contains(rest, `"submitted"`))                         // the history's entries
	is.True(strings.Contains(rest, `"accepted"`))                          // and its snapshots
}

// The housekeeping command of docs/operations.md, run as written from the
// repository root against a local stack started as `make run` starts it (its
// ports and data dir told to the command as the document says): the job finds
// the stack's keys and queues and examines the stack's batch.
func TestOperationsHousekeepingRunsAsWritten(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the housekeeping job")
	}
	walkthroughTools(t, "bash", "go")
	is := is.New(t)
	blk := labelled(t, docBlocks(t, "docs/operations.md"), "housekeeping")
	is.Equal(blk.lang, "sh")

	s := startStack(t, map[string]string{"SSE_HEARTBEAT": "", "SSE_POLL_MIN": "", "SSE_POLL_MAX": "", "LOG_LEVEL": ""})
	printed := strings.Join(s.lines, "\n")
	addr := func(name string) string {
		m := regexp.MustCompile(name + `=(\S+)`).FindStringSubmatch(printed)
		if m == nil {
			t.Fatalf("the stack did not print %s:\n%s", name, printed)
		}
		return m[1]
	}
	dryQueue := regexp.MustCompile(`dry runs (\S+)`).FindStringSubmatch(printed)
	is.True(dryQueue != nil)                                                    // the stack names its dry-run queue
	is.True(strings.Contains(blk.text, "TASKS_DRY_RUN_QUEUE="+dryQueue[1]+" ")) // the document names the same
	for documented, actual := range map[string]string{
		"http://127.0.0.1:8080": s.base,
		"127.0.0.1:4443":        addr("STORAGE_EMULATOR_HOST"),
		"127.0.0.1:8123":        addr("TASKS_EMULATOR_HOST"),
	} {
		is.True(strings.Contains(blk.text, documented)) // the document names make run's addresses
		blk.text = strings.ReplaceAll(blk.text, documented, actual)
	}
	s.submit(t, `{"runMode":"dry_run","rows":[{"prompt":"for the housekeeping job"}]}`)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := append(os.Environ(), "DATA_DIR="+s.env["DATA_DIR"])
	out, _ := runBlocks(t, ctx, filepath.Join("..", "..", ".."), env, []docBlock{blk})
	lines := strings.Split(strings.TrimSpace(out[0]), "\n")
	summary := lines[len(lines)-1]
	is.True(strings.HasPrefix(summary, "housekeeping: examined 1 batches")) // the stack's batch was examined
	is.True(strings.HasSuffix(summary, "0 errors (dry run: yes)"))          // without an error, changing nothing
}
