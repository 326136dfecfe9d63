package batch

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/models"
	"github.com/assetgen/assetgen/shared/problem"
)

// Rules are the settings validation depends on.
type Rules struct {
	Models models.Table
	// RefBuckets are the buckets gs:// references may name.
	RefBuckets []string
	// UploadsBucket is the platform's bucket: gs:// references into it may
	// name uploads (uploads/…) only, whatever RefBuckets says; whose upload
	// it is, the submit checks against the caller.
	UploadsBucket string
	// AllowHTTPRefs admits plain http:// references (local demos and tests only).
	AllowHTTPRefs bool
	// CheckWebhook and CheckSheet judge the notification targets (the rules of
	// the notify package); nil means the feature is not available here.
	CheckWebhook func(url string) error
	CheckSheet   func(spreadsheetID, rng string) error
	// LiveBackend is the deployment's live backend (models.Vertex or
	// models.GeminiAPI; "" when it runs no live batches): a live batch may
	// name only a model it serves.
	LiveBackend string
}

// Validate checks every field of req and returns the normalised spec, or a
// VALIDATION_FAILED (or REF_NOT_ALLOWED) problem listing every offending field.
func Validate(req Request, rules Rules) (Spec, error) {
	var errs []problem.FieldError
	add := func(field, code, format string, args ...any) {
		errs = append(errs, problem.FieldError{Field: field, Code: code, Detail: fmt.Sprintf(format, args...)})
	}

	spec := Spec{RunMode: ledger.RunMode(req.RunMode), Model: req.Model}
	switch spec.RunMode {
	case ledger.DryRun, ledger.Live:
	case "":
		add("/runMode", problem.FieldRequired, "runMode is required: %q or %q", ledger.DryRun, ledger.Live)
	default:
		add("/runMode", problem.FieldUnknownValue, "runMode must be %q or %q", ledger.DryRun, ledger.Live)
	}

	model, modelOK := rules.Models.Lookup(req.Model)
	if !modelOK {
		add("/model", problem.FieldUnknownValue, "unknown model %q; supported: %s", req.Model, strings.Join(rules.Models.Names(), ", "))
	} else {
		spec.Model, spec.ModelAPI = model.Name, model.API
		if spec.RunMode == ledger.Live && rules.LiveBackend != "" && !model.ServedBy(rules.LiveBackend) {
			add("/model", problem.FieldUnknownValue, "%s runs live on the %s backend only; this deployment uses %s", model.Name, strings.Join(model.Backends, ", "), rules.LiveBackend)
		}
	}
	// The batch's size and format are every row's unless the row names its own.
	batchSize, batchFormat := req.ImageSize, req.OutputFormat
	if modelOK {
		batchSize = setting(batchSize, "/imageSize", model.DefaultSize(), model.SupportsSize, "draws the sizes", model.Name, model.Sizes(), add)
		batchFormat = setting(batchFormat, "/outputFormat", models.PNG, model.SupportsFormat, "can be asked for", model.Name, model.Formats(), add)
		spec.PriceUSD = model.Price(batchSize)
	}

	global := checkRefs(req.Refs, "/refs", rules, add)
	if modelOK && model.MaxRefs == 0 && len(req.Refs) > 0 {
		add("/refs", problem.FieldTooMany, "%s takes no reference images", model.Name)
	}

	switch {
	case len(req.Rows) == 0:
		add("/rows", problem.FieldRequired, "rows must hold 1 to %d rows", MaxRows)
	case len(req.Rows) > MaxRows:
		add("/rows", problem.FieldTooMany, "at most %d rows per batch, got %d", MaxRows, len(req.Rows))
	}

	seenIDs := map[string]int{}
	for i, row := range req.Rows {
		if i >= MaxRows {
			break
		}
		p := fmt.Sprintf("/rows/%d", i)
		rs := RowSpec{Index: i, ID: row.ID, Prompt: strings.TrimSpace(row.Prompt), Variants: 1, AspectRatio: row.AspectRatio}
		switch n := utf8.RuneCountInString(rs.Prompt); {
		case n == 0:
			add(p+"/prompt", problem.FieldRequired, "prompt must not be empty")
		case n > MaxPromptRunes:
			add(p+"/prompt", problem.FieldTooLong, "prompt is %d characters; at most %d", n, MaxPromptRunes)
		}
		if !utf8.ValidString(row.Prompt) {
			add(p+"/prompt", problem.FieldInvalidValue, "prompt must be valid UTF-8")
		}
		if row.Variants != nil {
			rs.Variants = *row.Variants
			if rs.Variants < 1 || rs.Variants > MaxVariants {
				add(p+"/variants", problem.FieldOutOfRange, "variants must be 1 to %d, got %d", MaxVariants, rs.Variants)
			}
		}
		if row.ID != "" {
			if len(row.ID) > MaxClientID {
				add(p+"/id", problem.FieldTooLong, "id must be at most %d bytes", MaxClientID)
			} else if !printable(row.ID) {
				add(p+"/id", problem.FieldInvalidValue, "id must be printable text without control characters")
			} else if first, dup := seenIDs[row.ID]; dup {
				add(p+"/id", problem.FieldDuplicate, "id %q is already used by row %d", row.ID, first)
			} else {
				seenIDs[row.ID] = i
			}
		}
		if modelOK {
			if rs.AspectRatio == "" {
				rs.AspectRatio = model.DefaultRatio()
			} else if !model.SupportsRatio(rs.AspectRatio) {
				add(p+"/aspectRatio", problem.FieldUnknownValue, "%s draws %s; not %q", model.Name, strings.Join(model.AspectRatios, ", "), rs.AspectRatio)
			}
		}
		if modelOK {
			rs.ImageSize = batchSize
			if row.ImageSize != "" {
				rs.ImageSize = setting(row.ImageSize, p+"/imageSize", batchSize, model.SupportsSize, "draws the sizes", model.Name, model.Sizes(), add)
			}
			rs.OutputFormat = batchFormat
			if row.OutputFormat != "" {
				rs.OutputFormat = setting(row.OutputFormat, p+"/outputFormat", batchFormat, model.SupportsFormat, "can be asked for", model.Name, model.Formats(), add)
			}
			rs.PriceUSD = model.Price(rs.ImageSize)
		}
		if row.Seed != nil {
			switch s := *row.Seed; {
			case s < 0 || s > models.MaxSeed:
				add(p+"/seed", problem.FieldOutOfRange, "seed must be 0 to %d, got %d", models.MaxSeed, s)
			case modelOK && !model.Seed:
				add(p+"/seed", problem.FieldInvalidValue, "%s takes no seed", model.Name)
			default:
				seed := s
				rs.Seed = &seed
			}
		}
		own := checkRefs(row.Refs, p+"/refs", rules, add)
		if modelOK && model.MaxRefs == 0 && len(row.Refs) > 0 {
			add(p+"/refs", problem.FieldTooMany, "%s takes no reference images", model.Name)
		}
		rs.RefURLs = MergeRefURLs(own, global)
		spec.Rows = append(spec.Rows, rs)
	}

	if req.WebhookURL != "" {
		if rules.CheckWebhook == nil {
			add("/webhookUrl", problem.FieldUnknownValue, "completion webhooks are not available on this deployment")
		} else if err := rules.CheckWebhook(req.WebhookURL); err != nil {
			add("/webhookUrl", problem.FieldInvalidValue, "%s", err.Error())
		} else {
			spec.WebhookURL = req.WebhookURL
		}
	}
	if req.Sheet != nil {
		if rules.CheckSheet == nil {
			add("/sheet", problem.FieldUnknownValue, "Google Sheets write-back is not available on this deployment")
		} else if err := rules.CheckSheet(req.Sheet.SpreadsheetID, req.Sheet.Range); err != nil {
			add("/sheet", problem.FieldInvalidValue, "%s", err.Error())
		} else {
			s := *req.Sheet
			spec.Sheet = &s
		}
	}

	if len(errs) > 0 {
		code := problem.ValidationFailed
		if allRefErrors(errs) {
			code = problem.RefNotAllowed
		}
		detail := fmt.Sprintf("%d field(s) are invalid", len(errs))
		if len(errs) == 1 {
			detail = errs[0].Detail
		}
		return Spec{}, &problem.Error{Code: code, Detail: detail, Fields: errs}
	}
	return spec, nil
}

