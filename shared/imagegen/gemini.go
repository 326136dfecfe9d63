package imagegen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/genai"

	"github.com/assetgen/assetgen/shared/models"
)

// GeminiConfig configures the live generator.
type GeminiConfig struct {
	// Backend is "vertex" (the default: Vertex AI with Application Default
	// Credentials) or "gemini" (the Gemini API with an API key).
	Backend string
	// Project and Location address Vertex AI. Project is required there;
	// Location defaults to "global". Both are ignored by the "gemini" backend.
	Project, Location string
	// APIKey authenticates the Gemini API; required there, rejected for Vertex.
	// It is never logged nor put into an error.
	APIKey string
	// BaseURL overrides the API endpoint (tests point it at an httptest server).
	BaseURL string
	// HTTPClient is optional. For Vertex, a client given here is used as is and
	// no credentials are looked up: it must authenticate requests itself (tests
	// pass a plain client to a fake server).
	HTTPClient *http.Client
	// Timeout bounds one Generate call, including reading the response.
	// Default 120s.
	Timeout time.Duration
}

// DefaultGeminiTimeout bounds one Generate call when GeminiConfig.Timeout is zero.
const DefaultGeminiTimeout = 120 * time.Second

// Gemini generates images through google.golang.org/genai: Gemini image
// models with Models.GenerateContent (an IMAGE response modality), Imagen
// models with Models.GenerateImages (imagen.go). Build it once and share it:
// it is safe for concurrent use.
//
// Each Generate call is one attempt. The SDK retries only when asked through
// HTTPOptions.RetryOptions, which is never set here: retries belong to Cloud
// Tasks, steered by the class of the returned error (see Classify). The one
// extra request the SDK may make is its automatic continuation (on by default):
// a response ending in finish reason CONTINUATION is completed by resending
// with the continuation token. That finishes one answer rather than retrying a
// failed one, and the per-call Timeout bounds it like everything else.
type Gemini struct {
	client  *genai.Client
	timeout time.Duration
	apiKey  string // only to scrub it from error text, should it ever appear
}

var (
	_ Generator = (*Gemini)(nil)
	_ Batcher   = (*Gemini)(nil)
)

// NewGemini builds the genai client once. For Vertex without an HTTPClient it
// looks up Application Default Credentials (no network call for a service
// account on Cloud Functions; the metadata server is asked on first use).
func NewGemini(ctx context.Context, cfg GeminiConfig) (*Gemini, error) {
	cc := &genai.ClientConfig{
		HTTPClient:  cfg.HTTPClient,
		HTTPOptions: genai.HTTPOptions{BaseURL: cfg.BaseURL},
	}
	switch strings.ToLower(strings.TrimSpace(cfg.Backend)) {
	case "", "vertex":
		if cfg.Project == "" {
			return nil, errors.New("imagegen: gemini: the vertex backend needs a project")
		}
		if cfg.APIKey != "" {
			return nil, errors.New("imagegen: gemini: an API key is only for the gemini backend; vertex uses credentials")
		}
		cc.Backend = genai.BackendVertexAI
		cc.Project = cfg.Project
		cc.Location = cfg.Location
		if cc.Location == "" {
			cc.Location = "global"
		}
	case "gemini":
		if cfg.APIKey == "" {
			return nil, errors.New("imagegen: gemini: the gemini backend needs an API key")
		}
		cc.Backend = genai.BackendGeminiAPI
		cc.APIKey = cfg.APIKey
	default:
		return nil, fmt.Errorf("imagegen: gemini: unknown backend %q (want vertex or gemini)", cfg.Backend)
	}
	client, err := genai.NewClient(ctx, cc)
	if err != nil {
		// The SDK's constructor errors print the whole ClientConfig, API key
		// included: keep only the sentence before it, and never wrap the original.
		msg, _, _ := strings.Cut(err.Error(), "ClientConfig:")
		return nil, fmt.Errorf("imagegen: gemini: new client: %s", scrub(strings.TrimSpace(msg), cfg.APIKey))
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultGeminiTimeout
	}
	return &Gemini{client: client, timeout: timeout, apiKey: cfg.APIKey}, nil
}

