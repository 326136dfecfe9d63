package scripttest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// TestSmokeWithTokenFile: smoke.sh reads the credential from --token-file and
// hands it to curl and the load client without a command line ever holding
// it; it checks that submit and progress are ready on paths that do not end
// in z, that generate refuses outsiders, and runs one dry-run batch.
func TestSmokeWithTokenFile(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newSandbox(t, "smoke.sh")
	s.commit()
	token := "eyJhbGciOiJSUzI1NiJ9.smoke-token.signature"
	file := filepath.Join(t.TempDir(), "token")
	is.NoErr(os.WriteFile(file, []byte(token+"\n"), 0o600)) // the minted token, as gcloud writes it

	out, code := s.run("smoke.sh", []string{"GENERATE_URL=https://ag-stg-generate-123.europe-west1.run.app"},
		"--token-file", file, "https://ag-stg-submit-123.europe-west1.run.app", "https://ag-stg-progress-123.europe-west1.run.app")
	is.Equal(code, 0) // the smoke test passes
	calls := s.calls()

	var urls []string
	for _, i := range find(calls, "curl") {
		c := calls[i]
		u := c.Args[len(c.Args)-1]
		urls = append(urls, u)
		is.True(!strings.HasSuffix(strings.TrimRight(u, "/"), "z")) // no path ending in z: Cloud Run reserves some
	}
	is.Equal(urls, []string{
		"https://ag-stg-submit-123.europe-west1.run.app/ready",
		"https://ag-stg-progress-123.europe-west1.run.app/ready",
		"https://ag-stg-generate-123.europe-west1.run.app/",
	}) // submit and progress are ready, generate refuses outsiders
	is.True(strings.Contains(s.stateFile("curl-config"), "Authorization: Bearer "+token)) // curl gets the token through stdin

	run := find(calls, "go", "run", "./scripts/loadtest")
	is.Equal(len(run), 1)                                          // one dry-run batch
	is.True(calls[run[0]].has("-token-env", "ASSETGEN_TOKEN"))     // the load client reads the token from its environment
	is.Equal(s.stateFile("go-token"), token)                       // the token it finds there
	is.True(!strings.Contains(s.stateFile("../calls.log"), token)) // no command line holds the token
	is.True(!strings.Contains(out, token))                         // nor the output
}

// TestSmokeWithoutToken: against `make run` (no credential, one origin)
// smoke.sh checks submit only and runs the batch without a token.
func TestSmokeWithoutToken(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newSandbox(t, "smoke.sh")
	s.commit()
	_, code := s.run("smoke.sh", nil, "http://127.0.0.1:8080")
	is.Equal(code, 0) // the smoke test passes
	calls := s.calls()
	is.Equal(len(find(calls, "curl")), 1) // submit only: progress is the same origin
	run := find(calls, "go", "run", "./scripts/loadtest")
	is.Equal(len(run), 1)                     // one dry-run batch
	is.True(!calls[run[0]].has("-token-env")) // without a credential
}

// TestSmokeFailsWhenAFunctionDoesNotStart: a function answering anything but
// 200 fails the smoke test before a batch is submitted.
func TestSmokeFailsWhenAFunctionDoesNotStart(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	s := newSandbox(t, "smoke.sh")
	s.commit()
	s.fail("curl", "*/ready", "always", "curl: (22) The requested URL returned error: 503")
	out, code := s.run("smoke.sh", nil, "https://ag-stg-submit-123.europe-west1.run.app")
	is.True(code != 0)                      // the smoke test fails
	is.True(strings.Contains(out, "FAIL"))  // and says so
	is.Equal(len(find(s.calls(), "go")), 0) // without submitting a batch
}
