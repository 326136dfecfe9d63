package devstack

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SignedURLError is a request a V4 signed URL does not admit, as Cloud
// Storage answers it.
type SignedURLError struct {
	Status int
	Code   string // Cloud Storage's XML error code
	Reason string
}

func (e *SignedURLError) Error() string {
	return fmt.Sprintf("devstack: signed URL refused (%d %s): %s", e.Status, e.Code, e.Reason)
}

// v4Time is the layout of X-Goog-Date.
const v4Time = "20060102T150405Z"

// VerifySignedURL checks a request made with a V4 signed URL
// (GOOG4-RSA-SHA256, path style) the way Cloud Storage does, against the
// public half of the key that signed it: the signature over the method, path,
// query and every signed header with the request's own values; and the
// expiry, at now. Then it checks what Cloud Storage enforces on the request
// itself: a body within x-goog-content-length-range when that header is
// sent. It returns nil or a *SignedURLError.
func VerifySignedURL(r *http.Request, key *rsa.PublicKey, now time.Time) error {
	q := r.URL.Query()
	refuse := func(status int, code, format string, args ...any) error {
		return &SignedURLError{Status: status, Code: code, Reason: fmt.Sprintf(format, args...)}
	}
	if alg := q.Get("X-Goog-Algorithm"); alg != "GOOG4-RSA-SHA256" {
		return refuse(http.StatusBadRequest, "InvalidArgument", "unsupported algorithm %q", alg)
	}
	date, err := time.Parse(v4Time, q.Get("X-Goog-Date"))
	if err != nil {
		return refuse(http.StatusBadRequest, "InvalidArgument", "X-Goog-Date %q is not a date", q.Get("X-Goog-Date"))
	}
	secs, err := strconv.Atoi(q.Get("X-Goog-Expires"))
	if err != nil || secs <= 0 || secs > 7*24*3600 {
		return refuse(http.StatusBadRequest, "InvalidArgument", "X-Goog-Expires %q is out of range", q.Get("X-Goog-Expires"))
	}
	if now.After(date.Add(time.Duration(secs) * time.Second)) {
		return refuse(http.StatusBadRequest, "ExpiredToken", "the URL expired at %s", date.Add(time.Duration(secs)*time.Second).Format(time.RFC3339))
	}
	_, scope, ok := strings.Cut(q.Get("X-Goog-Credential"), "/")
	if !ok {
		return refuse(http.StatusBadRequest, "InvalidArgument", "X-Goog-Credential has no scope")
	}
	sig, err := hex.DecodeString(q.Get("X-Goog-Signature"))
	if err != nil {
		return refuse(http.StatusBadRequest, "InvalidArgument", "X-Goog-Signature is not hex")
	}
	sum := sha256.Sum256([]byte(canonicalRequest(r, q)))
	toSign := "GOOG4-RSA-SHA256\n" + q.Get("X-Goog-Date") + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
	digest := sha256.Sum256([]byte(toSign))
	if rsa.VerifyPKCS1v15(key, crypto.SHA256, digest[:], sig) != nil {
		return refuse(http.StatusForbidden, "SignatureDoesNotMatch", "the request's method, path, query or signed headers are not what was signed")
	}
	if rng := r.Header.Get("X-Goog-Content-Length-Range"); rng != "" {
		lo, hi, ok := lengthRange(rng)
		if !ok {
			return refuse(http.StatusBadRequest, "InvalidArgument", "x-goog-content-length-range %q is not min,max", rng)
		}
		if r.ContentLength >= 0 && (r.ContentLength < lo || r.ContentLength > hi) {
			return refuse(http.StatusBadRequest, "EntityTooLarge", "the body holds %d bytes, outside %d to %d", r.ContentLength, lo, hi)
		}
	}
	return nil
}