// Generate implements Generator with one generateContent call (or, for an
// Imagen model, a one-image generateImages call). Errors are *Error,
// classified by Classify.
//
// The request is one user turn: the prompt text, then one inline-data part per
// reference image, with responseModalities ["IMAGE"] (the current image models
// answer image-only requests; only the retired 2.0 preview needed TEXT too) and
// imageConfig with the aspect ratio, the size (left out at 1K, the API's
// default, so models with one size are never sent one) and the output MIME
// type (left out for png: only Vertex AI takes one).
//
// Variants differ by seed: req.Seed, or else VariantSeed, so the variants of
// one prompt always get distinct seeds, and a retried attempt asks for the
// same image it asked for before. The models treat a seed as best effort, so
// this makes variants different and retries stable as far as the model
// allows, no more.
func (g *Gemini) Generate(ctx context.Context, req Request) (Image, error) {
	if req.Model == "" {
		return Image{}, &Error{Class: Permanent, Reason: "BAD_REQUEST", Err: errors.New("no model")}
	}
	if req.API == models.GenerateImages {
		res, err := g.GenerateBatch(ctx, req, []int{req.Variant})
		if err != nil {
			return Image{}, err
		}
		return res[0].Image, res[0].Err
	}
	if strings.TrimSpace(req.Prompt) == "" && len(req.Refs) == 0 {
		return Image{}, &Error{Class: Permanent, Reason: "BAD_REQUEST", Err: errors.New("no prompt")}
	}
	parts := make([]*genai.Part, 0, 1+len(req.Refs))
	if req.Prompt != "" {
		parts = append(parts, genai.NewPartFromText(req.Prompt))
	}
	for i, ref := range req.Refs {
		if len(ref.Data) == 0 {
			return Image{}, &Error{Class: Permanent, Reason: "BAD_REQUEST", Err: fmt.Errorf("reference image %d is empty", i)}
		}
		mime := ref.MIMEType
		if mime == "" {
			mime = http.DetectContentType(ref.Data)
		}
		parts = append(parts, genai.NewPartFromBytes(ref.Data, mime))
	}
	seed := req.Seed
	if seed == nil {
		seed = genai.Ptr(VariantSeed(req.Prompt, req.Variant))
	}
	config := &genai.GenerateContentConfig{
		ResponseModalities: []string{string(genai.ModalityImage)},
		Seed:               seed,
	}
	ic := genai.ImageConfig{AspectRatio: req.AspectRatio, ImageSize: sizeParam(req.ImageSize)}
	if mime := MIMEType(req.Format); mime != "image/png" {
		ic.OutputMIMEType = mime
	}
	if ic != (genai.ImageConfig{}) {
		config.ImageConfig = &ic
	}

	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	contents := []*genai.Content{genai.NewContentFromParts(parts, genai.RoleUser)}
	resp, err := g.generateContent(ctx, req.Model, contents, config)
	if err != nil {
		return Image{}, classify(err, g.apiKey)
	}
	img, err := pickImage(resp)
	if err != nil {
		return Image{}, classify(err, g.apiKey)
	}
	return img, nil
}

// sizeParam is the size to send: none for 1K, the APIs' default (Gemini
// 2.5 Flash Image and Imagen 4 Fast take no size at all).
func sizeParam(size string) string {
	if size == "1K" {
		return ""
	}
	return size
}

// generateContent is the one SDK call. The SDK's response converters assert
// JSON types without checking (models.go generateContentResponseFromMldev:
// `fromCandidates.([]any)`), so a well-formed but unexpected body panics inside
// it; that is turned into an error here instead of taking the process down.
func (g *Gemini) generateContent(ctx context.Context, model string, contents []*genai.Content, config *genai.GenerateContentConfig) (resp *genai.GenerateContentResponse, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, &sdkPanic{value: p}
		}
	}()
	return g.client.Models.GenerateContent(ctx, model, contents, config)
}

// sdkPanic is a panic recovered from the SDK while it handled a response.
type sdkPanic struct{ value any }

func (e *sdkPanic) Error() string {
	return fmt.Sprintf("genai panicked handling the response: %v", e.value)
}

// responseKind says why a successful response carries no image.
type responseKind int

const (
	promptBlocked responseKind = iota + 1 // promptFeedback.blockReason, no candidates
	outputBlocked                         // a safety-type finish reason and no image
	noImage                               // anything else without an image part
)

// responseError is a response that came back but holds no usable image.
// Classify turns it into a class.
type responseError struct {
	kind   responseKind
	code   string // the block reason or finish reason, as the API spells it
	detail string // the block/finish message or the model's text, for logs
}

