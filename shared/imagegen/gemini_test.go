package imagegen

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"
	"google.golang.org/genai"
)

const (
	testKey   = "AIza-test-key-never-logged"
	testModel = "gemini-2.5-flash-image"
)

// wireRequest is the generateContent request body as it goes over the wire
// (the same shape for both backends).
type wireRequest struct {
	Contents []struct {
		Role  string     `json:"role"`
		Parts []wirePart `json:"parts"`
	} `json:"contents"`
	GenerationConfig struct {
		ResponseModalities []string `json:"responseModalities"`
		Seed               *int32   `json:"seed"`
		ImageConfig        *struct {
			AspectRatio        string `json:"aspectRatio"`
			ImageSize          string `json:"imageSize"`
			ImageOutputOptions *struct {
				MIMEType string `json:"mimeType"`
			} `json:"imageOutputOptions"`
		} `json:"imageConfig"`
	} `json:"generationConfig"`
}

type wirePart struct {
	Text       string `json:"text"`
	InlineData *struct {
		MIMEType string `json:"mimeType"`
		Data     string `json:"data"` // base64
	} `json:"inlineData"`
}

// call is one request the fake received.
type call struct {
	backend, project, location, model string
	apiKey                            string
	req                               wireRequest
}

// reply is one canned answer; hang holds the request until the client gives up.
type reply struct {
	status int
	body   string
	hang   bool
}

// fakeModel speaks generateContent for both backends:
//
//	Gemini API: POST /v1beta/models/{model}:generateContent
//	Vertex AI:  POST /v1beta1/projects/{p}/locations/{l}/publishers/google/models/{model}:generateContent
//
// Replies are served in order and the last one repeats.
type fakeModel struct {
	mu      sync.Mutex
	calls   []call
	replies []reply
	bad     []string // requests the fake could not read
}

func newFake(t *testing.T, replies ...reply) (*fakeModel, *httptest.Server) {
	t.Helper()
	f := &fakeModel{replies: replies}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1beta/models/{action}", f.handle("gemini"))
	mux.HandleFunc("POST /v1beta1/projects/{project}/locations/{location}/publishers/google/models/{action}", f.handle("vertex"))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.bad = append(f.bad, "unrouted "+r.Method+" "+r.URL.Path)
		f.mu.Unlock()
		http.NotFound(w, r)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.bad) > 0 {
			t.Errorf("fake model: %v", f.bad)
		}
	})
	return f, srv
}

func (f *fakeModel) handle(backend string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		model, ok := strings.CutSuffix(r.PathValue("action"), ":generateContent")
		var req wireRequest
		err := json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		if !ok || err != nil {
			f.bad = append(f.bad, fmt.Sprintf("%s: %v", r.URL.Path, err))
			f.mu.Unlock()
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		f.calls = append(f.calls, call{
			backend: backend, project: r.PathValue("project"), location: r.PathValue("location"),
			model: model, apiKey: r.Header.Get("x-goog-api-key"), req: req,
		})
		rep := f.replies[min(len(f.calls), len(f.replies))-1]
		f.mu.Unlock()
		if rep.hang {
			<-r.Context().Done()
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(rep.status)
		_, _ = io.WriteString(w, rep.body)
	}
}

func (f *fakeModel) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// backend is one way to build the generator against the fake.
type backend struct {
	name string
	cfg  func(srv *httptest.Server) GeminiConfig
}

var backends = []backend{
	{"gemini", func(srv *httptest.Server) GeminiConfig {
		return GeminiConfig{Backend: "gemini", APIKey: testKey, BaseURL: srv.URL}
	}},
	{"vertex", func(srv *httptest.Server) GeminiConfig {
		return GeminiConfig{Backend: "vertex", Project: "proj-1", Location: "us-central1", BaseURL: srv.URL, HTTPClient: srv.Client()}
	}},
}

// isolateEnv keeps the developer's environment out of the SDK, and points ADC
// at a file that does not exist: if the SDK looked credentials up, NewGemini
// would fail.
func isolateEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION",
		"GOOGLE_CLOUD_REGION", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_VERTEX_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE"} {
		t.Setenv(k, "")
		os.Unsetenv(k) // t.Setenv restores the old value afterwards
	}
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", filepath.Join(t.TempDir(), "missing-credentials.json"))
}

