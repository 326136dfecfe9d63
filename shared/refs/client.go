package refs

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"
)

// SafeClient returns an HTTP client for other packages that send requests to
// user-supplied URLs (webhooks): the fetcher's own address policy, enforced at
// dial time on every connection and every redirect hop, the same transport
// (no proxy, TLS 1.2+) and the same redirect check. On every hop the scheme
// must be https, or http where allowLoopback admits local demos and tests.
//
// timeout bounds a whole request, body included (zero or less means
// DefaultTimeout); maxRedirects is how many redirects one request follows
// (zero or less: none, and the redirect is an error). The client keeps no
// cookie jar. Build it once and share it: it holds a connection pool.
//
// Errors from a refused destination satisfy IsRefused; their text names the
// resolved address and is for logs only.
func SafeClient(allowLoopback bool, timeout time.Duration, maxRedirects int) *http.Client {
	o := Options{AllowLoopback: allowLoopback, Timeout: timeout, MaxRedirects: maxRedirects}
	if maxRedirects <= 0 {
		o.MaxRedirects = -1 // Options: negative means none
	}
	o = o.withDefaults()
	return &http.Client{
		Transport:     &schemeGuard{next: newTransport(o), allowLoopback: o.AllowLoopback},
		CheckRedirect: checkRedirect(o),
		Timeout:       o.Timeout,
	}
}

// IsRefused reports whether the address policy (or the scheme rule of a
// SafeClient) stopped a request somewhere in err's chain, before any
// connection to the refused destination.
func IsRefused(err error) bool {
	var re *refusedError
	return errors.As(err, &re)
}

// CheckAddr says whether the policy lets a connection reach ip: nil, or an
// error naming ip and why not. It is for checks of IP literals at submit time;
// the dial-time check stays the one that counts.
func CheckAddr(ip netip.Addr, allowLoopback bool) error {
	if why := refusal(ip, allowLoopback); why != "" {
		return fmt.Errorf("refs: %s is a %s address", ip, why)
	}
	return nil
}

// schemeGuard refuses, before anything is dialled, a request whose scheme the
// policy does not allow: the fetcher checks the first hop's scheme itself, and
// checkRedirect the later ones; a SafeClient's users get both here.
type schemeGuard struct {
	next          *http.Transport
	allowLoopback bool
}

func (g *schemeGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	if !schemeAllowed(r.URL.Scheme, g.allowLoopback) {
		if r.Body != nil {
			_ = r.Body.Close() // a RoundTripper must close the body, even on error
		}
		return nil, &refusedError{addr: r.URL.Scheme + "://" + r.URL.Host, why: "non-https (" + r.URL.Scheme + ")"}
	}
	return g.next.RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the pool.
func (g *schemeGuard) CloseIdleConnections() { g.next.CloseIdleConnections() }
