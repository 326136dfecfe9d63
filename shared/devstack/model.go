package devstack

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assetgen/assetgen/shared/imagegen"
	"github.com/assetgen/assetgen/shared/metrics"
)

// FakeModel stands in for Google's image model APIs in both of the SDK's
// wire shapes — the Gemini API (/v1beta/models/{model}:…) and Vertex AI
// (/v1beta1/projects/{p}/locations/{l}/publishers/google/models/{model}:…) —
// so live runs can be exercised locally and in tests with the real SDK and
// no account. It serves generateContent (the Gemini image models) and
// predict (what Models.GenerateImages sends for the Imagen models: several
// images per call). Images come from the placeholder generator, in the size,
// format and seed asked for. Markers in a prompt script failures, so a
// frontend can see every error path:
//
//	[blocked]          the prompt is refused (generateContent: promptFeedback.blockReason
//	                   SAFETY; predict: 400 INVALID_ARGUMENT, as Imagen refuses a prompt)
//	[blocked-output]   the output is refused (generateContent: finishReason IMAGE_SAFETY;
//	                   predict: every image filtered)
//	[filtered:K]       predict only: image K of the call (0-based) is filtered, the others made
//	[no-image]         the model answers with text only
//	[rate-limit-once]  the first call of each variant (predict: of each prompt and seed)
//	                   answers 429, the next succeeds
//	[unavailable]      every call answers 503
//	[svg]              the model answers an SVG image (with script) instead of a raster one
//
// Like Imagen, predict refuses a seed unless addWatermark is false, more
// than four images per call, and a size other than 1K and 2K; a filtered
// image comes back with its raiFilteredReason when includeRaiReason is set
// and is left out otherwise.
//
// Every image asked for counts in assetgen_local_model_images_total (the
// process's /metrics) by outcome: "image" is an image answered, the work a
// real model bills; "refused", "failed" and "abandoned" (the caller left
// first) are the rest, so the sum is every image asked for.
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
	mux.HandleFunc("POST /v1beta/models/{action}", f.route)
	mux.HandleFunc("POST /v1beta1/projects/{project}/locations/{location}/publishers/google/models/{action}", f.route)
	f.srv = &http.Server{Handler: mux}
	go func() { _ = f.srv.Serve(ln) }()
	return f, nil
}

// Calls counts model requests (generateContent and predict).
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

// route sends a request to its method by the path's suffix.
func (f *FakeModel) route(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	switch action := r.PathValue("action"); {
	case strings.HasSuffix(action, ":generateContent"):
		f.generate(w, r)
	case strings.HasSuffix(action, ":predict"):
		f.predict(w, r)
	default:
		f.count(outcomeFailed)
		fakeError(w, http.StatusNotFound, "NOT_FOUND", "no such method: "+action)
	}
}

type fakeRequest struct {
	Contents []struct {
		Parts []struct {
			Text string `json:"text"`
		} `json:"parts"`
	} `json:"contents"`
	GenerationConfig struct {
		Seed        *int32 `json:"seed"`
		ImageConfig *struct {
			AspectRatio        string `json:"aspectRatio"`
			ImageSize          string `json:"imageSize"`
			ImageOutputOptions *struct {
				MIMEType string `json:"mimeType"`
			} `json:"imageOutputOptions"`
		} `json:"imageConfig"`
	} `json:"generationConfig"`
}

// formatOf is the output format of a MIME type the request named ("" is png).
func formatOf(mime string) string {
	switch mime {
	case "image/jpeg":
		return "jpeg"
	case "image/webp":
		return "webp"
	}
	return ""
}

// wait sleeps what is left of Delay after started, as a real model computes
// inside its latency; false when the caller left first.
func (f *FakeModel) wait(r *http.Request, started time.Time) bool {
	wait := f.Delay - time.Since(started)
	if wait <= 0 {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-r.Context().Done():
		return false
	case <-t.C:
		return true
	}
}