// eachBackend runs fn against a fresh fake and generator per backend.
func eachBackend(t *testing.T, replies []reply, fn func(t *testing.T, b backend, f *fakeModel, g *Gemini)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			isolateEnv(t)
			f, srv := newFake(t, replies...)
			g, err := NewGemini(context.Background(), b.cfg(srv))
			if err != nil {
				t.Fatalf("NewGemini: %v", err)
			}
			fn(t, b, f, g)
		})
	}
}

func tinyPNG(t *testing.T, c color.RGBA) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 3, 2))
	for y := range 2 {
		for x := range 3 {
			img.Set(x, y, c)
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// respond builds a 200 generateContent response; []byte values marshal as base64.
func respond(t *testing.T, v any) reply {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: http.StatusOK, body: string(b)}
}

func imagePart(mime string, data []byte, thought bool) map[string]any {
	p := map[string]any{"inlineData": map[string]any{"mimeType": mime, "data": data}}
	if thought {
		p["thought"] = true
	}
	return p
}

func candidate(finish string, parts ...map[string]any) map[string]any {
	c := map[string]any{"content": map[string]any{"role": "model", "parts": parts}, "index": 0}
	if finish != "" {
		c["finishReason"] = finish
	}
	return c
}

func rpcError(code int, status, message string) reply {
	return reply{status: code, body: fmt.Sprintf(`{"error":{"code":%d,"message":%q,"status":%q}}`, code, message, status)}
}

func TestGeminiGenerateSendsRequestAndReturnsImage(t *testing.T) {
	out := tinyPNG(t, color.RGBA{0, 128, 255, 255})
	refPNG := tinyPNG(t, color.RGBA{255, 0, 0, 255})
	refJPEG := []byte("\xff\xd8\xff\xe0 not really a jpeg")
	refUntyped := tinyPNG(t, color.RGBA{0, 255, 0, 255})
	replies := []reply{respond(t, map[string]any{
		"candidates":    []any{candidate("STOP", imagePart("image/png", out, false))},
		"usageMetadata": map[string]any{"promptTokenCount": 10, "totalTokenCount": 1300},
	})}
	req := Request{
		Model: testModel, Prompt: "a lighthouse at dawn", Variant: 2, AspectRatio: "16:9",
		Refs: []RefImage{{MIMEType: "image/png", Data: refPNG}, {MIMEType: "image/jpeg", Data: refJPEG}, {Data: refUntyped}},
	}
	eachBackend(t, replies, func(t *testing.T, b backend, f *fakeModel, g *Gemini) {
		is := is.New(t)
		img, err := g.Generate(context.Background(), req)
		is.NoErr(err)                       // generate
		is.Equal(img.MIMEType, "image/png") // the image part's type
		is.True(bytes.Equal(img.Data, out)) // the bytes the model sent
		decoded, err := png.Decode(bytes.NewReader(img.Data))
		is.NoErr(err)                      // a real PNG
		is.Equal(decoded.Bounds().Dx(), 3) // its width survived

		calls := f.Calls()
		is.Equal(len(calls), 1) // one request
		c := calls[0]
		is.Equal(c.backend, b.name)  // routed to this backend's path
		is.Equal(c.model, testModel) // the model in the path
		if b.name == "vertex" {
			is.Equal(c.project, "proj-1")       // the project in the path
			is.Equal(c.location, "us-central1") // the location in the path
			is.Equal(c.apiKey, "")              // no API key on Vertex
		} else {
			is.Equal(c.apiKey, testKey) // the API key travels in x-goog-api-key
		}

		is.Equal(len(c.req.Contents), 1)         // one turn
		is.Equal(c.req.Contents[0].Role, "user") // from the user
		parts := c.req.Contents[0].Parts
		is.Equal(len(parts), 4)             // the prompt and three references
		is.Equal(parts[0].Text, req.Prompt) // the prompt comes first
		wantMIME := []string{"image/png", "image/jpeg", "image/png"}
		for i, ref := range req.Refs {
			p := parts[i+1]
			is.True(p.InlineData != nil)                 // a reference is inline data
			is.Equal(p.InlineData.MIMEType, wantMIME[i]) // with its type (sniffed when missing)
			data, err := base64.StdEncoding.DecodeString(p.InlineData.Data)
			is.NoErr(err)                        // base64 on the wire
			is.True(bytes.Equal(data, ref.Data)) // the reference's bytes
		}
		gc := c.req.GenerationConfig
		is.Equal(gc.ResponseModalities, []string{"IMAGE"}) // an image, please
		is.True(gc.ImageConfig != nil)                     // image config sent
		is.Equal(gc.ImageConfig.AspectRatio, "16:9")       // with the aspect ratio
		is.True(gc.Seed != nil)                            // a seed
		is.Equal(*gc.Seed, VariantSeed(req.Prompt, 2))     // derived from prompt and variant
	})
}

func TestGeminiResponses(t *testing.T) {
	draft := tinyPNG(t, color.RGBA{128, 128, 128, 255})
	final := tinyPNG(t, color.RGBA{0, 128, 255, 255})
	text := func(s string) map[string]any { return map[string]any{"text": s} }
	cases := []struct {
		name   string
		resp   map[string]any
		want   []byte // the image kept, or nil for an error
		class  Class
		reason string
		inErr  string // a bit the error text must hold
	}{
		{
			name: "thought draft then final",
			resp: map[string]any{"candidates": []any{candidate("STOP",
				map[string]any{"text": "planning", "thought": true},
				imagePart("image/png", draft, true),
				text("Here you go."),
				imagePart("image/png", final, false))}},
			want: final,
		},
		{
			name: "two final images keeps the last",
			resp: map[string]any{"candidates": []any{candidate("STOP",
				imagePart("image/png", draft, false), imagePart("image/png", final, false))}},
			want: final,
		},
		{
			name:  "prompt blocked",
			resp:  map[string]any{"promptFeedback": map[string]any{"blockReason": "SAFETY"}},
			class: Blocked, reason: "PROMPT_BLOCKED:SAFETY", inErr: "prompt blocked",
		},
		{
			name: "prompt blocked with message",
			resp: map[string]any{"promptFeedback": map[string]any{
				"blockReason": "PROHIBITED_CONTENT", "blockReasonMessage": "The prompt violates policy."}},
			class: Blocked, reason: "PROMPT_BLOCKED:PROHIBITED_CONTENT", inErr: "violates policy",
		},
		{
			name:  "output blocked",
			resp:  map[string]any{"candidates": []any{map[string]any{"finishReason": "IMAGE_SAFETY", "index": 0}}},
			class: Blocked, reason: "OUTPUT_BLOCKED:IMAGE_SAFETY",
		},
		{
			name: "output blocked with text",
			resp: map[string]any{"candidates": []any{candidate("PROHIBITED_CONTENT",
				text("I can't make that."))}},
			class: Blocked, reason: "OUTPUT_BLOCKED:PROHIBITED_CONTENT",
		},
		{
			name: "text only",
			resp: map[string]any{"candidates": []any{candidate("STOP",
				text("I would rather describe it: a tall white lighthouse "+strings.Repeat("and more ", 100)))}},
			class: Permanent, reason: "NO_IMAGE", inErr: "a tall white lighthouse",
		},
		{
			name:  "stop without parts",
			resp:  map[string]any{"candidates": []any{map[string]any{"finishReason": "STOP"}}},
			class: Permanent, reason: "NO_IMAGE", inErr: "STOP",
		},
		{
			name: "only a thought image",
			resp: map[string]any{"candidates": []any{candidate("STOP",
				imagePart("image/png", draft, true))}},
			class: Permanent, reason: "NO_IMAGE",
		},
		{
			name: "inline data that is not an image",
			resp: map[string]any{"candidates": []any{candidate("STOP",
				imagePart("application/pdf", []byte("%PDF-1.7"), false))}},
			class: Permanent, reason: "NO_IMAGE",
		},
		{
			name:  "finish reason NO_IMAGE",
			resp:  map[string]any{"candidates": []any{map[string]any{"finishReason": "NO_IMAGE"}}},
			class: Permanent, reason: "NO_IMAGE",
		},
		{
			name:  "empty response",
			resp:  map[string]any{},
			class: Permanent, reason: "NO_IMAGE",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachBackend(t, []reply{respond(t, tc.resp)}, func(t *testing.T, _ backend, _ *fakeModel, g *Gemini) {
				is := is.New(t)
				img, err := g.Generate(context.Background(), Request{Model: testModel, Prompt: "a lighthouse"})
				if tc.want != nil {
					is.NoErr(err)                           // an image came back
					is.True(bytes.Equal(img.Data, tc.want)) // the right one
					return
				}
				is.True(err != nil) // no image is an error
				var ge *Error
				is.True(errors.As(err, &ge))                     // a classified error
				is.Equal(ge.Class, tc.class)                     // class
				is.Equal(ge.Reason, tc.reason)                   // reason
				is.True(strings.Contains(err.Error(), tc.inErr)) // detail for the logs
				is.True(len(err.Error()) < 400)                  // and not a whole essay
			})
		})
	}
}

