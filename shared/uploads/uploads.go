// Package uploads lets users put reference images straight into the bucket
// instead of hosting them: POST /uploads issues an object
// uploads/{user key}/{upload id} and a short-lived V4 URL that PUTs one image
// there, bounded in type and size; a batch may then name it as
// gs://{bucket}/uploads/{user key}/{upload id}, and only its owner may.
//
// Issuing writes an empty placeholder at the upload's name, so one listing
// of the user's prefix counts every upload of the day, PUT or not, and the
// URL replaces exactly that placeholder (x-goog-if-generation-match), once.
// Upload ids start with the time they were issued, so the names of the last
// day are one bounded listing, and are otherwise random (128 bits): nobody
// can guess another's. An upload is usable for Lifetime; the lifecycle rule
// on uploads/ removes it after that.
package uploads

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/problem"
)

const (
	// URLTTL is how long an upload URL accepts its PUT.
	URLTTL = 15 * time.Minute
	// Lifetime is how long an upload may be named in batches from when it
	// was issued, and the window the daily quota counts: the lifecycle rule
	// on uploads/ deletes objects a day after their last write.
	Lifetime = 24 * time.Hour
	// DefaultPerDay is the default quota (UPLOADS_PER_USER_PER_DAY).
	DefaultPerDay = 200
	// MaxBody bounds the body of POST /uploads.
	MaxBody = 4 << 10
)

// ContentTypes are the types an upload may declare: the image types both the
// reference checks and the image models take.
var ContentTypes = []string{"image/png", "image/jpeg", "image/webp"}

// The headers an upload URL binds; the PUT sends them with the values the
// answer gives.
const (
	HeaderContentType = "Content-Type"
	HeaderLengthRange = "x-goog-content-length-range"
	HeaderGeneration  = "x-goog-if-generation-match"
	// HeaderSHA256 records the declared SHA-256 as the object's metadata
	// ("sha256"), which the submit checks the content against.
	HeaderSHA256 = "x-goog-meta-sha256"
	metaSHA256   = "sha256"
)

// Headers are the request headers an upload PUT may carry besides the
// ordinary ones: what browsers must be allowed to send across origins.
func Headers() []string { return []string{HeaderLengthRange, HeaderGeneration, HeaderSHA256} }

// UserPrefix is where user's uploads live. The user id is hashed: ids carry
// characters object names should not, and no user's prefix may begin
// another's.
func UserPrefix(user string) string {
	sum := sha256.Sum256([]byte(user))
	return layout.Uploads + hex.EncodeToString(sum[:16]) + "/"
}

// idTime is the time part of an upload id: fixed width, so ids sort by it.
const idTime = "20060102T150405.000Z"

// newID is an upload id issued at now: the time, then 128 random bits.
func newID(now time.Time) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format(idTime) + "-" + hex.EncodeToString(b[:])
}

// Name is an upload's object name, read back.
type Name struct {
	Object string
	// Prefix is the owner's UserPrefix.
	Prefix string
	Issued time.Time
}

// Parse reads an upload's object name: uploads/{32 hex}/{id}.
func Parse(object string) (Name, bool) {
	rest, ok := strings.CutPrefix(object, layout.Uploads)
	if !ok {
		return Name{}, false
	}
	key, id, ok := strings.Cut(rest, "/")
	if !ok || len(key) != 32 || !isHex(key) {
		return Name{}, false
	}
	at, random, ok := strings.Cut(id, "-")
	if !ok || len(random) != 32 || !isHex(random) || len(at) != len(idTime) {
		return Name{}, false
	}
	issued, err := time.Parse(idTime, at)
	if err != nil {
		return Name{}, false
	}
	return Name{Object: object, Prefix: layout.Uploads + key + "/", Issued: issued}, true
}

func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Decode parses and checks the body of POST /uploads against the size cap:
// MALFORMED_JSON for a body that is not one JSON object, VALIDATION_FAILED
// listing every bad field (unknown fields included), PAYLOAD_TOO_LARGE for a
// size over maxBytes.
func Decode(body []byte, maxBytes int64) (api.UploadRequest, error) {
	var req api.UploadRequest
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&top); err != nil || top == nil {
		return req, problem.Wrap(problem.MalformedJSON, err, "the body must be one JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return req, problem.New(problem.MalformedJSON, "the body holds more than one JSON value")
	}
	var errs []problem.FieldError
	add := func(field, code, format string, args ...any) {
		errs = append(errs, problem.FieldError{Field: field, Code: code, Detail: fmt.Sprintf(format, args...)})
	}
	keys := make([]string, 0, len(top))
	for k := range top {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		raw := top[k]
		var err error
		switch k {
		case "contentType":
			err = json.Unmarshal(raw, &req.ContentType)
		case "size":
			err = json.Unmarshal(raw, &req.Size)
		case "sha256":
			err = json.Unmarshal(raw, &req.SHA256)
		default:
			add("/"+strings.NewReplacer("~", "~0", "/", "~1").Replace(k), problem.FieldUnknown, "unknown field %q", k)
			continue
		}
		if err != nil {
			want := "a string"
			if k == "size" {
				want = "a whole number of bytes"
			}
			add("/"+k, problem.FieldInvalidType, "%s must be %s", k, want)
		}
	}
	switch {
	case mistyped(errs, "/contentType"):
	case req.ContentType == "":
		add("/contentType", problem.FieldRequired, "contentType is required: one of %s", strings.Join(ContentTypes, ", "))
	case !slices.Contains(ContentTypes, req.ContentType):
		add("/contentType", problem.FieldUnknownValue, "contentType must be one of %s", strings.Join(ContentTypes, ", "))
	}
	switch {
	case mistyped(errs, "/size"):
	case top["size"] == nil:
		add("/size", problem.FieldRequired, "size is required: the image's length in bytes")
	case req.Size <= 0:
		add("/size", problem.FieldOutOfRange, "size must be at least 1 byte, got %d", req.Size)
	}
	if req.SHA256 != "" && (len(req.SHA256) != 64 || !isHex(req.SHA256)) {
		add("/sha256", problem.FieldInvalidValue, "sha256 must be 64 lower-case hex digits")
	}
	if len(errs) > 0 {
		return req, &problem.Error{Code: problem.ValidationFailed, Detail: fmt.Sprintf("%d field(s) are invalid", len(errs)), Fields: errs}
	}
	if req.Size > maxBytes {
		return req, &problem.Error{
			Code:   problem.PayloadTooLarge,
			Detail: fmt.Sprintf("the image is %d bytes; references may be at most %d bytes (%d MiB)", req.Size, maxBytes, maxBytes>>20),
			Fields: []problem.FieldError{{Field: "/size", Code: problem.FieldOutOfRange, Detail: fmt.Sprintf("size must be at most %d bytes", maxBytes)}},
			Extra:  map[string]any{"maxBytes": maxBytes},
		}
	}
	return req, nil
}

// mistyped reports whether field was already refused for its JSON type.
func mistyped(errs []problem.FieldError, field string) bool {
	return slices.ContainsFunc(errs, func(e problem.FieldError) bool { return e.Field == field })
}