func (f *FakeModel) generate(w http.ResponseWriter, r *http.Request) {
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
	seed := int32(0)
	if req.GenerationConfig.Seed != nil {
		seed = *req.GenerationConfig.Seed
	}
	ask := imagegen.Request{Prompt: prompt, Seed: &seed, AspectRatio: "1:1"}
	if ic := req.GenerationConfig.ImageConfig; ic != nil {
		if ic.AspectRatio != "" {
			ask.AspectRatio = ic.AspectRatio
		}
		ask.ImageSize = ic.ImageSize
		if o := ic.ImageOutputOptions; o != nil {
			ask.Format = formatOf(o.MIMEType)
		}
	}
	// The image is drawn inside the model's time, as a real model computes it
	// inside its latency: Delay is the whole answer time.
	started := time.Now()
	img, imgErr := f.images.Generate(r.Context(), ask)
	if !f.wait(r, started) {
		f.count(outcomeAbandoned)
		return
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

type predictRequest struct {
	Instances []struct {
		Prompt string `json:"prompt"`
	} `json:"instances"`
	Parameters struct {
		SampleCount      int    `json:"sampleCount"`
		AspectRatio      string `json:"aspectRatio"`
		Seed             *int32 `json:"seed"`
		AddWatermark     *bool  `json:"addWatermark"`
		SampleImageSize  string `json:"sampleImageSize"`
		IncludeRAIReason bool   `json:"includeRaiReason"`
		OutputOptions    *struct {
			MIMEType string `json:"mimeType"`
		} `json:"outputOptions"`
	} `json:"parameters"`
}

// filteredMarker finds [filtered:K] in a prompt: the image K of a call to filter.
var filteredMarker = regexp.MustCompile(`\[filtered:(\d)\]`)

// predict answers Imagen's generateImages: sampleCount images in one call.
func (f *FakeModel) predict(w http.ResponseWriter, r *http.Request) {
	var req predictRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Instances) != 1 {
		f.count(outcomeFailed)
		fakeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "a predict request holds one instance")
		return
	}
	prompt, p := req.Instances[0].Prompt, req.Parameters
	n := p.SampleCount
	refuse := func(msg string) {
		for range max(n, 1) {
			f.count(outcomeFailed)
		}
		fakeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", msg)
	}
	switch {
	case n < 1 || n > imagegen.MaxBatch:
		refuse(fmt.Sprintf("sampleCount must be 1 to %d", imagegen.MaxBatch))
		return
	case p.Seed != nil && (p.AddWatermark == nil || *p.AddWatermark):
		refuse("Image generation failed with the following error: Seed is not supported when watermark is enabled.")
		return
	case p.SampleImageSize != "" && p.SampleImageSize != "1K" && p.SampleImageSize != "2K":
		refuse("sampleImageSize must be 1K or 2K")
		return
	}
	ask := imagegen.Request{Prompt: prompt, AspectRatio: cmp.Or(p.AspectRatio, "1:1"), ImageSize: p.SampleImageSize}
	if p.OutputOptions != nil {
		ask.Format = formatOf(p.OutputOptions.MIMEType)
	}
	variants := make([]int, n)
	for i := range variants {
		variants[i] = i
	}
	if p.Seed != nil {
		ask.Seed = p.Seed
	}
	started := time.Now()
	made, madeErr := f.images.GenerateBatch(r.Context(), ask, variants)
	if !f.wait(r, started) {
		for range n {
			f.count(outcomeAbandoned)
		}
		return
	}
	seed := int32(-1)
	if p.Seed != nil {
		seed = *p.Seed
	}
	fail := func(code int, status, msg string) {
		for range n {
			f.count(outcomeFailed)
		}
		fakeError(w, code, status, msg)
	}
	switch {
	case strings.Contains(prompt, "[unavailable]"):
		fail(http.StatusServiceUnavailable, "UNAVAILABLE", "the model is overloaded")
		return
	case strings.Contains(prompt, "[rate-limit-once]") && f.firstCall(fmt.Sprint("predict ", prompt, seed)):
		fail(http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model")
		return
	case strings.Contains(prompt, "[blocked]"):
		for range n {
			f.count(outcomeRefused)
		}
		fakeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Image generation failed with the following error: The prompt could not be submitted. This prompt contains sensitive words that violate Google's Responsible AI practices.")
		return
	case madeErr != nil:
		fail(http.StatusInternalServerError, "INTERNAL", madeErr.Error())
		return
	}
	filtered := map[int]bool{}
	for _, m := range filteredMarker.FindAllStringSubmatch(prompt, -1) {
		k, _ := strconv.Atoi(m[1])
		filtered[k] = true
	}
	all := strings.Contains(prompt, "[blocked-output]")
	preds := []any{}
	for i, res := range made {
		if all || filtered[i] {
			f.count(outcomeRefused)
			if p.IncludeRAIReason {
				preds = append(preds, map[string]any{"raiFilteredReason": "Your current safety filter threshold filtered out 1 generated images. You will not be charged for blocked images."})
			}
			continue
		}
		if res.Err != nil {
			f.count(outcomeFailed)
			continue
		}
		f.count(outcomeImage)
		preds = append(preds, map[string]any{"bytesBase64Encoded": res.Image.Data, "mimeType": res.Image.MIMEType})
	}
	writeJSON(w, map[string]any{"predictions": preds})
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