func (e *responseError) Error() string {
	var b strings.Builder
	switch e.kind {
	case promptBlocked:
		b.WriteString("prompt blocked")
	case outputBlocked:
		b.WriteString("output blocked")
	default:
		b.WriteString("the model returned no image")
	}
	if e.code != "" {
		b.WriteString(" (" + e.code + ")")
	}
	if e.detail != "" {
		b.WriteString(": " + clipText(e.detail, 200))
	}
	return b.String()
}

// blockingFinish lists the finish reasons that mean the output was withheld on
// safety, policy or recitation grounds (types.go FinishReason* constants).
var blockingFinish = map[genai.FinishReason]bool{
	genai.FinishReasonSafety:                 true,
	genai.FinishReasonImageSafety:            true,
	genai.FinishReasonProhibitedContent:      true,
	genai.FinishReasonImageProhibitedContent: true,
	genai.FinishReasonBlocklist:              true,
	genai.FinishReasonSPII:                   true,
	genai.FinishReasonRecitation:             true,
	genai.FinishReasonImageRecitation:        true,
}

// pickImage keeps the last inline image part not marked Thought (draft images
// come first, flagged as thoughts). Without one it says why as a *responseError.
func pickImage(resp *genai.GenerateContentResponse) (Image, error) {
	if resp == nil {
		return Image{}, &responseError{kind: noImage, detail: "empty response"}
	}
	var (
		img     *genai.Blob
		texts   []string
		blocked *genai.Candidate
		last    *genai.Candidate
	)
	for _, c := range resp.Candidates {
		if c == nil {
			continue
		}
		last = c
		if blocked == nil && blockingFinish[c.FinishReason] {
			blocked = c
		}
		if c.Content == nil {
			continue
		}
		for _, p := range c.Content.Parts {
			if p == nil || p.Thought {
				continue
			}
			if b := p.InlineData; b != nil && len(b.Data) > 0 && strings.HasPrefix(strings.ToLower(b.MIMEType), "image/") {
				img = b
			} else if t := strings.TrimSpace(p.Text); t != "" {
				texts = append(texts, t)
			}
		}
	}
	if img != nil {
		return Image{MIMEType: img.MIMEType, Data: img.Data}, nil
	}
	if pf := resp.PromptFeedback; pf != nil && pf.BlockReason != "" {
		return Image{}, &responseError{kind: promptBlocked, code: string(pf.BlockReason), detail: pf.BlockReasonMessage}
	}
	if blocked != nil {
		return Image{}, &responseError{kind: outputBlocked, code: string(blocked.FinishReason), detail: blocked.FinishMessage}
	}
	e := &responseError{kind: noImage, detail: strings.Join(texts, " ")}
	if last != nil {
		e.code = string(last.FinishReason)
		if e.detail == "" {
			e.detail = last.FinishMessage
		}
	}
	return Image{}, e
}

// Classify is the one place that decides what a generation failure means:
//
//   - an *Error already classified: returned as is;
//   - a prompt blocked (promptFeedback.blockReason): Blocked, "PROMPT_BLOCKED:<reason>";
//   - an output withheld (finish reason SAFETY, IMAGE_SAFETY, PROHIBITED_CONTENT,
//     IMAGE_PROHIBITED_CONTENT, BLOCKLIST, SPII, RECITATION, IMAGE_RECITATION and
//     no image): Blocked, "OUTPUT_BLOCKED:<finish reason>";
//   - any other response without an image part, STOP and text-only answers
//     included: Permanent, "NO_IMAGE";
//   - genai.APIError (a value, not a pointer) with code 429 or status
//     RESOURCE_EXHAUSTED: RateLimited, "RATE_LIMITED";
//   - genai.APIError with a 5xx code, 408, or status UNAVAILABLE, INTERNAL or
//     DEADLINE_EXCEEDED: Transient; any other genai.APIError: Permanent. The
//     reason is the google.rpc status name when the body carried one
//     ("UNAVAILABLE", "INVALID_ARGUMENT"), else "HTTP_<code>" ("HTTP_503");
//   - context.Canceled: Transient, "CANCELLED" (the attempt was cut short, not
//     refused); context.DeadlineExceeded or a network timeout: Transient, "TIMEOUT";
//   - a body that is not the JSON we expect (a proxy's HTML page, a truncated
//     body, JSON of the wrong shape, which can even panic inside the SDK):
//     Transient, "BAD_RESPONSE" — such bodies come from the path to the model,
//     not the model's verdict, and a later attempt usually succeeds;
//   - a connection refused, reset or cut, or a DNS failure: Transient, "NETWORK";
//   - anything else: Permanent, "ERROR".
//
// The wrapped error's text is clipped to a log-friendly length; errors.As still
// reaches the original (a genai.APIError, say) through Unwrap.
func Classify(err error) *Error {
	return classify(err, "")
}

