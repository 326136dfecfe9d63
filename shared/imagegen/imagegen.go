// Package imagegen turns a prompt into an image. Generator is the seam; the
// placeholder draws deterministic PNGs for dry runs, and the Gemini generator
// calls Google's image models for live runs.
package imagegen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
)

// Request is one image to make (or, for a Batcher, the images of one call).
type Request struct {
	Model string
	// API is how the model is called: models.GenerateContent ("" too) or
	// models.GenerateImages.
	API         string
	Prompt      string
	Variant     int
	AspectRatio string
	// ImageSize is "1K", "2K" or "4K"; "" leaves the model's default.
	ImageSize string
	// Format is "png" ("" too), "jpeg" or "webp".
	Format string
	// Seed is the seed to ask for; nil lets the generator choose (Gemini
	// models get VariantSeed, Imagen none).
	Seed *int32
	Refs []RefImage
}

// RefImage is a reference image passed to the model.
type RefImage struct {
	MIMEType string
	Data     []byte
}

// Image is a generated image.
type Image struct {
	MIMEType string
	Data     []byte
}

// Checked returns img with its MIME type taken from its bytes, and refuses
// anything but PNG, JPEG or WebP: those are what browsers show as images
// without running anything, and a model's (or a proxy's) answer is not
// trusted to say what it holds — an SVG or HTML page stored under a signed
// URL would run script in whoever opens it. A refusal is Permanent,
// "BAD_IMAGE_TYPE".
func Checked(img Image) (Image, error) {
	mime := Sniff(img.Data)
	if mime == "" {
		claimed := img.MIMEType
		if len(claimed) > 64 {
			claimed = claimed[:64]
		}
		return Image{}, &Error{Class: Permanent, Reason: "BAD_IMAGE_TYPE", Err: fmt.Errorf("the model answered %d bytes declared %q that are not PNG, JPEG or WebP", len(img.Data), claimed)}
	}
	img.MIMEType = mime
	return img, nil
}

// Sniff names the image format of b by its leading bytes: image/png,
// image/jpeg or image/webp, or "" for anything else.
func Sniff(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return "image/png"
	case bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}):
		return "image/jpeg"
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return "image/webp"
	}
	return ""
}

// Generator makes one image per call. Errors are *Error with a Class, so callers
// know whether to retry.
type Generator interface {
	Generate(ctx context.Context, req Request) (Image, error)
}

// Batcher makes several images of one prompt with one model call, as the
// Imagen models do (NumberOfImages). variants names the images asked for,
// and the answer holds one Result per variant, in order. An image the model
// filtered out is a Result with a Blocked error; the other images of the
// call are unaffected. An error means the call as a whole failed.
type Batcher interface {
	GenerateBatch(ctx context.Context, req Request, variants []int) ([]Result, error)
}

// Result is one image of a batch call: an image, or why there is none.
type Result struct {
	Image Image
	Err   error
}

// MaxBatch is the most images one GenerateBatch call makes (Imagen's
// sampleCount limit).
const MaxBatch = 4

// SeedFor is the seed of variant v of a row that asked for seed base: base+v,
// wrapped to 31 bits as the model APIs take it.
func SeedFor(base int64, variant int) int32 {
	return int32((base + int64(variant)) & 0x7fffffff) //nolint:gosec // masked to 31 bits
}

// VariantSeed is the seed a Gemini model is asked for when the row named
// none: fnv32a(prompt)+v (31 bits), so the variants of one prompt get
// distinct seeds and a retried attempt asks for the image it asked for
// before.
func VariantSeed(prompt string, variant int) int32 {
	h := fnv.New32a()
	_, _ = io.WriteString(h, prompt)
	return int32((h.Sum32() + uint32(variant)) & 0x7fffffff) //nolint:gosec // masked to 31 bits
}

// MIMEType is the MIME type of an output format ("" is png).
func MIMEType(format string) string {
	switch format {
	case "jpeg":
		return "image/jpeg"
	case "webp":
		return "image/webp"
	default:
		return "image/png"
	}
}

// Class says what a failure means for the task that met it.
type Class int

// Failure classes.
const (
	// Permanent failures fail the variant and are not retried.
	Permanent Class = iota
	// Blocked means the model refused the prompt or its output on safety grounds.
	Blocked
	// RateLimited failures are retried after a backoff.
	RateLimited
	// Transient failures (5xx, timeouts) are retried after a backoff.
	Transient
)

// String names the class in metrics and logs.
func (c Class) String() string {
	switch c {
	case Blocked:
		return "blocked"
	case RateLimited:
		return "rate_limited"
	case Transient:
		return "transient"
	default:
		return "permanent"
	}
}

// Retryable reports whether a task should be retried for this class.
func (c Class) Retryable() bool { return c == RateLimited || c == Transient }

// Error is a classified generation failure.
type Error struct {
	Class Class
	// Reason is a short machine-readable cause, e.g. "SAFETY" or "NO_IMAGE".
	Reason string
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("imagegen: %s: %v", e.Reason, e.Err)
	}
	return "imagegen: " + e.Reason
}

func (e *Error) Unwrap() error { return e.Err }

// ClassOf returns the class of err; unclassified errors are transient when the
// context expired (the attempt ran out of time) and permanent otherwise.
func ClassOf(err error) Class {
	var ge *Error
	if errors.As(err, &ge) {
		return ge.Class
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Transient
	}
	return Permanent
}