// TestGeminiWireExample serves testdata/generate_content_response.json as is:
// the documented wire format of an answer with a draft (thought) image.
func TestGeminiWireExample(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("testdata", "generate_content_response.json"))
	if err != nil {
		t.Fatal(err)
	}
	eachBackend(t, []reply{{status: http.StatusOK, body: string(body)}}, func(t *testing.T, _ backend, _ *fakeModel, g *Gemini) {
		is := is.New(t)
		img, err := g.Generate(context.Background(), Request{Model: testModel, Prompt: "a lighthouse at dawn"})
		is.NoErr(err) // generate
		decoded, err := png.Decode(bytes.NewReader(img.Data))
		is.NoErr(err) // a PNG
		r, gr, b, _ := decoded.At(0, 0).RGBA()
		is.Equal([]uint32{r >> 8, gr >> 8, b >> 8}, []uint32{0, 128, 255}) // the final image, not the grey draft
	})
}

func TestGeminiRateLimitedThenOK(t *testing.T) {
	out := tinyPNG(t, color.RGBA{1, 2, 3, 255})
	replies := []reply{
		rpcError(http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
		respond(t, map[string]any{"candidates": []any{candidate("STOP", imagePart("image/png", out, false))}}),
	}
	eachBackend(t, replies, func(t *testing.T, _ backend, f *fakeModel, g *Gemini) {
		is := is.New(t)
		req := Request{Model: testModel, Prompt: "a fox"}
		_, err := g.Generate(context.Background(), req)
		is.True(err != nil)                 // the first call is refused
		is.Equal(ClassOf(err), RateLimited) // as rate limited
		is.True(ClassOf(err).Retryable())   // so the task retries
		var ge *Error
		is.True(errors.As(err, &ge))
		is.Equal(ge.Reason, "RATE_LIMITED") // reason
		var ae genai.APIError
		is.True(errors.As(err, &ae)) // the SDK's error is still reachable
		is.Equal(ae.Code, 429)       // with its code
		is.Equal(len(f.Calls()), 1)  // and the SDK did not retry on its own

		img, err := g.Generate(context.Background(), req)
		is.NoErr(err)                       // the second call succeeds
		is.True(bytes.Equal(img.Data, out)) // with the image
		is.Equal(len(f.Calls()), 2)         // one request each
	})
}

func TestGeminiPersistentUnavailable(t *testing.T) {
	replies := []reply{rpcError(http.StatusServiceUnavailable, "UNAVAILABLE", "The model is overloaded. Please try again later.")}
	eachBackend(t, replies, func(t *testing.T, _ backend, f *fakeModel, g *Gemini) {
		is := is.New(t)
		for i := range 3 {
			_, err := g.Generate(context.Background(), Request{Model: testModel, Prompt: "a fox", Variant: i})
			var ge *Error
			is.True(errors.As(err, &ge))       // a classified error
			is.Equal(ge.Class, Transient)      // transient every time
			is.Equal(ge.Reason, "UNAVAILABLE") // reason
		}
		is.Equal(len(f.Calls()), 3) // no hidden retries
	})
}

func TestGeminiErrorReplies(t *testing.T) {
	cases := []struct {
		name   string
		reply  reply
		class  Class
		reason string
	}{
		{"malformed body", reply{status: 200, body: "<html><body>upstream hiccup</body></html>"}, Transient, "BAD_RESPONSE"},
		{"truncated body", reply{status: 200, body: `{"candidates":[{"content":{"parts":[{"inlineData":`}, Transient, "BAD_RESPONSE"},
		{"wrong shape", reply{status: 200, body: `{"candidates":"nope"}`}, Transient, "BAD_RESPONSE"},
		{"bad request", rpcError(400, "INVALID_ARGUMENT", "Unsupported aspect ratio."), Permanent, "INVALID_ARGUMENT"},
		{"bad request in plain text", reply{status: 400, body: "Bad Request"}, Permanent, "HTTP_400"},
		{"permission denied", rpcError(403, "PERMISSION_DENIED", "Permission denied on resource project."), Permanent, "PERMISSION_DENIED"},
		{"model not found", rpcError(404, "NOT_FOUND", "Publisher model not found."), Permanent, "NOT_FOUND"},
		{"internal", rpcError(500, "INTERNAL", "Internal error encountered."), Transient, "INTERNAL"},
		{"gateway page", reply{status: 502, body: "<html>502 Bad Gateway</html>"}, Transient, "HTTP_502"},
		{"gateway timeout", rpcError(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."), Transient, "DEADLINE_EXCEEDED"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachBackend(t, []reply{tc.reply}, func(t *testing.T, _ backend, f *fakeModel, g *Gemini) {
				is := is.New(t)
				_, err := g.Generate(context.Background(), Request{Model: testModel, Prompt: "a fox"})
				var ge *Error
				is.True(errors.As(err, &ge))   // a classified error
				is.Equal(ge.Class, tc.class)   // class
				is.Equal(ge.Reason, tc.reason) // reason
				is.Equal(len(f.Calls()), 1)    // one request
			})
		})
	}
}

