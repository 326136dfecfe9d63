package imagegen

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genai"
)

// JPEGQuality is the compression quality Imagen is asked for with JPEG
// output: above the API's default of 75, since the images are the product.
const JPEGQuality = 90

// GenerateBatch implements Batcher with one generateImages call for all of
// variants (NumberOfImages), for the Imagen models. Errors are *Error,
// classified by Classify; an image the model filtered out is that variant's
// Result, Blocked, "OUTPUT_BLOCKED:RAI" when the answer says why
// (includeRaiReason is always asked for) and "OUTPUT_BLOCKED:FILTERED" when
// the answer holds fewer images than asked (Imagen leaves filtered images
// out).
//
// req.Seed, when set, is sent with addWatermark false: Imagen refuses a seed
// while its SynthID watermark is on, and the SDK's AddWatermark field cannot
// say false (it is omitted when false), so the parameter goes in the request
// body through HTTPOptions.ExtraBody. Without a seed the watermark stays.
//
// The SDK offers GenerateImages on Vertex AI only: on the Gemini API backend
// it refuses the call (a Permanent error) before anything is sent.
func (g *Gemini) GenerateBatch(ctx context.Context, req Request, variants []int) ([]Result, error) {
	n := len(variants)
	switch {
	case req.Model == "":
		return nil, &Error{Class: Permanent, Reason: "BAD_REQUEST", Err: errors.New("no model")}
	case strings.TrimSpace(req.Prompt) == "":
		return nil, &Error{Class: Permanent, Reason: "BAD_REQUEST", Err: errors.New("no prompt")}
	case n < 1 || n > MaxBatch:
		return nil, &Error{Class: Permanent, Reason: "BAD_REQUEST", Err: fmt.Errorf("%d images asked of one call; 1 to %d", n, MaxBatch)}
	case len(req.Refs) > 0:
		return nil, &Error{Class: Permanent, Reason: "BAD_REQUEST", Err: fmt.Errorf("%s takes no reference images", req.Model)}
	}
	config := &genai.GenerateImagesConfig{
		NumberOfImages:   int32(n), //nolint:gosec // 1 to MaxBatch
		AspectRatio:      req.AspectRatio,
		ImageSize:        sizeParam(req.ImageSize),
		IncludeRAIReason: true,
	}
	if mime := MIMEType(req.Format); mime != "image/png" {
		config.OutputMIMEType = mime
		if mime == "image/jpeg" {
			config.OutputCompressionQuality = genai.Ptr(int32(JPEGQuality))
		}
	}
	if req.Seed != nil {
		config.Seed = genai.Ptr(*req.Seed)
		config.HTTPOptions = &genai.HTTPOptions{ExtraBody: map[string]any{"parameters": map[string]any{"addWatermark": false}}}
	}

	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	resp, err := g.generateImages(ctx, req.Model, req.Prompt, config)
	if err != nil {
		return nil, classify(err, g.apiKey)
	}
	out := make([]Result, n)
	var got []*genai.GeneratedImage
	if resp != nil {
		got = resp.GeneratedImages
	}
	for i := range out {
		if i >= len(got) || got[i] == nil {
			out[i].Err = &Error{Class: Blocked, Reason: "OUTPUT_BLOCKED:FILTERED",
				Err: fmt.Errorf("the model answered %d of %d images; Imagen leaves out the images it filters", len(got), n)}
			continue
		}
		gi := got[i]
		switch {
		case gi.Image != nil && len(gi.Image.ImageBytes) > 0:
			out[i].Image = Image{MIMEType: gi.Image.MIMEType, Data: gi.Image.ImageBytes}
		case gi.RAIFilteredReason != "":
			out[i].Err = &Error{Class: Blocked, Reason: "OUTPUT_BLOCKED:RAI", Err: errors.New(clipText(gi.RAIFilteredReason, 200))}
		default:
			out[i].Err = &Error{Class: Permanent, Reason: "NO_IMAGE", Err: errors.New("an answer without image bytes")}
		}
	}
	return out, nil
}

// generateImages is the one SDK call, guarded like generateContent against
// the SDK's converters panicking on an unexpected body.
func (g *Gemini) generateImages(ctx context.Context, model, prompt string, config *genai.GenerateImagesConfig) (resp *genai.GenerateImagesResponse, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, &sdkPanic{value: p}
		}
	}()
	return g.client.Models.GenerateImages(ctx, model, prompt, config)
}
