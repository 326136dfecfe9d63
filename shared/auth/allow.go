package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// Allow is who may call in google mode (AUTH_ALLOW): exact e-mail addresses
// and *@domain entries, compared without regard to case. A Google-signed ID
// token only proves that Google signed it — any service account of any
// project can mint one for a public OAuth client id — so admission also needs
// a verified e-mail on this list. The zero Allow admits nobody.
type Allow struct {
	emails  map[string]bool
	domains map[string]bool
}

// ParseAllow reads AUTH_ALLOW's entries. A *@domain entry for a service
// account domain is refused: it could never admit anyone, since service
// accounts are admitted only by their exact address.
func ParseAllow(entries []string) (Allow, error) {
	a := Allow{emails: map[string]bool{}, domains: map[string]bool{}}
	for i, raw := range entries {
		e := strings.ToLower(strings.TrimSpace(raw))
		if e == "" {
			continue
		}
		local, domain, ok := splitEmail(e)
		if !ok {
			return Allow{}, fmt.Errorf("auth: AUTH_ALLOW entry #%d: want name@domain or *@domain, got %q", i+1, raw)
		}
		if local != "*" {
			a.emails[e] = true
			continue
		}
		if serviceAccountDomain(domain) {
			return Allow{}, fmt.Errorf("auth: AUTH_ALLOW entry #%d: %q would admit nobody: list service accounts by their address", i+1, raw)
		}
		a.domains[domain] = true
	}
	return a, nil
}

// Empty reports whether the list admits nobody.
func (a Allow) Empty() bool { return len(a.emails) == 0 && len(a.domains) == 0 }

// Admits reports whether a token's e-mail claims let its bearer in: the
// e-mail must be verified and listed, by address or by its domain (exactly,
// not a subdomain). A service account is admitted only by its address.
func (a Allow) Admits(email string, verified bool) bool {
	if !verified {
		return false
	}
	email = strings.ToLower(strings.TrimSpace(email))
	_, domain, ok := splitEmail(email)
	if !ok {
		return false
	}
	if a.emails[email] {
		return true
	}
	return !serviceAccountDomain(domain) && a.domains[domain]
}

// splitEmail splits an address at its only @; both halves must be non-empty
// and free of spaces.
func splitEmail(e string) (local, domain string, ok bool) {
	local, domain, ok = strings.Cut(e, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") || strings.ContainsAny(e, " \t,") {
		return "", "", false
	}
	return local, domain, true
}

// serviceAccountDomain reports whether a domain is Google's for service
// accounts (name@project.iam.gserviceaccount.com, the default compute and
// App Engine accounts).
func serviceAccountDomain(domain string) bool {
	return domain == "gserviceaccount.com" || strings.HasSuffix(domain, ".gserviceaccount.com")
}

// Issuers of Google-signed ID tokens (both spellings name the same issuer)
// and the prefix of Identity Platform's, followed by the project id.
const (
	issuerGoogle           = "https://accounts.google.com"
	issuerGoogleBare       = "accounts.google.com"
	issuerIdentityPlatform = "https://securetoken.google.com/"
)

var (
	safeSubject = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)
	projectID   = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
)

// UserID names the user of an ID token by its issuer and subject, so equal
// subjects of two issuers never share batches, budgets or rate limits. The
// form is <issuer>.<subject>, path-safe and stable:
//   - issuer: "g" for Google (accounts.google.com), "ip-<project>" for
//     Identity Platform (securetoken.google.com/<project>), and "i-" with the
//     first 12 hex digits of the issuer's SHA-256 for any other;
//   - subject: as it is when it is 1–128 letters, digits, _ or - (Google's
//     are digits, Identity Platform's letters and digits), else "h." and the
//     first 32 hex digits of its SHA-256.
//
// Neither the issuer part nor a kept subject holds a dot, so the first dot
// ends the issuer and two different tokens' users never meet.
func UserID(issuer, subject string) string {
	var iss string
	switch {
	case issuer == issuerGoogle || issuer == issuerGoogleBare:
		iss = "g"
	case strings.HasPrefix(issuer, issuerIdentityPlatform) && projectID.MatchString(issuer[len(issuerIdentityPlatform):]):
		iss = "ip-" + issuer[len(issuerIdentityPlatform):]
	default:
		iss = "i-" + shortHash(issuer, 12)
	}
	if safeSubject.MatchString(subject) {
		return iss + "." + subject
	}
	return iss + ".h." + shortHash(subject, 32)
}

func shortHash(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:n]
}
