package progress

// The harness of the stream tests: the progress handler served by httptest over
// the in-process Cloud Storage emulator, batches written straight into the
// ledger so a test controls every change, and a Server-Sent Events client (the
// Go client's reader) that timestamps what it receives. Nothing here sleeps: tests wait on events
// read from streams, on Hub.WaitIdle and on channels, bounded by contexts.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/client"
	"github.com/assetgen/assetgen/shared/cloud"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/devstack/stacktest"
	"github.com/assetgen/assetgen/shared/health"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/ledgerstore"
	"github.com/assetgen/assetgen/shared/urls"
)

// testConfig is the hub configuration of the tests: fast polls and pings.
func testConfig() Config {
	return Config{
		PollMin:       20 * time.Millisecond,
		PollMax:       100 * time.Millisecond,
		Heartbeat:     50 * time.Millisecond,
		MaxDuration:   time.Hour,
		Retry:         time.Second,
		RefreshBefore: time.Second,
		WriteTimeout:  5 * time.Second,
	}
}

// testCtx bounds a test: every wait in it ends by this deadline.
func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// stack is one emulator and the production clients pointed at it: what every
// progress instance of a test shares, like instances share one bucket.
type stack struct {
	clients *cloud.Clients
	faults  *devstack.Faults
}

func newStack(t testing.TB, faults *devstack.Faults) *stack {
	t.Helper()
	return &stack{clients: stacktest.Open(t, faults), faults: faults}
}

