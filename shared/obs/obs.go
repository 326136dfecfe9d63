// Package obs carries what every log line and response needs to be traceable: the
// request id, a logger in Cloud Logging's structured format, and the request-log
// middleware.
package obs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HeaderRequestID carries the request id on every response and into every Cloud
// Task, so one id finds every log line of a batch.
const HeaderRequestID = "X-Request-Id"

type ctxKey int

const (
	keyRequestID ctxKey = iota
	keyLogger
	keyNotes
)

// NewLogger returns a JSON logger whose records Cloud Logging parses natively:
// "severity" instead of "level" and "message" instead of "msg".
func NewLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.LevelKey:
				return slog.String("severity", severity(a.Value.Any().(slog.Level)))
			case slog.MessageKey:
				a.Key = "message"
			}
			return a
		},
	}))
}

func severity(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARNING"
	case l >= slog.LevelInfo:
		return "INFO"
	default:
		return "DEBUG"
	}
}

// WithRequestID returns ctx carrying id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, keyRequestID, id)
}

// RequestID returns the request id in ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(keyRequestID).(string)
	return id
}

// WithLogger returns ctx carrying log.
func WithLogger(ctx context.Context, log *slog.Logger) context.Context {
	return context.WithValue(ctx, keyLogger, log)
}

// Logger returns the logger in ctx, or slog.Default().
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(keyLogger).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

// NewRequestID returns a fresh random id.
func NewRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// SaneRequestID reports whether an incoming id may be reused: short, printable
// ASCII without spaces, so it cannot forge log lines or bloat them.
func SaneRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c <= ' ' || c > '~' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// Options configure the request middleware.
type Options struct {
	// Function names the function or service in metrics ("submit", …).
	Function string
	// Project is the Google Cloud project, for trace links in logs.
	Project string
	// Observe, when set, is told each request's route, status and latency
	// (the metrics package records them).
	Observe func(function, route string, status int, seconds float64)
}

// Middleware gives each request an id (the caller's X-Request-Id if sane),
// returns it on the response, puts a logger carrying it and the request's
// trace in the context, and writes one request log line in Cloud Logging's
// httpRequest format, with the user and batch the handlers annotated.
func Middleware(log *slog.Logger, o Options, next http.Handler) http.Handler {
	opts := &o
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The request's state lives on the heap, not in this frame: progress
		// streams keep this frame on their stack for up to an hour, and a small
		// frame keeps their goroutine stacks at the minimum.
		st := begin(log, opts, w, r)
		next.ServeHTTP(&st.rec, st.req)
		st.finish()
	})
}

// request is one request's log and metrics state, and the context its
// handlers see: it answers the request id, the logger and the annotations
// itself, so a request costs one allocation here besides its copy. The
// logger is built when first used: a request that logs nothing but its
// request line builds it once, at the end, and an open progress stream holds
// none while it waits.
type request struct {
	context.Context // the incoming request's
	o               *Options
	base            *slog.Logger
	start           time.Time
	orig            *http.Request
	req             *http.Request
	rec             statusRecorder
	id              string
	notes           annotations
	once            sync.Once
	log             *slog.Logger
}

//go:noinline
func begin(log *slog.Logger, o *Options, w http.ResponseWriter, r *http.Request) *request {
	st := &request{Context: r.Context(), o: o, base: log, start: time.Now(), orig: r}
	st.id = r.Header.Get(HeaderRequestID)
	if !SaneRequestID(st.id) {
		st.id = NewRequestID()
	}
	w.Header().Set(HeaderRequestID, st.id)
	st.rec = statusRecorder{ResponseWriter: w, status: http.StatusOK}
	st.req = r.WithContext(st)
	return st
}

// Value answers the request's own keys and asks the incoming context for
// any other.
func (st *request) Value(key any) any {
	switch key {
	case keyRequestID:
		return st.id
	case keyLogger:
		return st.logger()
	case keyNotes:
		return &st.notes
	}
	return st.Context.Value(key)
}

