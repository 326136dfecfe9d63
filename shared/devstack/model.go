package devstack

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assetgen/assetgen/shared/imagegen"
	"github.com/assetgen/assetgen/shared/metrics"
)

// FakeModel stands in for a Gemini image model's generateContent endpoint (the
// Gemini API's wire format), so live runs can be exercised locally and in tests
// with the real SDK and no account. Images come from the placeholder generator.
// Markers in a prompt script failures, so a frontend can see every error path:
//
//	[blocked]          the prompt is refused (promptFeedback.blockReason SAFETY)
//	[blocked-output]   the output is refused (finishReason IMAGE_SAFETY)
//	[no-image]         the model answers with text only
//	[rate-limit-once]  the first call of each variant answers 429, the next succeeds
//	[unavailable]      every call answers 503
//	[svg]              the model answers an SVG image (with script) instead of a raster one
//
// Every request counts in assetgen_local_model_images_total (the process's
// /metrics) by outcome: "image" is an image answered, the work a real model
// bills; "refused", "failed" and "abandoned" (the caller left first) are the
// rest, so the sum is every image asked for.
type FakeModel struct {
	// URL is the base URL to give the SDK (GEMINI_BASE_URL).
	URL   string
	Delay time.Duration

	srv     *http.Server
	ln      net.Listener
	images  *imagegen.Placeholder
	calls   atomic.Int64
	made    atomic.Int64
	mu      sync.Mutex
	limited map[string]bool
}

// modelImages counts the images asked of every fake model in the process.
var (
	modelImages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "assetgen_local_model_images_total",
		Help: "Images the local fake model was asked for, by outcome: image (answered with one: what a real model bills), refused, failed, abandoned.",
	}, []string{"outcome"})
	registerModelImages sync.Once
)

// Outcomes of one request to the fake model.
const (
	outcomeImage     = "image"
	outcomeRefused   = "refused"
	outcomeFailed    = "failed"
	outcomeAbandoned = "abandoned"
)

// StartFakeModel serves the fake on addr ("127.0.0.1:0" for a free port); each
// image takes delay.
func StartFakeModel(addr string, delay time.Duration) (*FakeModel, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("devstack: fake model listen %s: %w", addr, err)
	}
	// Registered by the first fake model, so only a process that runs one
	// exports the series; every outcome starts at zero.
	registerModelImages.Do(func() {
		metrics.Registry.MustRegister(modelImages)
		for _, o := range []string{outcomeImage, outcomeRefused, outcomeFailed, outcomeAbandoned} {
			modelImages.WithLabelValues(o)
		}
	})
	f := &FakeModel{URL: "http://" + ln.Addr().String(), Delay: delay, ln: ln, images: imagegen.NewPlaceholder(0), limited: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1beta/models/{action}", f.generate)
	f.srv = &http.Server{Handler: mux}
	go func() { _ = f.srv.Serve(ln) }()
	return f, nil
}

// Calls counts generateContent requests.
func (f *FakeModel) Calls() int64 { return f.calls.Load() }

// Images counts the images this fake answered with.
func (f *FakeModel) Images() int64 { return f.made.Load() }

func (f *FakeModel) count(outcome string) {
	modelImages.WithLabelValues(outcome).Inc()
	if outcome == outcomeImage {
		f.made.Add(1)
	}
}

// Close stops the fake.
func (f *FakeModel) Close(ctx context.Context) error { return f.srv.Shutdown(ctx) }

type fakeRequest struct {
	Contents []struct {
		Parts []struct {
			Text string `json:"text"`
		} `json:"parts"`
	} `json:"contents"`
	GenerationConfig struct {
		Seed        *int32 `json:"seed"`
		ImageConfig *struct {
			AspectRatio string `json:"aspectRatio"`
		} `json:"imageConfig"`
	} `json:"generationConfig"`
}

func (f *FakeModel) generate(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	var req fakeRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		f.count(outcomeFailed)
		fakeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
		return
	}
	var prompt string
	for _, c := range req.Contents {
		for _, p := range c.Parts {
			prompt += p.Text
		}
	}
	seed, ratio := int32(0), "1:1"
	if req.GenerationConfig.Seed != nil {
		seed = *req.GenerationConfig.Seed
	}
	if ic := req.GenerationConfig.ImageConfig; ic != nil && ic.AspectRatio != "" {
		ratio = ic.AspectRatio
	}
	// The image is drawn inside the model's time, as a real model computes it
	// inside its latency: Delay is the whole answer time.
	started := time.Now()
	img, imgErr := f.images.Generate(r.Context(), imagegen.Request{Prompt: prompt, Variant: int(seed), AspectRatio: ratio})
	if wait := f.Delay - time.Since(started); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-r.Context().Done():
			t.Stop()
			f.count(outcomeAbandoned)
			return
		case <-t.C:
		}
	}
	switch {
	case strings.Contains(prompt, "[unavailable]"):
		f.count(outcomeFailed)
		fakeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "the model is overloaded")
		return
	case strings.Contains(prompt, "[rate-limit-once]") && f.firstCall(fmt.Sprint(prompt, seed)):
		f.count(outcomeFailed)
		fakeError(w, http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "quota exceeded")
		return
	case strings.Contains(prompt, "[blocked]"):
		f.count(outcomeRefused)
		writeJSON(w, map[string]any{"promptFeedback": map[string]any{"blockReason": "SAFETY"}})
		return
	case strings.Contains(prompt, "[blocked-output]"):
		f.count(outcomeRefused)
		writeJSON(w, map[string]any{"candidates": []any{map[string]any{"finishReason": "IMAGE_SAFETY"}}})
		return
	case strings.Contains(prompt, "[svg]"):
		f.count(outcomeImage)
		svg := []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>`)
		writeJSON(w, candidate(map[string]any{"inlineData": map[string]any{"mimeType": "image/svg+xml", "data": svg}}))
		return
	case strings.Contains(prompt, "[no-image]"):
		f.count(outcomeRefused)
		writeJSON(w, candidate(map[string]any{"text": "I would rather describe it in words."}))
		return
	}
	if imgErr != nil {
		f.count(outcomeFailed)
		fakeError(w, http.StatusInternalServerError, "INTERNAL", imgErr.Error())
		return
	}
	f.count(outcomeImage)
	writeJSON(w, candidate(map[string]any{"inlineData": map[string]any{"mimeType": img.MIMEType, "data": img.Data}}))
}

func (f *FakeModel) firstCall(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.limited[key] {
		return false
	}
	f.limited[key] = true
	return true
}

func candidate(part map[string]any) map[string]any {
	return map[string]any{"candidates": []any{map[string]any{
		"content": map[string]any{"role": "model", "parts": []any{part}}, "finishReason": "STOP",
	}}}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func fakeError(w http.ResponseWriter, code int, status, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg, "status": status}})
}