func classify(err error, secret string) *Error {
	if err == nil {
		return nil
	}
	var ge *Error
	if errors.As(err, &ge) {
		return ge
	}
	class, reason := decide(err)
	return &Error{Class: class, Reason: reason, Err: clipped{err: err, secret: secret}}
}

// transientStatus are google.rpc status names worth another attempt.
var transientStatus = map[string]bool{"UNAVAILABLE": true, "INTERNAL": true, "DEADLINE_EXCEEDED": true}

// rpcStatus are the google.rpc.Code names, used as reasons when an error body
// carries one; anything else in Status (a plain "503 Service Unavailable") is not.
var rpcStatus = map[string]bool{
	"CANCELLED": true, "UNKNOWN": true, "INVALID_ARGUMENT": true, "DEADLINE_EXCEEDED": true,
	"NOT_FOUND": true, "ALREADY_EXISTS": true, "PERMISSION_DENIED": true, "RESOURCE_EXHAUSTED": true,
	"FAILED_PRECONDITION": true, "ABORTED": true, "OUT_OF_RANGE": true, "UNIMPLEMENTED": true,
	"INTERNAL": true, "UNAVAILABLE": true, "DATA_LOSS": true, "UNAUTHENTICATED": true,
}

func decide(err error) (Class, string) {
	var re *responseError
	if errors.As(err, &re) {
		switch re.kind {
		case promptBlocked:
			return Blocked, "PROMPT_BLOCKED:" + re.code
		case outputBlocked:
			return Blocked, "OUTPUT_BLOCKED:" + re.code
		default:
			return Permanent, "NO_IMAGE"
		}
	}
	if ae, ok := asAPIError(err); ok {
		return decideAPI(ae)
	}
	if errors.Is(err, context.Canceled) {
		return Transient, "CANCELLED"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Transient, "TIMEOUT"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Transient, "TIMEOUT"
	}
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var sp *sdkPanic
	if errors.As(err, &syntax) || errors.As(err, &typ) || errors.As(err, &sp) {
		return Transient, "BAD_RESPONSE"
	}
	var op *net.OpError
	var dns *net.DNSError
	if errors.As(err, &op) || errors.As(err, &dns) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) {
		return Transient, "NETWORK"
	}
	return Permanent, "ERROR"
}

// asAPIError finds a genai.APIError in err's chain. The SDK returns it by value
// (api_client.go newAPIError); a pointer is accepted too in case a caller wraps one.
func asAPIError(err error) (genai.APIError, bool) {
	var v genai.APIError
	if errors.As(err, &v) {
		return v, true
	}
	var p *genai.APIError
	if errors.As(err, &p) && p != nil {
		return *p, true
	}
	return genai.APIError{}, false
}

func decideAPI(ae genai.APIError) (Class, string) {
	status := strings.ToUpper(strings.TrimSpace(ae.Status))
	if ae.Code == http.StatusTooManyRequests || status == "RESOURCE_EXHAUSTED" {
		return RateLimited, "RATE_LIMITED"
	}
	reason := "API_ERROR"
	switch {
	case rpcStatus[status]:
		reason = status
	case ae.Code != 0:
		reason = "HTTP_" + strconv.Itoa(ae.Code)
	}
	if ae.Code >= 500 || ae.Code == http.StatusRequestTimeout || transientStatus[status] {
		return Transient, reason
	}
	return Permanent, reason
}

// clipped keeps an error's chain but bounds its text: SDK errors can carry a
// whole response body (an HTML page, a base64 image) that has no place in a log.
type clipped struct {
	err    error
	secret string
}

func (c clipped) Error() string { return clipText(scrub(c.err.Error(), c.secret), 300) }
func (c clipped) Unwrap() error { return c.err }

// clipText collapses whitespace and cuts s to at most n runes.
func clipText(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

func scrub(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[redacted]")
}
