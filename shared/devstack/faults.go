package devstack

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Faults sits between the storage client and the emulator (GCSOptions.Wrap):
// it counts requests the way Cloud Storage bills them, and can make the
// emulator behave like the real service under stress — the one-write-per-second
// per-object limit, a fraction of failed requests, added latency, and requests
// that are applied but whose answer is lost.
type Faults struct {
	mu sync.Mutex
	// Settings; change them with Set* while requests flow.
	failRate   float64
	failWith   []int
	lostRate   float64
	latency    time.Duration
	writeLimit time.Duration
	rng        *rand.Rand
	// loseAnswers writes under losePrefix land but are answered 503.
	loseAnswers int
	losePrefix  string
	// rejectWrites writes under rejectPrefix are answered rejectWith unseen.
	rejectWrites int
	rejectPrefix string
	rejectWith   int
	// holdWrites writes under holdPrefix wait for holdRelease before the
	// emulator sees them; each is announced on holdSeen.
	holdWrites  int
	holdPrefix  string
	holdRelease chan struct{}
	holdSeen    chan string

	lastWrite map[string]time.Time
	counts    Counts
	writes    map[string]int
}

// Counts are the requests seen, by the class Cloud Storage bills them in.
type Counts struct {
	Writes    int64 // object uploads that succeeded (class A)
	Lists     int64 // object listings (class A)
	Reads     int64 // object reads and metadata gets (class B)
	Deletes   int64 // deletes (free)
	Rejected  int64 // requests answered by the injector instead of the emulator
	Status412 int64 // precondition failures answered by the emulator
	Status429 int64 // rate-limit answers, injected or not
	// LostAnswers counts requests the emulator applied whose answer was
	// replaced by a 503 or a connection reset; Resets counts the resets.
	LostAnswers int64
	Resets      int64
}

// ClassA is what Cloud Storage bills as class A operations.
func (c Counts) ClassA() int64 { return c.Writes + c.Lists }

// NewFaults returns an injector that injects nothing yet and counts everything.
func NewFaults(seed uint64) *Faults {
	return &Faults{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), lastWrite: map[string]time.Time{}, writes: map[string]int{}}
}

// SetFailures makes a fraction of requests fail with one of the statuses.
func (f *Faults) SetFailures(rate float64, statuses ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failRate, f.failWith = rate, statuses
}

// SetLostAnswers makes a fraction of requests reach the emulator and then
// lose a successful answer: half of them are answered 503, half end in a
// connection reset, as when a connection drops after the commit.
func (f *Faults) SetLostAnswers(rate float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lostRate = rate
}

// SetLatency adds d to every request.
func (f *Faults) SetLatency(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.latency = d
}

// SetWriteLimit answers 429 to a write of an object written less than every
// ago: Cloud Storage's sustained limit is one write per second per object.
func (f *Faults) SetWriteLimit(every time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writeLimit = every
}

// LoseAnswers makes the next n writes of objects whose names start with
// prefix land in the emulator but answer 503, as when the connection drops
// after the commit: the client's retry then meets the write already there.
func (f *Faults) LoseAnswers(prefix string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.losePrefix, f.loseAnswers = prefix, n
}

// RejectWrites answers the next n writes of objects whose names start with
// prefix with status, without the emulator seeing them.
func (f *Faults) RejectWrites(prefix string, n, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rejectPrefix, f.rejectWrites, f.rejectWith = prefix, n, status
}

// HoldWrites holds the next n writes of objects whose names start with
// prefix before the emulator sees them, until release is called (or the
// request is abandoned), so that another request can overtake them, as when
// two callers race for one object. held receives the name of each write as
// it is held.
func (f *Faults) HoldWrites(prefix string, n int) (held <-chan string, release func()) {
	seen, gate := make(chan string, n), make(chan struct{})
	var once sync.Once
	f.mu.Lock()
	defer f.mu.Unlock()
	f.holdPrefix, f.holdWrites, f.holdRelease, f.holdSeen = prefix, n, gate, seen
	return seen, func() { once.Do(func() { close(gate) }) }
}

// hold is the gate a write of object must wait at first, or nil.
func (f *Faults) hold(kind, object string) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if kind != "write" || f.holdWrites == 0 || object == "" || !strings.HasPrefix(object, f.holdPrefix) {
		return nil
	}
	f.holdWrites--
	f.holdSeen <- object // buffered for every write held
	return f.holdRelease
}

// Counts returns the counters.
func (f *Faults) Counts() Counts {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts
}

// WritesOf returns how many times each object was written, for names with prefix.
func (f *Faults) WritesOf(prefix string) map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.writes {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

// Reset zeroes the counters.
func (f *Faults) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts = Counts{}
	f.writes = map[string]int{}
}