func TestGeminiKeepsTheKeyOutOfErrors(t *testing.T) {
	isolateEnv(t)
	is := is.New(t)
	_, srv := newFake(t, rpcError(400, "INVALID_ARGUMENT", "API key not valid: "+testKey))
	g, err := NewGemini(context.Background(), backends[0].cfg(srv))
	is.NoErr(err) // gemini backend
	_, err = g.Generate(context.Background(), Request{Model: testModel, Prompt: "a fox"})
	is.True(err != nil)                                  // refused
	is.True(!strings.Contains(err.Error(), testKey))     // the key is scrubbed
	is.True(strings.Contains(err.Error(), "[redacted]")) // where it was
}

func TestGeminiTimeoutAndCancel(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			isolateEnv(t)
			is := is.New(t)
			_, srv := newFake(t, reply{hang: true})
			cfg := b.cfg(srv)
			cfg.Timeout = 20 * time.Millisecond
			g, err := NewGemini(context.Background(), cfg)
			is.NoErr(err) // new generator
			_, err = g.Generate(context.Background(), Request{Model: testModel, Prompt: "a fox"})
			var ge *Error
			is.True(errors.As(err, &ge))   // a classified error
			is.Equal(ge.Class, Transient)  // a slow model is retried
			is.Equal(ge.Reason, "TIMEOUT") // reason

			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_, err = g.Generate(ctx, Request{Model: testModel, Prompt: "a fox"})
			is.True(errors.As(err, &ge))     // a classified error
			is.Equal(ge.Class, Transient)    // a cut-short attempt is retried
			is.Equal(ge.Reason, "CANCELLED") // reason
		})
	}
}

