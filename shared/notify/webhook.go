package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/googleapis/gax-go/v2"

	"github.com/assetgen/assetgen/shared/refs"
)

// Headers of a webhook delivery.
const (
	// HeaderSignature is "t=<unix seconds>,kid=<key id>,ed25519=<base64
	// signature>", where the Ed25519 signature is over "<unix seconds>."
	// followed by the raw body, made with the published key kid names.
	HeaderSignature = "X-Assetgen-Signature"
	// HeaderDelivery is the delivery id, the same on every attempt: receivers
	// dedupe on it.
	HeaderDelivery = "X-Assetgen-Delivery"
)

const (
	userAgent = "assetgen-webhooks/1"
	// DefaultTolerance is how far a signature's timestamp may be from the
	// receiver's clock when Verify is given zero or less.
	DefaultTolerance = 5 * time.Minute
	// maxURL bounds a webhook URL's length.
	maxURL = 2048
)

// Webhooks delivers signed webhook POSTs. Build one per instance and share it.
type Webhooks struct {
	keys       *SigningKeys
	client     *http.Client
	maxElapsed time.Duration
	backoff    gax.Backoff      // copied per delivery: a Backoff keeps state
	now        func() time.Time // the signing clock
}

// NewWebhooks returns a deliverer that signs with the first of keys and sends
// through client, which should be refs.SafeClient(…) so that the dial-time SSRF policy
// applies (nil means refs.SafeClient(false, refs.DefaultTimeout, 0)). Redirects
// are never followed whatever the client says: a 3xx is a permanent failure,
// so a signed payload never travels to a host the user did not register.
// maxElapsed bounds each delivery's attempts and pauses (zero or less means
// DefaultMaxElapsed).
func NewWebhooks(keys *SigningKeys, client *http.Client, maxElapsed time.Duration) *Webhooks {
	if client == nil {
		client = refs.SafeClient(false, refs.DefaultTimeout, 0)
	}
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if maxElapsed <= 0 {
		maxElapsed = DefaultMaxElapsed
	}
	return &Webhooks{
		keys:       keys,
		client:     &c,
		maxElapsed: maxElapsed,
		backoff:    defaultBackoff(),
		now:        time.Now,
	}
}

// Keys are the published halves of the keys this deliverer signs with (an
// empty set when it has none).
func (w *Webhooks) Keys() KeySet {
	if w.keys == nil {
		return KeySet{Keys: []PublicKey{}}
	}
	return w.keys.Public()
}

// Deliver POSTs body (JSON) to rawURL, signed, with deliveryID in
// HeaderDelivery on every attempt. A 2xx answer delivers. Network failures,
// 408, 429 and 5xx are retried with exponential backoff and jitter — or after
// the answer's Retry-After, capped at MaxRetryAfter — until maxElapsed has
// passed; then the outcome is failed and Retryable. Any other answer fails at
// once and is not retryable, and so is a URL the address policy refuses.
func (w *Webhooks) Deliver(ctx context.Context, rawURL, deliveryID string, body []byte) Outcome {
	out := Outcome{Kind: KindWebhook, Target: rawURL}
	finish := func(status string, retryable bool, reason string) Outcome {
		out.Status, out.Retryable, out.Error, out.At = status, retryable, reason, time.Now().UTC()
		return out
	}
	switch u, err := url.Parse(rawURL); {
	case w.keys == nil:
		return finish(StatusFailed, false, "no webhook signing key is configured")
	case !validDeliveryID(deliveryID):
		return finish(StatusFailed, false, "the delivery id must be 1 to 200 printable ASCII characters")
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil:
		return finish(StatusFailed, false, "the webhook URL is not an absolute https URL without credentials")
	}

	start := time.Now()
	r := newRetrier(ctx, w.maxElapsed, w.backoff)
	var reason string // why the last attempt failed
	for {
		out.Attempts++
		resp, err := w.attempt(r, rawURL, deliveryID, body)
		var hint time.Duration
		var hinted bool
		switch {
		case err != nil:
			refused := refs.IsRefused(err)
			if refused || ctx.Err() != nil || !r.expired() || reason == "" {
				reason = networkReason(ctx, err, refused)
			} // else the bound cut the attempt short: the previous reason stands
			if refused {
				return finish(StatusFailed, false, reason)
			}
			if ctx.Err() != nil {
				return finish(StatusFailed, true, reason)
			}
		case resp.code >= 200 && resp.code <= 299:
			out.Code = resp.code
			return finish(StatusDelivered, false, "")
		default:
			out.Code = resp.code
			reason = fmt.Sprintf("the receiver answered %d %s", resp.code, http.StatusText(resp.code))
			if !retryStatus(resp.code) {
				if resp.code >= 300 && resp.code <= 399 {
					reason += " (redirects are not followed)"
				}
				return finish(StatusFailed, false, reason)
			}
			hint, hinted = resp.retryAfter, resp.hinted
		}
		if !r.wait(hint, hinted) {
			return finish(StatusFailed, true, fmt.Sprintf("%s; gave up after %d attempts in %s",
				reason, out.Attempts, time.Since(start).Round(time.Millisecond)))
		}
	}
}

