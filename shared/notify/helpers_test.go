package notify

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/googleapis/gax-go/v2"
)

// tinyBackoff keeps retries fast in tests; the counts are what they assert.
var tinyBackoff = gax.Backoff{Initial: time.Millisecond, Max: 4 * time.Millisecond, Multiplier: 2}

// epoch is where the tests' signing clock starts.
var epoch = time.Unix(1_700_000_000, 0)

// tickingClock returns a clock that starts at epoch and moves one second on
// each reading, so each attempt's signature has its own timestamp.
func tickingClock() func() time.Time {
	var n atomic.Int64
	return func() time.Time { return epoch.Add(time.Duration(n.Add(1)-1) * time.Second) }
}

// testWebhooks is a deliverer with a tiny backoff and a ticking clock.
func testWebhooks(keys *SigningKeys, client *http.Client, maxElapsed time.Duration) *Webhooks {
	w := NewWebhooks(keys, client, maxElapsed)
	w.backoff = tinyBackoff
	w.now = tickingClock()
	return w
}

// received is one request a test server saw.
type received struct {
	method string
	path   string
	query  string
	header http.Header
	body   []byte
}

// recorder is a test server that records every request and answers the n-th
// (from 0) with respond(n).
type recorder struct {
	srv   *httptest.Server
	conns atomic.Int32

	mu   sync.Mutex
	reqs []received
}

func newRecorder(t *testing.T, tls bool, respond func(n int, w http.ResponseWriter)) *recorder {
	t.Helper()
	rec := &recorder{}
	rec.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		n := len(rec.reqs)
		rec.reqs = append(rec.reqs, received{
			method: r.Method, path: r.URL.EscapedPath(), query: r.URL.RawQuery, header: r.Header.Clone(), body: body,
		})
		rec.mu.Unlock()
		respond(n, w)
	}))
	rec.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			rec.conns.Add(1)
		}
	}
	if tls {
		rec.srv.StartTLS()
	} else {
		rec.srv.Start()
	}
	t.Cleanup(rec.srv.Close)
	return rec
}

func (rec *recorder) requests() []received {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]received(nil), rec.reqs...)
}

// statuses answers the n-th request with codes[n], and the last code after.
func statuses(codes ...int) func(int, http.ResponseWriter) {
	return func(n int, w http.ResponseWriter) {
		w.WriteHeader(codes[min(n, len(codes)-1)])
	}
}
