package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/openapi/openapitest"
)

// Every answer a test of this package gets from a local stack is checked
// against the OpenAPI document: TestMain puts a checking transport under
// every HTTP client that does not bring its own (http.Get, the Go client, the
// event streams), so the end-to-end tests keep the document true as a side
// effect. An answer the document does not allow fails the request that got
// it (a stream fails at the event), and the run at its end.
func TestMain(m *testing.M) {
	c, err := openapitest.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	contract.checker = c
	http.DefaultTransport = &contractTransport{next: http.DefaultTransport, report: contract.report}
	code := m.Run()
	if fails := contract.failures(); len(fails) > 0 {
		fmt.Fprintf(os.Stderr, "%d answers broke the OpenAPI document (shared/openapi/openapi.json):\n", len(fails))
		for _, err := range fails {
			fmt.Fprintln(os.Stderr, " -", err)
		}
		code = 1
	}
	os.Exit(code)
}

// contract is what the checking transport shares across tests.
var contract = &contractState{}

type contractState struct {
	checker *openapitest.Checker
	// stacks are the host:port of the local stacks under test: only their
	// answers are the API's (signed URLs, fake models and webhook receivers
	// are not).
	stacks sync.Map
	mu     sync.Mutex
	broken []error
}

// serving marks base as a local stack whose answers are checked, until the
// test ends (its port may serve something else afterwards).
func serving(tb testing.TB, base string) {
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	contract.stacks.Store(u.Host, true)
	tb.Cleanup(func() { contract.stacks.Delete(u.Host) })
}

func (c *contractState) report(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.broken = append(c.broken, err)
}

func (c *contractState) failures() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]error(nil), c.broken...)
}

// contractTransport checks every answer of a local stack against the
// document on its way to the caller.
type contractTransport struct {
	next   http.RoundTripper
	report func(error)
}

func (t *contractTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if _, ok := contract.stacks.Load(req.URL.Host); !ok {
		return resp, nil
	}
	if err := contract.checker.Check(req, resp, t.report); err != nil {
		t.report(err)
		resp.Body.Close()
		return nil, err
	}
	return resp, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport underneath.
func (t *contractTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// The checking transport itself: an answer the document allows arrives
// unchanged, one it does not allow fails the request and is reported.
func TestAnswersAreCheckedAgainstTheDocument(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := startAppWith(t, nil, options{})
	resp, err := http.Get(a.base + "/openapi.json")
	is.NoErr(err) // the document itself is served as it describes
	resp.Body.Close()
	is.Equal(resp.Header.Get("Content-Type"), "application/json")

	var reported []error
	bad := &contractTransport{report: func(err error) { reported = append(reported, err) },
		next: roundTrip(func(r *http.Request) (*http.Response, error) {
			resp, err := http.DefaultTransport.RoundTrip(r)
			if err == nil {
				resp.Header.Set("X-Undocumented", "1")
			}
			return resp, err
		})}
	_, err = (&http.Client{Transport: bad}).Get(a.base + "/models")
	is.True(err != nil)                                      // an answer with an undocumented header fails the request
	is.True(strings.Contains(err.Error(), "X-Undocumented")) // naming what the document lacks
	is.Equal(len(reported), 1)                               // and is reported to the run
}

// The console's answers are part of the document too.
func TestConsoleAnswersAreTheDocuments(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := startAppWith(t, nil, options{})
	for _, path := range []string{"/", "/console/", "/console/config.js"} {
		resp, err := http.Get(a.base + path)
		is.NoErr(err) // checked against the document on the way
		resp.Body.Close()
		is.Equal(resp.StatusCode, http.StatusOK)
		req, _ := http.NewRequest(http.MethodGet, a.base+path, nil)
		req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
		again, err := http.DefaultClient.Do(req)
		is.NoErr(err) // so is the revalidation
		again.Body.Close()
		is.Equal(again.StatusCode, http.StatusNotModified)
	}
	resp, err := http.Get(a.base + "/console/missing.js")
	is.NoErr(err) // and the plain 404 of a file that is not there
	resp.Body.Close()
	is.Equal(resp.StatusCode, http.StatusNotFound)
}

// What the document's operations leave out is refused as it says: a method
// a path does not serve, and a path nothing serves.
func TestRefusalsAreTheDocuments(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := startAppWith(t, nil, options{})
	req, _ := http.NewRequest(http.MethodDelete, a.base+"/batch/01900000-0000-7000-8000-000000000000", nil)
	resp, err := http.DefaultClient.Do(req)
	is.NoErr(err) // checked against #/components/responses/MethodNotAllowed
	resp.Body.Close()
	is.Equal(resp.StatusCode, http.StatusMethodNotAllowed)
	is.Equal(resp.Header.Get("Allow"), "GET")
	resp, err = http.Get(a.base + "/nothing/here")
	is.NoErr(err) // checked against #/components/responses/NotFound
	resp.Body.Close()
	is.Equal(resp.StatusCode, http.StatusNotFound)
}