// canonicalRequest is the V4 canonical request of r, as the signer built it
// (cloud.google.com/go/storage signedURLV4): the values of the signed
// headers are the ones r carries, so any change to them breaks the signature.
func canonicalRequest(r *http.Request, q url.Values) string {
	query := url.Values{}
	for k, v := range q {
		if k != "X-Goog-Signature" {
			query[k] = v
		}
	}
	names := strings.Split(q.Get("X-Goog-SignedHeaders"), ";")
	headers := make([]string, 0, len(names))
	payload := "UNSIGNED-PAYLOAD"
	for _, name := range names {
		value := strings.Join(r.Header.Values(name), ",")
		if name == "host" {
			value = r.Host
			if h, _, err := net.SplitHostPort(r.Host); err == nil {
				value = h // signed without the port
			}
		}
		if name == "x-goog-content-sha256" && value != "" {
			payload = value
		}
		headers = append(headers, strings.Join(strings.Fields(name+":"+value), " "))
	}
	slices.Sort(headers)
	var b strings.Builder
	b.WriteString(r.Method + "\n")
	b.WriteString("/" + pathEncodeV4(strings.TrimPrefix(r.URL.Path, "/")) + "\n")
	b.WriteString(strings.ReplaceAll(query.Encode(), "+", "%20") + "\n")
	b.WriteString(strings.Join(headers, "\n") + "\n\n")
	b.WriteString(strings.Join(names, ";") + "\n")
	b.WriteString(payload)
	return b.String()
}

// pathEncodeV4 escapes each path segment as the V4 canonical form wants.
func pathEncodeV4(path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
	}
	return strings.Join(segs, "/")
}

// lengthRange parses an x-goog-content-length-range value, "min,max".
func lengthRange(v string) (lo, hi int64, ok bool) {
	a, b, found := strings.Cut(v, ",")
	if !found {
		return 0, 0, false
	}
	lo, err1 := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	hi, err2 := strconv.ParseInt(strings.TrimSpace(b), 10, 64)
	return lo, hi, err1 == nil && err2 == nil && lo >= 0 && lo <= hi
}

// checkSignedURLs refuses, before the emulator sees them, the requests a V4
// signed URL would not admit on Cloud Storage (fake-gcs-server serves them
// without checking anything); requests without a signature pass untouched.
// A body sent without a declared length is cut at the range's maximum.
func checkSignedURLs(key *rsa.PublicKey, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions || !r.URL.Query().Has("X-Goog-Signature") {
			next.ServeHTTP(w, r)
			return
		}
		if err := VerifySignedURL(r, key, time.Now()); err != nil {
			var se *SignedURLError
			errors.As(err, &se)
			writeXMLError(w, se.Status, se.Code, se.Reason)
			return
		}
		if _, hi, ok := lengthRange(r.Header.Get("X-Goog-Content-Length-Range")); ok && r.ContentLength < 0 {
			r.Body = &rangeBody{r: r.Body, left: hi}
		}
		next.ServeHTTP(w, r)
	})
}

// rangeBody fails a body of undeclared length once it passes its maximum.
type rangeBody struct {
	r    io.ReadCloser
	left int64
}

func (b *rangeBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if b.left -= int64(n); b.left < 0 {
		return n, errors.New("devstack: body exceeds x-goog-content-length-range")
	}
	return n, err
}

func (b *rangeBody) Close() error { return b.r.Close() }

// writeXMLError answers as Cloud Storage's XML API does.
func writeXMLError(w http.ResponseWriter, status int, code, details string) {
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<?xml version='1.0' encoding='UTF-8'?><Error><Code>%s</Code><Details>%s</Details></Error>", code, xmlEscape(details))
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// PublicKeyOf returns the public half of a PEM private key (PKCS#8 or
// PKCS#1 RSA), the form the local signer keeps its key in.
func PublicKeyOf(pemKey []byte) (*rsa.PublicKey, error) {
	block, _ := pem.Decode(pemKey)
	if block == nil {
		return nil, errors.New("devstack: signing key is not PEM")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if rk, ok := k.(*rsa.PrivateKey); ok {
			return &rk.PublicKey, nil
		}
		return nil, errors.New("devstack: signing key is not RSA")
	}
	rk, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("devstack: signing key: %w", err)
	}
	return &rk.PublicKey, nil
}
