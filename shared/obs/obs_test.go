package obs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/obs"
)

// serve runs one request through the middleware and returns the response and
// every log line as JSON.
func serve(t *testing.T, req *http.Request, o obs.Options, h http.HandlerFunc) (*httptest.ResponseRecorder, []map[string]any) {
	var buf bytes.Buffer
	log := obs.NewLogger(&buf, slog.LevelDebug)
	mux := http.NewServeMux()
	mux.Handle("/batch/{batchId}", h)
	w := httptest.NewRecorder()
	obs.Middleware(log, o, mux).ServeHTTP(w, req)
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		lines = append(lines, m)
	}
	return w, lines
}

func TestLogLinesCarryTraceAndRequestID(t *testing.T) {
	cases := []struct {
		name, header, value, trace, span string
	}{
		{"traceparent", "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"},
		{"cloud trace context", "X-Cloud-Trace-Context", "105445aa7843bc8bf206b12000100000/1;o=1", "105445aa7843bc8bf206b12000100000", "0000000000000001"},
		{"malformed", "traceparent", "garbage", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			req := httptest.NewRequest(http.MethodGet, "/batch/b1", nil)
			req.Header.Set(c.header, c.value)
			req.Header.Set(obs.HeaderRequestID, "req-42")
			var observed string
			w, lines := serve(t, req, obs.Options{Function: "submit", Project: "proj", Observe: func(fn, route string, status int, _ float64) {
				observed = fn + " " + route + " " + http.StatusText(status)
			}}, func(w http.ResponseWriter, r *http.Request) {
				obs.Logger(r.Context()).Info("inside")
				obs.Annotate(r.Context(), "batchId", r.PathValue("batchId"))
				w.WriteHeader(http.StatusTeapot)
			})
			is.Equal(w.Header().Get(obs.HeaderRequestID), "req-42") // the caller's id comes back
			is.Equal(len(lines), 2)                                 // the handler's line and the request line
			for _, l := range lines {
				is.Equal(l["requestId"], "req-42") // every line carries the request id
				if c.trace == "" {
					is.Equal(l["logging.googleapis.com/trace"], nil) // no trace invented
					continue
				}
				is.Equal(l["logging.googleapis.com/trace"], "projects/proj/traces/"+c.trace) // Cloud Logging's trace field
				is.Equal(l["logging.googleapis.com/spanId"], c.span)
			}
			inside, request := lines[0], lines[1]
			is.Equal(inside["severity"], "INFO") // Cloud Logging's severity
			is.Equal(inside["message"], "inside")
			is.Equal(request["message"], "request")
			is.Equal(request["batchId"], "b1") // annotations reach the request line
			is.Equal(request["route"], "/batch/{batchId}")
			hr := request["httpRequest"].(map[string]any)
			is.Equal(hr["requestMethod"], "GET")
			is.Equal(hr["status"], float64(http.StatusTeapot))
			is.True(strings.HasSuffix(hr["latency"].(string), "s")) // Cloud Logging's duration format
			is.Equal(observed, "submit /batch/{batchId} I'm a teapot")
		})
	}
}

func TestInsaneRequestIDsAreReplaced(t *testing.T) {
	for _, bad := range []string{"", "has space", strings.Repeat("x", 200), "quote\"d", "new\nline"} {
		is := is.New(t)
		req := httptest.NewRequest(http.MethodGet, "/batch/b1", nil)
		req.Header.Set(obs.HeaderRequestID, bad)
		w, lines := serve(t, req, obs.Options{}, func(w http.ResponseWriter, r *http.Request) {})
		id := w.Header().Get(obs.HeaderRequestID)
		is.True(id != "" && id != bad)      // a fresh id replaces it
		is.Equal(lines[0]["requestId"], id) // and is the one logged
		is.True(obs.SaneRequestID(id))
	}
}

// With adds attributes to the lines logged through the context it returns,
// and only there; a derivation of it keeps them. The request's context is the
// incoming one for everything else: it ends when the client goes, and so does
// what handlers derive from it.
func TestWithAddsAttributesWhereUsed(t *testing.T) {
	is := is.New(t)
	parent, leave := context.WithCancel(context.Background())
	defer leave()
	req := httptest.NewRequestWithContext(parent, http.MethodGet, "/batch/b1", nil)
	req.Header.Set(obs.HeaderRequestID, "req-7")
	var derivedID string
	_, lines := serve(t, req, obs.Options{}, func(w http.ResponseWriter, r *http.Request) {
		ctx := obs.With(r.Context(), "userId", "u1")
		obs.Logger(ctx).Info("as u1")
		obs.Logger(obs.With(ctx, "step", "inner")).Info("inner")
		obs.Logger(r.Context()).Info("outer")
		derived, cancel := context.WithCancel(ctx)
		defer cancel()
		leave() // the client goes away
		select {
		case <-derived.Done(): // and the request's context ends with it
		case <-time.After(10 * time.Second):
			t.Error("a context derived from the request's did not end with the request")
		}
		derivedID = obs.RequestID(derived)
	})
	is.Equal(len(lines), 4) // three handler lines and the request line
	for _, l := range lines {
		is.Equal(l["requestId"], "req-7") // every line keeps the request id
	}
	is.Equal(lines[0]["userId"], "u1")  // With's attribute
	is.Equal(lines[1]["userId"], "u1")  // kept by a derivation
	is.Equal(lines[1]["step"], "inner") // which adds its own
	is.Equal(lines[2]["userId"], nil)   // not on the request's own logger
	is.Equal(lines[3]["userId"], nil)   // nor on the request line
	is.Equal(derivedID, "req-7")        // values reach derived contexts
}
