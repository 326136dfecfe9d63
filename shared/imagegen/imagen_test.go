package imagegen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image/color"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/models"
)

const imagenModel = "imagen-4.0-generate-001"

// predictCall is one generateImages request as Vertex AI receives it.
type predictCall struct {
	model string
	body  map[string]any
}

// fakeImagen speaks Vertex AI's predict (what Models.GenerateImages sends):
//
//	POST /v1beta1/projects/{p}/locations/{l}/publishers/google/models/{model}:predict
//
// Replies are served in order and the last one repeats.
type fakeImagen struct {
	mu      sync.Mutex
	calls   []predictCall
	replies []reply
}

func newImagen(t *testing.T, replies ...reply) (*fakeImagen, *Gemini) {
	t.Helper()
	isolateEnv(t)
	f := &fakeImagen{replies: replies}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1beta1/projects/{project}/locations/{location}/publishers/google/models/{action}", func(w http.ResponseWriter, r *http.Request) {
		model, ok := strings.CutSuffix(r.PathValue("action"), ":predict")
		var body map[string]any
		err := json.NewDecoder(r.Body).Decode(&body)
		if !ok || err != nil {
			t.Errorf("fake imagen: unexpected request %s: %v", r.URL.Path, err)
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.calls = append(f.calls, predictCall{model: model, body: body})
		rep := f.replies[min(len(f.calls), len(f.replies))-1]
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.status)
		_, _ = io.WriteString(w, rep.body)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("fake imagen: unrouted %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	g, err := NewGemini(context.Background(), GeminiConfig{Backend: "vertex", Project: "proj-1", Location: "us-central1", BaseURL: srv.URL, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return f, g
}

func (f *fakeImagen) Calls() []predictCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]predictCall(nil), f.calls...)
}

// predictions answers a predict call; []byte values marshal as base64.
func predictions(t *testing.T, preds ...map[string]any) reply {
	t.Helper()
	return respond(t, map[string]any{"predictions": preds})
}

func imagenImage(mime string, data []byte) map[string]any {
	return map[string]any{"bytesBase64Encoded": data, "mimeType": mime}
}