// Wrap implements GCSOptions.Wrap.
func (f *Faults) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Only the storage client's API calls are faulted and counted; a browser
		// fetching an image through its signed URL is not the platform's traffic.
		if !strings.HasPrefix(r.URL.Path, "/storage/v1/") && !strings.HasPrefix(r.URL.Path, "/upload/storage/v1/") {
			next.ServeHTTP(w, r)
			return
		}
		kind, object := classify(r)
		if gate := f.hold(kind, object); gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		f.mu.Lock()
		latency := f.latency
		fail := 0
		// One draw decides both shares, so each is a share of all requests.
		var draw float64
		if f.failRate > 0 || f.lostRate > 0 {
			draw = f.rng.Float64()
		}
		if f.failRate > 0 && len(f.failWith) > 0 && draw < f.failRate {
			fail = f.failWith[f.rng.IntN(len(f.failWith))]
		}
		if fail == 0 && kind == "write" && f.rejectWrites > 0 && object != "" && strings.HasPrefix(object, f.rejectPrefix) {
			f.rejectWrites--
			fail = f.rejectWith
		}
		if fail == 0 && kind == "write" && f.writeLimit > 0 && object != "" {
			// A create-once of an object that exists changes nothing: it gets its
			// 412, not a 429.
			createOnce := r.URL.Query().Get("ifGenerationMatch") == "0"
			if last, ok := f.lastWrite[object]; ok && !createOnce && time.Since(last) < f.writeLimit {
				fail = http.StatusTooManyRequests
			}
		}
		if fail != 0 {
			f.counts.Rejected++
			if fail == http.StatusTooManyRequests {
				f.counts.Status429++
			}
		}
		lose := fail == 0 && kind == "write" && f.loseAnswers > 0 && object != "" && strings.HasPrefix(object, f.losePrefix)
		counted := lose
		if lose {
			f.loseAnswers-- // given back below if the write does not land
		} else if fail == 0 && f.lostRate > 0 && draw >= f.failRate && draw < f.failRate+f.lostRate {
			lose = true
		}
		reset := lose && !counted && f.rng.IntN(2) == 0
		f.mu.Unlock()

		if latency > 0 {
			t := time.NewTimer(latency)
			select {
			case <-r.Context().Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if fail != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(fail)
			_, _ = io.WriteString(w, `{"error":{"code":`+http.StatusText(fail)+`,"message":"injected fault"}}`)
			return
		}
		var rec *recorder
		if lose {
			rec = &recorder{ResponseWriter: &held{header: http.Header{}}, status: http.StatusOK}
		} else {
			rec = &recorder{ResponseWriter: w, status: http.StatusOK}
		}
		next.ServeHTTP(rec, r)
		if lose {
			h := rec.ResponseWriter.(*held)
			// Only an answer that reports success is lost: one that reports a
			// failure would be the same on a retry.
			lost := rec.status < 300
			if lost && reset {
				reset = resetConn(w)
			}
			f.mu.Lock()
			switch {
			case lost && reset:
				f.counts.LostAnswers++
				f.counts.Resets++
			case lost:
				f.counts.LostAnswers++
			case counted:
				f.loseAnswers++
			}
			f.mu.Unlock()
			switch {
			case lost && reset:
			case lost:
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, `{"error":{"code":503,"message":"injected fault: the answer was lost"}}`)
			default:
				h.copyTo(w, rec.status)
			}
		}

		f.mu.Lock()
		defer f.mu.Unlock()
		switch rec.status {
		case http.StatusPreconditionFailed:
			f.counts.Status412++
		case http.StatusTooManyRequests:
			f.counts.Status429++
		}
		switch kind {
		case "write":
			if rec.status < 300 {
				f.counts.Writes++
				f.writes[object]++
				f.lastWrite[object] = time.Now()
			}
		case "list":
			f.counts.Lists++
		case "read":
			f.counts.Reads++
		case "delete":
			f.counts.Deletes++
		}
	})
}

// resetConn ends the request's connection with a TCP reset instead of an
// answer; it reports false when the connection cannot be taken over.
func resetConn(w http.ResponseWriter) bool {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0) // close sends RST, not FIN
	}
	_ = conn.Close()
	return true
}

// classify names a JSON-API request's kind and object. Uploads carry the object
// name in the query (resumable) or in the metadata part (multipart); the body
// is read and put back.
func classify(r *http.Request) (kind, object string) {
	p := r.URL.EscapedPath()
	switch {
	case strings.HasPrefix(p, "/upload/storage/v1/b/"):
		if name := r.URL.Query().Get("name"); name != "" {
			return "write", name
		}
		return "write", multipartName(r)
	case r.Method == http.MethodDelete:
		return "delete", objectOf(p)
	case r.Method == http.MethodGet && strings.HasSuffix(p, "/o"):
		return "list", ""
	case r.Method == http.MethodGet:
		return "read", objectOf(p)
	}
	return "other", ""
}

func objectOf(escapedPath string) string {
	_, rest, ok := strings.Cut(escapedPath, "/o/")
	if !ok {
		return ""
	}
	name, err := url.PathUnescape(rest)
	if err != nil {
		return rest
	}
	return name
}

func multipartName(r *http.Request) string {
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		return ""
	}
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return ""
	}
	part, err := multipart.NewReader(bytes.NewReader(body), params["boundary"]).NextPart()
	if err != nil {
		return ""
	}
	var meta struct {
		Name string `json:"name"`
	}
	_ = json.NewDecoder(part).Decode(&meta)
	return meta.Name
}

type recorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// held keeps an answer back, so it can be replaced or passed on.
type held struct {
	header http.Header
	body   bytes.Buffer
}

func (h *held) Header() http.Header         { return h.header }
func (h *held) Write(b []byte) (int, error) { return h.body.Write(b) }
func (h *held) WriteHeader(int)             {}

func (h *held) copyTo(w http.ResponseWriter, status int) {
	for k, v := range h.header {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	_, _ = w.Write(h.body.Bytes())
}