// setting checks a size or format the request names against what the model
// offers: "" is def, and a value the model does not offer is a field error at
// field (and def stands in, so the rows are still checked).
func setting(v, field, def string, ok func(string) bool, offers, model string, offered []string, add func(field, code, format string, args ...any)) string {
	switch {
	case v == "":
		return def
	case ok(v):
		return v
	}
	add(field, problem.FieldUnknownValue, "%s %s %s; not %q", model, offers, strings.Join(offered, ", "), v)
	return def
}

// CheckConfirm enforces the typed confirmation of live runs. It comes after
// Validate: a live run is refused unless confirm is exactly "CONFIRM".
func CheckConfirm(req Request) error {
	if ledger.RunMode(req.RunMode) == ledger.Live && req.Confirm != ConfirmWord {
		return problem.New(problem.ConfirmationRequired, `live runs spend money: set "confirm" to the exact word %q`, ConfirmWord)
	}
	return nil
}

// RefLocator returns where each reference URL was written in req, as JSON
// pointers, so a failing reference is reported at every place it appears.
func RefLocator(req Request) func(url string) []string {
	at := map[string][]string{}
	for i, u := range req.Refs {
		at[u] = append(at[u], fmt.Sprintf("/refs/%d", i))
	}
	for r, row := range req.Rows {
		for i, u := range row.Refs {
			at[u] = append(at[u], fmt.Sprintf("/rows/%d/refs/%d", r, i))
		}
	}
	return func(url string) []string { return at[url] }
}