// param reads parameters.<path> of a recorded call.
func param(c predictCall, path ...string) any {
	var v any = c.body["parameters"]
	for _, k := range path {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	return v
}

// One call makes all of a row's variants, with the size, format and seed
// the row asked for; the seed goes with addWatermark false, which Imagen
// needs to honour it.
func TestImagenOneCallForAllVariants(t *testing.T) {
	is := is.New(t)
	imgs := [][]byte{tinyPNG(t, color.RGBA{1, 0, 0, 255}), tinyPNG(t, color.RGBA{0, 1, 0, 255}), tinyPNG(t, color.RGBA{0, 0, 1, 255})}
	f, g := newImagen(t, predictions(t, imagenImage("image/jpeg", imgs[0]), imagenImage("image/jpeg", imgs[1]), imagenImage("image/jpeg", imgs[2])))
	seed := int32(1234)
	res, err := g.GenerateBatch(context.Background(), Request{
		Model: imagenModel, API: models.GenerateImages, Prompt: "a lighthouse", AspectRatio: "16:9", ImageSize: "2K", Format: "jpeg", Seed: &seed,
	}, []int{0, 1, 2})
	is.NoErr(err)         // the call succeeded
	is.Equal(len(res), 3) // one result per variant
	for i, r := range res {
		is.NoErr(r.Err)                             // every image came back
		is.True(bytes.Equal(r.Image.Data, imgs[i])) // in order
		is.Equal(r.Image.MIMEType, "image/jpeg")
	}
	calls := f.Calls()
	is.Equal(len(calls), 1) // one model call
	c := calls[0]
	is.Equal(c.model, imagenModel)
	instances := c.body["instances"].([]any)
	is.Equal(instances[0].(map[string]any)["prompt"], "a lighthouse")
	is.Equal(param(c, "sampleCount"), 3.0) // NumberOfImages
	is.Equal(param(c, "aspectRatio"), "16:9")
	is.Equal(param(c, "sampleImageSize"), "2K")                   // ImageSize
	is.Equal(param(c, "outputOptions", "mimeType"), "image/jpeg") // OutputMIMEType
	is.Equal(param(c, "outputOptions", "compressionQuality"), float64(JPEGQuality))
	is.Equal(param(c, "includeRaiReason"), true) // filtered images say why
	is.Equal(param(c, "seed"), 1234.0)
	is.Equal(param(c, "addWatermark"), false) // a seed needs the watermark off
}

// Without a seed nothing turns the watermark off, and defaults (1K, png)
// are not sent.
func TestImagenDefaultsAreNotSent(t *testing.T) {
	is := is.New(t)
	f, g := newImagen(t, predictions(t, imagenImage("image/png", tinyPNG(t, color.RGBA{9, 9, 9, 255}))))
	img, err := g.Generate(context.Background(), Request{Model: imagenModel, API: models.GenerateImages, Prompt: "a fox", ImageSize: "1K", Format: "png"})
	is.NoErr(err) // Generate on an Imagen model is a one-image call
	is.Equal(img.MIMEType, "image/png")
	c := f.Calls()[0]
	is.Equal(param(c, "sampleCount"), 1.0)
	is.Equal(param(c, "seed"), nil)            // no seed
	is.Equal(param(c, "addWatermark"), nil)    // the watermark keeps its default (on)
	is.Equal(param(c, "sampleImageSize"), nil) // 1K is the default: not sent (Imagen 4 Fast takes no size)
	is.Equal(param(c, "outputOptions"), nil)   // png is the default
}

// A filtered image fails its own variant only.
func TestImagenFiltersOneImageAmongSeveral(t *testing.T) {
	is := is.New(t)
	a, c := tinyPNG(t, color.RGBA{1, 1, 1, 255}), tinyPNG(t, color.RGBA{2, 2, 2, 255})
	_, g := newImagen(t, predictions(t,
		imagenImage("image/png", a),
		map[string]any{"raiFilteredReason": "Your current safety filter threshold filtered out 1 generated images. Support codes: 58061214"},
		imagenImage("image/png", c)))
	res, err := g.GenerateBatch(context.Background(), Request{Model: imagenModel, Prompt: "three foxes"}, []int{0, 1, 2})
	is.NoErr(err) // the call as a whole succeeded
	is.NoErr(res[0].Err)
	is.NoErr(res[2].Err)
	is.True(bytes.Equal(res[2].Image.Data, c))
	var ge *Error
	is.True(errors.As(res[1].Err, &ge))                              // the filtered image
	is.Equal(ge.Class, Blocked)                                      // is blocked
	is.Equal(ge.Reason, "OUTPUT_BLOCKED:RAI")                        // with Imagen's reason
	is.True(strings.Contains(ge.Error(), "safety filter threshold")) // for the logs
}

// Imagen leaves filtered images out when it does not say why: the missing
// ones are blocked.
func TestImagenFewerImagesThanAsked(t *testing.T) {
	is := is.New(t)
	_, g := newImagen(t, predictions(t, imagenImage("image/png", tinyPNG(t, color.RGBA{5, 5, 5, 255}))))
	res, err := g.GenerateBatch(context.Background(), Request{Model: imagenModel, Prompt: "foxes"}, []int{0, 1, 2})
	is.NoErr(err)
	is.NoErr(res[0].Err)
	for _, r := range res[1:] {
		is.Equal(ClassOf(r.Err), Blocked) // the images not answered
		var ge *Error
		is.True(errors.As(r.Err, &ge))
		is.Equal(ge.Reason, "OUTPUT_BLOCKED:FILTERED")
	}

	_, g = newImagen(t, respond(t, map[string]any{}))
	res, err = g.GenerateBatch(context.Background(), Request{Model: imagenModel, Prompt: "foxes"}, []int{0, 1})
	is.NoErr(err)                          // an answer without predictions
	is.Equal(ClassOf(res[0].Err), Blocked) // has every image filtered
	is.Equal(ClassOf(res[1].Err), Blocked)
}

// A failed call fails every image of it, classified as generateContent's are.
func TestImagenCallErrors(t *testing.T) {
	cases := []struct {
		name   string
		reply  reply
		class  Class
		reason string
	}{
		{"rate limited", rpcError(http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "Quota exceeded for imagen"), RateLimited, "RATE_LIMITED"},
		{"unavailable", rpcError(http.StatusServiceUnavailable, "UNAVAILABLE", "overloaded"), Transient, "UNAVAILABLE"},
		{"prompt refused", rpcError(http.StatusBadRequest, "INVALID_ARGUMENT", "The prompt could not be submitted."), Permanent, "INVALID_ARGUMENT"},
		{"model shut down", rpcError(http.StatusNotFound, "NOT_FOUND", "Publisher Model was not found"), Permanent, "NOT_FOUND"},
		{"a body of the wrong shape", reply{status: http.StatusOK, body: `{"predictions":"oops"}`}, Transient, "BAD_RESPONSE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			_, g := newImagen(t, tc.reply)
			res, err := g.GenerateBatch(context.Background(), Request{Model: imagenModel, Prompt: "a fox"}, []int{0, 1})
			is.True(res == nil) // no per-image results
			var ge *Error
			is.True(errors.As(err, &ge)) // a classified error
			is.Equal(ge.Class, tc.class)
			is.Equal(ge.Reason, tc.reason)
		})
	}
}