func TestGeminiBadRequests(t *testing.T) {
	eachBackend(t, []reply{{status: 500}}, func(t *testing.T, _ backend, f *fakeModel, g *Gemini) {
		for _, req := range []Request{
			{Prompt: "no model"},
			{Model: testModel},
			{Model: testModel, Prompt: "x", Refs: []RefImage{{MIMEType: "image/png"}}},
		} {
			is := is.New(t)
			_, err := g.Generate(context.Background(), req)
			var ge *Error
			is.True(errors.As(err, &ge))       // a classified error
			is.Equal(ge.Class, Permanent)      // not retried
			is.Equal(ge.Reason, "BAD_REQUEST") // reason
		}
		is.New(t).Equal(len(f.Calls()), 0) // nothing was sent
	})
}

func TestNewGeminiConfig(t *testing.T) {
	isolateEnv(t)
	cases := []struct {
		name string
		cfg  GeminiConfig
		ok   bool
		in   string
	}{
		{"unknown backend", GeminiConfig{Backend: "imagen"}, false, "unknown backend"},
		{"gemini without key", GeminiConfig{Backend: "gemini"}, false, "API key"},
		{"gemini ignores project", GeminiConfig{Backend: "gemini", APIKey: testKey, Project: "p", Location: "l"}, true, ""},
		{"vertex without project", GeminiConfig{Backend: "vertex", HTTPClient: http.DefaultClient}, false, "project"},
		{"vertex with key", GeminiConfig{Project: "p", APIKey: testKey, HTTPClient: http.DefaultClient}, false, "API key"},
		{"vertex default with client", GeminiConfig{Project: "p", HTTPClient: http.DefaultClient}, true, ""},
		// Without an HTTPClient, Vertex looks up ADC, which isolateEnv made
		// impossible: the error says so without printing the SDK's config.
		{"vertex looks up credentials", GeminiConfig{Project: "p", Location: "us-central1"}, false, "credentials"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			g, err := NewGemini(context.Background(), tc.cfg)
			if tc.ok {
				is.NoErr(err) // valid config
				is.True(g != nil)
				return
			}
			t.Logf("error: %v", err)
			is.True(err != nil)                                     // rejected
			is.True(strings.Contains(err.Error(), tc.in))           // saying why
			is.True(!strings.Contains(err.Error(), testKey))        // without the key
			is.True(!strings.Contains(err.Error(), "ClientConfig")) // nor the SDK's config dump
		})
	}
}