// MergeRefURLs orders a row's references: its own first, then the global ones,
// dropping textual repeats (content repeats are found after fetching).
func MergeRefURLs(own, global []string) []string {
	out := make([]string, 0, len(own)+len(global))
	for _, u := range slices.Concat(own, global) {
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

func checkRefs(refs []string, path string, rules Rules, add func(field, code, format string, args ...any)) []string {
	if len(refs) > MaxRefsPerList {
		add(path, problem.FieldTooMany, "at most %d references per list, got %d", MaxRefsPerList, len(refs))
		refs = refs[:MaxRefsPerList]
	}
	ok := make([]string, 0, len(refs))
	for i, ref := range refs {
		if reason := RefAllowed(ref, rules); reason != "" {
			add(fmt.Sprintf("%s/%d", path, i), problem.FieldRefNotAllowed, "%s", reason)
			continue
		}
		ok = append(ok, ref)
	}
	return ok
}

// RefAllowed returns "" when ref is an acceptable reference URL, or why not:
// https:// anywhere (the fetcher still refuses private addresses), gs:// only in
// the allowed buckets, http:// only when explicitly allowed.
func RefAllowed(ref string, rules Rules) string {
	if len(ref) > MaxRefURL {
		return fmt.Sprintf("reference URL is longer than %d characters", MaxRefURL)
	}
	u, err := url.Parse(ref)
	if err != nil || u.Host == "" {
		return "reference must be an absolute https:// or gs:// URL"
	}
	if u.User != nil {
		return "reference URLs must not carry credentials"
	}
	switch u.Scheme {
	case "https":
		return ""
	case "http":
		if rules.AllowHTTPRefs {
			return ""
		}
		return "reference URLs must use https://"
	case "gs":
		if strings.Trim(u.Path, "/") == "" {
			return "gs:// references must name an object"
		}
		if rules.UploadsBucket != "" && u.Host == rules.UploadsBucket {
			if !strings.HasPrefix(strings.TrimPrefix(u.Path, "/"), layout.Uploads) {
				return fmt.Sprintf("in bucket %q only uploads may be named: gs://%s/%s… as POST /uploads answers them", u.Host, u.Host, layout.Uploads)
			}
			return ""
		}
		if !slices.Contains(rules.RefBuckets, u.Host) {
			return fmt.Sprintf("bucket %q is not allowed for references", u.Host)
		}
		return ""
	default:
		return fmt.Sprintf("scheme %q is not allowed; use https:// or gs://", u.Scheme)
	}
}

func allRefErrors(errs []problem.FieldError) bool {
	for _, e := range errs {
		if e.Code != problem.FieldRefNotAllowed {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}