// What the SDK or the model cannot take is refused before any request.
func TestImagenRefusesBeforeCalling(t *testing.T) {
	is := is.New(t)
	f, g := newImagen(t, predictions(t))
	ctx := context.Background()
	_, err := g.GenerateBatch(ctx, Request{Model: imagenModel, Prompt: "a fox", Refs: []RefImage{{Data: []byte("x")}}}, []int{0})
	is.Equal(ClassOf(err), Permanent) // no reference images
	_, err = g.GenerateBatch(ctx, Request{Model: imagenModel, Prompt: "a fox"}, []int{0, 1, 2, 3, 4})
	is.Equal(ClassOf(err), Permanent) // at most four per call
	_, err = g.GenerateBatch(ctx, Request{Model: imagenModel, Prompt: " "}, []int{0})
	is.Equal(ClassOf(err), Permanent) // a prompt is needed
	is.Equal(len(f.Calls()), 0)       // nothing was sent

	// The Gemini API backend has no generateImages in the SDK.
	isolateEnv(t)
	gem, err := NewGemini(ctx, GeminiConfig{Backend: "gemini", APIKey: testKey, BaseURL: "http://127.0.0.1:1"})
	is.NoErr(err)
	_, err = gem.GenerateBatch(ctx, Request{Model: imagenModel, Prompt: "a fox"}, []int{0})
	is.Equal(ClassOf(err), Permanent) // refused, not retried
	is.True(!strings.Contains(err.Error(), testKey))
}

// Gemini models get the size (but not 1K, the default), the seed asked for,
// and an output MIME type on Vertex AI (the Gemini API takes none: the SDK
// refuses it there).
func TestGeminiSettings(t *testing.T) {
	out := tinyPNG(t, color.RGBA{3, 3, 3, 255})
	replies := []reply{respond(t, map[string]any{"candidates": []any{candidate("STOP", imagePart("image/png", out, false))}})}
	eachBackend(t, replies, func(t *testing.T, b backend, f *fakeModel, g *Gemini) {
		is := is.New(t)
		ctx := context.Background()
		seed := int32(77)
		_, err := g.Generate(ctx, Request{Model: "gemini-3-pro-image-preview", Prompt: "a fox", ImageSize: "4K", Seed: &seed})
		is.NoErr(err)
		_, err = g.Generate(ctx, Request{Model: testModel, Prompt: "a fox", ImageSize: "1K"})
		is.NoErr(err)
		calls := f.Calls()
		is.Equal(calls[0].req.GenerationConfig.ImageConfig.ImageSize, "4K") // the size
		is.Equal(*calls[0].req.GenerationConfig.Seed, seed)                 // the seed asked for
		is.True(calls[1].req.GenerationConfig.ImageConfig == nil)           // 1K and no ratio: no image config

		_, err = g.Generate(ctx, Request{Model: testModel, Prompt: "a fox", Format: "jpeg"})
		if b.name == "gemini" {
			is.Equal(ClassOf(err), Permanent) // the Gemini API takes no output MIME type
			is.Equal(len(f.Calls()), 2)       // and nothing was sent
			return
		}
		is.NoErr(err)
		ic := f.Calls()[2].req.GenerationConfig.ImageConfig
		is.Equal(ic.ImageOutputOptions.MIMEType, "image/jpeg") // Vertex AI is asked for JPEG
	})
}