// logger is the request's logger: the base one with the request id and the
// request's trace.
func (st *request) logger() *slog.Logger {
	st.once.Do(func() {
		l := st.base.With(slog.String("requestId", st.id))
		if trace, span := traceOf(st.orig); trace != "" && st.o.Project != "" {
			l = l.With(slog.String("logging.googleapis.com/trace", "projects/"+st.o.Project+"/traces/"+trace))
			if span != "" {
				l = l.With(slog.String("logging.googleapis.com/spanId", span))
			}
		}
		st.log = l
	})
	return st.log
}

//go:noinline
func (st *request) finish() {
	r := st.orig
	latency := time.Since(st.start)
	route := st.req.Pattern // set by the ServeMux this request reached
	if route == "" {
		route = "unmatched"
	}
	if st.o.Observe != nil {
		st.o.Observe(st.o.Function, route, st.rec.status, latency.Seconds())
	}
	attrs := []slog.Attr{
		slog.Group("httpRequest",
			slog.String("requestMethod", r.Method),
			slog.String("requestUrl", r.URL.Path),
			slog.Int("status", st.rec.status),
			slog.String("latency", strconv.FormatFloat(latency.Seconds(), 'f', 6, 64)+"s"),
			slog.String("userAgent", r.UserAgent()),
			slog.String("remoteIp", r.RemoteAddr),
			slog.Int64("responseSize", st.rec.bytes),
			slog.String("protocol", r.Proto),
		),
		slog.String("route", route),
		slog.Int("status", st.rec.status),
		slog.Duration("latency", latency),
	}
	attrs = append(attrs, st.notes.attrs()...)
	st.logger().LogAttrs(st.req.Context(), slog.LevelInfo, "request", attrs...)
}

// With returns ctx whose logger is ctx's logger with args added (as
// slog.Logger.With takes them), built when something first logs through it:
// a handler that never logs pays nothing for it.
func With(ctx context.Context, args ...any) context.Context {
	return &withArgs{Context: ctx, args: args}
}

type withArgs struct {
	context.Context
	args []any
	once sync.Once
	log  *slog.Logger
}

func (c *withArgs) Value(key any) any {
	if key != keyLogger {
		return c.Context.Value(key)
	}
	c.once.Do(func() { c.log = Logger(c.Context).With(c.args...) })
	return c.log
}

// traceOf reads the request's trace and span: W3C traceparent first, then
// Google's X-Cloud-Trace-Context ("TRACE/SPAN;o=1", span in decimal).
func traceOf(r *http.Request) (trace, span string) {
	if tp := r.Header.Get("traceparent"); tp != "" {
		parts := strings.Split(tp, "-")
		if len(parts) == 4 && len(parts[1]) == 32 && len(parts[2]) == 16 && isHex(parts[1]) && isHex(parts[2]) {
			return parts[1], parts[2]
		}
	}
	if xc := r.Header.Get("X-Cloud-Trace-Context"); xc != "" {
		head, _, _ := strings.Cut(xc, ";")
		t, s, _ := strings.Cut(head, "/")
		if len(t) == 32 && isHex(t) {
			if n, err := strconv.ParseUint(s, 10, 64); err == nil && n > 0 {
				return t, fmt.Sprintf("%016x", n)
			}
			return t, ""
		}
	}
	return "", ""
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// annotations are what handlers add to their request's log line.
type annotations struct {
	mu   sync.Mutex
	list []slog.Attr
}

func (a *annotations) attrs() []slog.Attr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]slog.Attr(nil), a.list...)
}

// Annotate adds key=value to the request's log line (user id, batch id).
func Annotate(ctx context.Context, key, value string) {
	if a, ok := ctx.Value(keyNotes).(*annotations); ok {
		a.mu.Lock()
		a.list = append(a.list, slog.String(key, value))
		a.mu.Unlock()
	}
}

// statusRecorder remembers the status code; Unwrap keeps http.ResponseController
// (flushes for SSE, deadlines) working through it.
type statusRecorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wroteHeader {
		s.status, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wroteHeader = true
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