// shortSigner signs URLs that live ttl, with a fresh local key.
func (s *stack) shortSigner(t testing.TB, ttl time.Duration) *urls.Signer {
	t.Helper()
	key, err := urls.LoadOrCreateKey(t.TempDir() + "/key.pem")
	if err != nil {
		t.Fatal(err)
	}
	sg, err := urls.New(s.clients.Storage.Bucket(stacktest.TestBucket), urls.Options{TTL: ttl, GoogleAccessID: urls.LocalAccessID, PrivateKey: key, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	return sg
}

// instance is one progress service: a hub and its handler on a test server.
type instance struct {
	hub    *Hub
	srv    *httptest.Server
	client *http.Client
	tr     *http.Transport
}

// newInstance serves a fresh hub over the stack's store. sign nil means the
// stack's signer. When the test ends, the hub is closed, the streams drain and
// the server stops.
func (s *stack) newInstance(t testing.TB, cfg Config, sign api.SignFunc) *instance {
	t.Helper()
	if sign == nil {
		sign = s.clients.Signer.Sign
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := New(cfg, Deps{Store: s.clients.Ledger, Sign: sign, Auth: auth.None{}, Ready: health.NewReadiness(time.Second), Log: log})
	hub := svc.Hub
	srv := httptest.NewServer(svc)
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 4}
	in := &instance{hub: hub, srv: srv, tr: tr, client: &http.Client{Transport: tr}}
	t.Cleanup(func() {
		hub.Close()
		tr.CloseIdleConnections()
		srv.CloseClientConnections()
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hub.WaitIdle(ctx); err != nil {
			t.Errorf("hub not idle at the end of the test: %v (%+v)", err, hub.Stats())
		}
	})
	return in
}

// --- Ledger driver -----------------------------------------------------------

// driver writes a batch's ledger the way the generate function does, one
// transition at a time, so a test knows every version a client may see.
type driver struct {
	t     testing.TB
	store *ledgerstore.Store
	m     *ledger.Manifest
}

// newBatch creates a batch of rows with variants images each; each prompt is
// promptLen bytes long (large frames for the slow-client test).
func (s *stack) newBatch(t testing.TB, rows, variants, promptLen int) *driver {
	t.Helper()
	m := &ledger.Manifest{Schema: 1, BatchID: batch.NewID(), Owner: auth.LocalUser, RunMode: ledger.DryRun,
		Model: "gemini-2.5-flash-image", CreatedAt: time.Now().UTC()}
	for i := range rows {
		p := fmt.Sprintf("row %d: a watercolour fox ", i)
		if promptLen > len(p) {
			p += strings.Repeat("x", promptLen-len(p))
		}
		m.Rows = append(m.Rows, ledger.ManifestRow{Index: i, Prompt: p, Variants: variants, AspectRatio: "1:1"})
	}
	if err := s.clients.Ledger.CreateManifest(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	return &driver{t: t, store: s.clients.Ledger, m: m}
}

func (d *driver) id() string { return d.m.BatchID }

func (d *driver) op() ledger.Op {
	return ledger.Op{Actor: "test", RequestID: "req-test", Now: time.Now().UTC()}
}

// update applies one transition and returns the row as written.
func (d *driver) update(row int, fn func(ledger.Row) (ledger.Row, error)) ledger.Row {
	d.t.Helper()
	r, err := d.store.UpdateRow(context.Background(), d.m, row, fn)
	if err != nil {
		d.t.Fatalf("row %d: %v", row, err)
	}
	return r
}

// start leases the row to the test's attempt (again and again: each call is a
// new version while the row runs).
func (d *driver) start(row int) ledger.Row {
	return d.update(row, func(r ledger.Row) (ledger.Row, error) { return ledger.Start(r, d.op(), "test-attempt", time.Hour) })
}

// image stores variant's image and records it.
func (d *driver) image(row, variant int) ledger.Row {
	d.t.Helper()
	name := ledger.ImageObject(d.id(), row, variant, ".png")
	if _, err := d.store.PutImage(context.Background(), name, "image/png", []byte("\x89PNG\r\n\x1a\nnot really")); err != nil {
		d.t.Fatal(err)
	}
	return d.update(row, func(r ledger.Row) (ledger.Row, error) {
		return ledger.RecordVariants(r, d.op(), "test-attempt", []ledger.VariantResult{{Index: variant, Object: name, CostUSD: 0}})
	})
}

// finish makes the row final: as its attempt ends it, or, for a row the test
// never started, as housekeeping closes it.
func (d *driver) finish(row int) ledger.Row {
	return d.update(row, func(r ledger.Row) (ledger.Row, error) {
		stop := &ledger.Failure{Code: "TEST", Message: "stopped by the test"}
		if r.Lease == nil {
			return ledger.Close(r, d.op(), stop)
		}
		return ledger.Finish(r, d.op(), "test-attempt", stop)
	})
}

// writeFinal writes the batch's completion marker, as the finisher does.
func (d *driver) writeFinal() {
	d.t.Helper()
	rows, err := d.store.Rows(context.Background(), d.m)
	if err != nil {
		d.t.Fatal(err)
	}
	if _, _, err := d.store.Advance(context.Background(), d.id(), d.op(), func(cur *ledger.State, op ledger.Op) (ledger.State, error) {
		return ledger.FinishBatch(cur, d.id(), rows, op)
	}); err != nil {
		d.t.Fatal(err)
	}
}

// --- SSE client --------------------------------------------------------------

// event is one dispatched Server-Sent Event.
type event struct {
	ID     string // the id field of this event's block, if any
	LastID string // EventSource's last event id after this event
	Type   string
	Data   string
	At     time.Time // when the client read it
}

// row decodes an event: row.
func (e event) row(t testing.TB) api.Row {
	t.Helper()
	var r api.Row
	if err := json.Unmarshal([]byte(e.Data), &r); err != nil {
		t.Fatalf("event %s: %v: %.200s", e.Type, err, e.Data)
	}
	return r
}

// sse is one open stream; a goroutine parses it into events.
type sse struct {
	t      testing.TB
	resp   *http.Response
	events chan event
	done   chan struct{} // closed by close: the reader stops
	err    error         // why the stream ended; read after events closes
	cancel context.CancelFunc
	opened time.Time // when the response headers arrived
	retry  chan int  // the retry field, once
	log    []event   // every event next returned
}

// get sends GET /progress/{batchId} with an optional Last-Event-ID.
func (in *instance) get(ctx context.Context, batchID, lastID string) (*http.Response, context.CancelFunc, error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.srv.URL+"/progress/"+batchID, nil)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := in.client.Do(req)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return resp, cancel, nil
}

// open connects and expects a 200 event stream.
func (in *instance) open(ctx context.Context, t testing.TB, batchID, lastID string) *sse {
	t.Helper()
	resp, cancel, err := in.get(ctx, batchID, lastID)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("GET /progress/%s: %d %s: %s", batchID, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	s := &sse{t: t, resp: resp, events: make(chan event, 64), done: make(chan struct{}), cancel: cancel, opened: time.Now(), retry: make(chan int, 1)}
	go s.read(lastID)
	t.Cleanup(s.close)
	return s
}

// status connects and returns the status of a request that is not a stream,
// with its body.
func (in *instance) status(ctx context.Context, t testing.TB, batchID, lastID string) (*http.Response, []byte) {
	t.Helper()
	resp, cancel, err := in.get(ctx, batchID, lastID)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// read turns the stream into events with the Go client's reader, stamping
// each with the time it arrived.
func (s *sse) read(lastID string) {
	defer close(s.events)
	events := client.NewEventReader(s.resp.Body, lastID)
	retried := false
	for {
		ev, err := events.Next()
		if err != nil {
			s.err = err
			return
		}
		if d := events.Retry(); d > 0 && !retried {
			s.retry <- int(d.Milliseconds())
			retried = true
		}
		e := event{ID: ev.ID, LastID: ev.LastID, Type: ev.Type, Data: string(ev.Data), At: time.Now()}
		select {
		case s.events <- e:
		case <-s.done:
			s.err = errors.New("closed by the test")
			return
		}
	}
}

// next returns the next event; io.EOF once the server ended the stream.
func (s *sse) next(ctx context.Context) (event, error) {
	select {
	case <-ctx.Done():
		return event{}, fmt.Errorf("waiting for an event: %w", ctx.Err())
	case e, ok := <-s.events:
		if !ok {
			return event{}, s.err
		}
		s.log = append(s.log, e)
		return e, nil
	}
}

// until reads events until one satisfies ok, and returns it.
func (s *sse) until(ctx context.Context, ok func(event) bool) event {
	s.t.Helper()
	for {
		e, err := s.next(ctx)
		if err != nil {
			s.t.Fatalf("stream ended before the awaited event: %v; read so far: %s", err, summary(s.log))
		}
		if ok(e) {
			return e
		}
	}
}

// untilRow reads until row index at version arrives.
func (s *sse) untilRow(ctx context.Context, index, version int) event {
	s.t.Helper()
	return s.until(ctx, func(e event) bool {
		if e.Type != "row" {
			return false
		}
		r := e.row(s.t)
		return r.Index == index && r.Version == version
	})
}

// untilEnd reads until the server ends the stream and returns what came
// after the events read so far; err is nil when the stream ended cleanly (the
// chunked body was terminated), or why it ended otherwise.
func (s *sse) untilEnd(ctx context.Context) ([]event, error) {
	s.t.Helper()
	var out []event
	for {
		e, err := s.next(ctx)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
}

// close drops the connection, as a browser tab closing does.
func (s *sse) close() {
	select {
	case <-s.done:
		return
	default:
	}
	close(s.done)
	s.cancel()
	s.resp.Body.Close()
}

// rv is one state of one row.
type rv struct{ row, version int }

// rowStates lists the (row, version) pairs of the row events among events.
func rowStates(t testing.TB, events []event) []rv {
	var out []rv
	for _, e := range events {
		if e.Type == "row" {
			r := e.row(t)
			out = append(out, rv{r.Index, r.Version})
		}
	}
	return out
}

func summary(events []event) string {
	var b strings.Builder
	for _, e := range events {
		switch e.Type {
		case "row":
			var r struct{ Index, Version int }
			_ = json.Unmarshal([]byte(e.Data), &r)
			fmt.Fprintf(&b, "[row %d v%d] ", r.Index, r.Version)
		default:
			fmt.Fprintf(&b, "[%s] ", e.Type)
		}
	}
	return b.String()
}

// --- Waiting without sleeping ------------------------------------------------

// eventually spins (yielding the processor) until cond holds or ctx ends. It
// is for state that announces itself on no channel (goroutine counts, hub
// counters); waits for stream content read the streams instead.
func eventually(ctx context.Context, cond func() bool) bool {
	for !cond() {
		select {
		case <-ctx.Done():
			return cond()
		default:
		}
		runtime.Gosched()
	}
	return true
}

// progressGoroutines counts goroutines running the hub's code: tails, the
// heartbeat and stream handlers.
func progressGoroutines() (int, string) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, marker := range []string{"progress.(*tail).run", "progress.(*Hub).heartbeat", "progress.(*Hub).handleStream"} {
			if strings.Contains(g, marker) {
				count++
				found = append(found, g)
				break
			}
		}
	}
	return count, strings.Join(found, "\n\n")
}

// rawDial opens a TCP connection to the instance with a tiny receive buffer,
// set before connecting so the advertised window stays small.
func (in *instance) rawDial(ctx context.Context, t testing.TB, rcvbuf int) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf) })
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.DialContext(ctx, "tcp", in.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