// validDeliveryID keeps the id a plain header value the receiver can store.
func validDeliveryID(id string) bool {
	if id == "" || len(id) > 200 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// answer is what one attempt learned from the receiver.
type answer struct {
	code       int
	retryAfter time.Duration
	hinted     bool
}

// attempt sends one signed POST, bounded by the delivery's deadline.
func (w *Webhooks) attempt(r *retrier, rawURL, deliveryID string, body []byte) (answer, error) {
	ctx, cancel := r.attemptContext()
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(HeaderDelivery, deliveryID)
	req.Header.Set(HeaderSignature, w.keys.Sign(w.now(), body)) // fresh timestamp per attempt
	resp, err := w.client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	// Read a little so the connection can be reused; the rest is dropped.
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	a := answer{code: resp.StatusCode}
	a.retryAfter, a.hinted = retryAfter(resp.Header, time.Now())
	return a, nil
}

// CheckWebhookURL checks a webhook URL at submit: an absolute https URL, no
// credentials, no fragment, no IP literal the address policy refuses, and
// plain http only to a loopback host (localhost, 127.0.0.0/8, ::1) when
// allowHTTPLoopback is set (local runs and tests). Where a name leads is
// checked when it is dialled, by refs.SafeClient.
func CheckWebhookURL(raw string, allowHTTPLoopback bool) error {
	if raw == "" {
		return errors.New("the webhook URL is empty")
	}
	if len(raw) > maxURL {
		return fmt.Errorf("the webhook URL is longer than %d characters", maxURL)
	}
	if strings.ContainsFunc(raw, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return errors.New("the webhook URL contains spaces or control characters")
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return errors.New("the webhook URL is not an absolute URL")
	}
	if u.User != nil {
		return errors.New("the webhook URL must not carry credentials")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return errors.New("the webhook URL must not have a fragment")
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" {
		return errors.New("the webhook URL has no host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return errors.New("the webhook URL has an invalid port")
		}
	}
	ip, ipErr := netip.ParseAddr(host)
	isIP := ipErr == nil
	loopback := host == "localhost" || strings.HasSuffix(host, ".localhost") || (isIP && ip.Unmap().IsLoopback())
	switch u.Scheme {
	case "https":
	case "http":
		if !allowHTTPLoopback || !loopback {
			return errors.New("the webhook URL must use https")
		}
	default:
		return errors.New("the webhook URL must use https")
	}
	switch {
	case loopback && !allowHTTPLoopback:
		return errors.New("the webhook URL must not point at this machine")
	case isIP && refs.CheckAddr(ip, allowHTTPLoopback) != nil:
		return errors.New("the webhook URL points at an address that is not publicly reachable")
	}
	return nil
}