func TestVariantSeed(t *testing.T) {
	is := is.New(t)
	seen := map[int32]bool{}
	for v := range 3 {
		s := VariantSeed("a fox", v)
		is.True(s >= 0)                      // a non-negative int32
		is.Equal(s, VariantSeed("a fox", v)) // stable across attempts
		is.True(!seen[s])                    // distinct per variant
		seen[s] = true
	}
	is.True(VariantSeed("a fox", 0) != VariantSeed("a cat", 0)) // prompts spread out
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	var syntax error
	if err := json.Unmarshal([]byte("<html>"), new(map[string]any)); err != nil {
		syntax = fmt.Errorf("deserializeUnaryResponse: error unmarshalling response: %w\n<html>", err)
	}
	already := &Error{Class: Blocked, Reason: "SAFETY"}
	cases := []struct {
		name   string
		err    error
		class  Class
		reason string
	}{
		{"429", genai.APIError{Code: 429, Status: "RESOURCE_EXHAUSTED"}, RateLimited, "RATE_LIMITED"},
		{"429 plain", genai.APIError{Code: 429, Status: "429 Too Many Requests"}, RateLimited, "RATE_LIMITED"},
		{"exhausted without code", genai.APIError{Status: "RESOURCE_EXHAUSTED"}, RateLimited, "RATE_LIMITED"},
		{"wrapped 429", fmt.Errorf("generate: %w", genai.APIError{Code: 429}), RateLimited, "RATE_LIMITED"},
		{"pointer 503", fmt.Errorf("x: %w", &genai.APIError{Code: 503, Status: "UNAVAILABLE"}), Transient, "UNAVAILABLE"},
		{"503", genai.APIError{Code: 503, Status: "UNAVAILABLE"}, Transient, "UNAVAILABLE"},
		{"500", genai.APIError{Code: 500, Status: "INTERNAL"}, Transient, "INTERNAL"},
		{"504", genai.APIError{Code: 504, Status: "DEADLINE_EXCEEDED"}, Transient, "DEADLINE_EXCEEDED"},
		{"502 plain", genai.APIError{Code: 502, Status: "502 Bad Gateway"}, Transient, "HTTP_502"},
		{"unavailable without code", genai.APIError{Status: "UNAVAILABLE"}, Transient, "UNAVAILABLE"},
		{"408", genai.APIError{Code: 408, Status: "408 Request Timeout"}, Transient, "HTTP_408"},
		{"400", genai.APIError{Code: 400, Status: "INVALID_ARGUMENT"}, Permanent, "INVALID_ARGUMENT"},
		{"400 plain", genai.APIError{Code: 400, Status: "400 Bad Request"}, Permanent, "HTTP_400"},
		{"401", genai.APIError{Code: 401, Status: "UNAUTHENTICATED"}, Permanent, "UNAUTHENTICATED"},
		{"403", genai.APIError{Code: 403, Status: "PERMISSION_DENIED"}, Permanent, "PERMISSION_DENIED"},
		{"404 plain", genai.APIError{Code: 404, Status: "404 Not Found"}, Permanent, "HTTP_404"},
		{"no code no status", genai.APIError{Message: "?"}, Permanent, "API_ERROR"},
		{"deadline", fmt.Errorf("doRequest: %w", context.DeadlineExceeded), Transient, "TIMEOUT"},
		{"cancelled", fmt.Errorf("doRequest: %w", context.Canceled), Transient, "CANCELLED"},
		{"net timeout", &url.Error{Op: "Post", URL: "https://x/", Err: timeoutErr{}}, Transient, "TIMEOUT"},
		{"refused", &url.Error{Op: "Post", URL: "https://x/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}, Transient, "NETWORK"},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), Transient, "NETWORK"},
		{"unexpected EOF", fmt.Errorf("reading body: %w", io.ErrUnexpectedEOF), Transient, "NETWORK"},
		{"dns", &net.DNSError{Err: "no such host", Name: "x"}, Transient, "NETWORK"},
		{"json syntax", syntax, Transient, "BAD_RESPONSE"},
		{"json type", fmt.Errorf("mapToStruct: %w", &json.UnmarshalTypeError{Value: "string"}), Transient, "BAD_RESPONSE"},
		{"sdk panic", &sdkPanic{value: "interface conversion: interface {} is string, not []interface {}"}, Transient, "BAD_RESPONSE"},
		{"prompt blocked", &responseError{kind: promptBlocked, code: "SAFETY"}, Blocked, "PROMPT_BLOCKED:SAFETY"},
		{"output blocked", &responseError{kind: outputBlocked, code: "SPII"}, Blocked, "OUTPUT_BLOCKED:SPII"},
		{"no image", &responseError{kind: noImage, code: "STOP"}, Permanent, "NO_IMAGE"},
		{"already classified", fmt.Errorf("outer: %w", already), Blocked, "SAFETY"},
		{"unknown", errors.New("tModel: model is empty"), Permanent, "ERROR"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			ge := Classify(tc.err)
			is.True(ge != nil)              // classified
			is.Equal(ge.Class, tc.class)    // class
			is.Equal(ge.Reason, tc.reason)  // reason
			is.Equal(ClassOf(ge), tc.class) // ClassOf agrees
			if ge != already {
				c, ok := ge.Err.(clipped)
				is.True(ok)                             // the cause is kept
				is.Equal(c.err.Error(), tc.err.Error()) // unchanged
			}
		})
	}
	t.Run("nil", func(t *testing.T) {
		is.New(t).True(Classify(nil) == nil) // no error, no class
	})
	t.Run("idempotent", func(t *testing.T) {
		is.New(t).True(Classify(already) == already) // a classified error is returned as is
	})
	t.Run("long text is clipped but the chain kept", func(t *testing.T) {
		is := is.New(t)
		big := genai.APIError{Code: 503, Status: "UNAVAILABLE", Message: strings.Repeat("<p>overloaded</p>\n", 10000)}
		ge := Classify(fmt.Errorf("generate: %w", big))
		is.True(len(ge.Error()) < 400) // bounded for logs
		var ae genai.APIError
		is.True(errors.As(ge, &ae))                  // the SDK error is reachable
		is.Equal(ae.Code, 503)                       // intact
		is.True(!strings.Contains(ge.Error(), "\n")) // one line
	})
}

func TestNewGeminiVertexDefaults(t *testing.T) {
	isolateEnv(t)
	is := is.New(t)
	g, err := NewGemini(context.Background(), GeminiConfig{Project: "p", HTTPClient: http.DefaultClient})
	is.NoErr(err) // vertex is the default backend
	cc := g.client.ClientConfig()
	is.Equal(cc.Backend, genai.BackendVertexAI)                            // vertex
	is.Equal(cc.Location, "global")                                        // the default location
	is.Equal(cc.HTTPOptions.BaseURL, "https://aiplatform.googleapis.com/") // its endpoint
	is.Equal(cc.HTTPOptions.APIVersion, "v1beta1")                         // and API version
	is.True(cc.Credentials == nil)                                         // no ADC looked up
	is.True(cc.HTTPOptions.RetryOptions == nil)                            // and no SDK retries
	is.Equal(g.timeout, DefaultGeminiTimeout)                              // the default per-call timeout
}

// A response that stops with CONTINUATION is completed by the SDK (its
// automatic continuation, left on): one Generate, two requests, one image.
func TestGeminiContinuation(t *testing.T) {
	out := tinyPNG(t, color.RGBA{9, 9, 9, 255})
	first := candidate("CONTINUATION", map[string]any{"text": "planning", "thought": true})
	first["continuationToken"] = []byte("resume-here")
	replies := []reply{
		respond(t, map[string]any{"candidates": []any{first}}),
		respond(t, map[string]any{"candidates": []any{candidate("STOP", imagePart("image/png", out, false))}}),
	}
	eachBackend(t, replies, func(t *testing.T, _ backend, f *fakeModel, g *Gemini) {
		is := is.New(t)
		img, err := g.Generate(context.Background(), Request{Model: testModel, Prompt: "a fox"})
		is.NoErr(err)                       // continued to the end
		is.True(bytes.Equal(img.Data, out)) // the final image
		is.Equal(len(f.Calls()), 2)         // in two requests
	})
}
