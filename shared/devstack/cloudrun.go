package devstack

import (
	"fmt"
	"html"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/assetgen/assetgen/shared/auth"
)

// CloudRunIAMOptions describe a private Cloud Run service.
type CloudRunIAMOptions struct {
	// Tokens verifies the ID tokens (the local stand-in of Google's keys).
	Tokens *IDTokens
	// Audiences a token may name: the service's URL and custom audiences.
	Audiences []string
	// Invokers are the e-mails granted run.invoker on the service.
	Invokers []string
}

// IAMStats count what the front-end did.
type IAMStats struct {
	Passed          int64 // requests handed to the service
	Unauthenticated int64 // 401: no token, or a token that does not verify
	Forbidden       int64 // 403: a valid token of an account that is not an invoker
}

// CloudRunIAM stands where Cloud Run's front end stands before a private
// service: it verifies the caller's ID token (signature, issuer, audience,
// expiry) and its account's invoker grant, answering 401 or 403 in Cloud Run's
// own HTML (the service never sees those requests), and hands the service the
// request with the token's signature replaced by auth.StrippedSignature. The
// token is read from X-Serverless-Authorization when present, else from
// Authorization; only the header that was checked is rewritten.
type CloudRunIAM struct {
	o    CloudRunIAMOptions
	next http.Handler

	passed, unauthenticated, forbidden atomic.Int64
}

// NewCloudRunIAM puts the check before next.
func NewCloudRunIAM(o CloudRunIAMOptions, next http.Handler) *CloudRunIAM {
	return &CloudRunIAM{o: o, next: next}
}

// Stats returns the counters.
func (c *CloudRunIAM) Stats() IAMStats {
	return IAMStats{Passed: c.passed.Load(), Unauthenticated: c.unauthenticated.Load(), Forbidden: c.forbidden.Load()}
}

func (c *CloudRunIAM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	header := "X-Serverless-Authorization"
	if r.Header.Get(header) == "" {
		header = "Authorization"
	}
	scheme, raw, _ := strings.Cut(r.Header.Get(header), " ")
	raw = strings.TrimSpace(raw)
	if !strings.EqualFold(scheme, "Bearer") || raw == "" {
		c.unauthenticated.Add(1)
		refuse(w, r, http.StatusUnauthorized)
		return
	}
	claims, err := c.o.Tokens.Verify(raw, c.o.Audiences)
	if err != nil {
		c.unauthenticated.Add(1)
		refuse(w, r, http.StatusUnauthorized)
		return
	}
	if !claims.EmailVerified || !slices.Contains(c.o.Invokers, claims.Email) {
		c.forbidden.Add(1)
		refuse(w, r, http.StatusForbidden)
		return
	}
	c.passed.Add(1)
	r = r.Clone(r.Context())
	r.Header.Set(header, "Bearer "+raw[:strings.LastIndex(raw, ".")+1]+auth.StrippedSignature)
	c.next.ServeHTTP(w, r)
}

// refuse answers as Cloud Run's front end does: an HTML page, not the
// service's problem document.
func refuse(w http.ResponseWriter, r *http.Request, status int) {
	title, detail := "Forbidden", fmt.Sprintf("Your client does not have permission to get URL <code>%s</code> from this server.", html.EscapeString(r.URL.Path))
	if status == http.StatusUnauthorized {
		title, detail = "Unauthorized", "Your client does not have permission to the requested URL <code>"+html.EscapeString(r.URL.Path)+"</code>."
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token" error_description="The access token could not be verified"`)
	}
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<html><head>\n<meta http-equiv=\"content-type\" content=\"text/html;charset=utf-8\">\n<title>%d %s</title>\n</head>\n<body text=#000000 bgcolor=#ffffff>\n<h1>Error: %s</h1>\n<h2>%s</h2>\n<h2></h2>\n</body></html>\n",
		status, title, title, detail)
}
