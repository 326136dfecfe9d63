package auth_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/problem"
)

func TestParseAllow(t *testing.T) {
	tests := []struct {
		name    string
		entries []string
		ok      bool
		empty   bool
	}{
		{"addresses and domains", []string{"alice@example.com", " *@Example.org "}, true, false},
		{"a service account by address", []string{"ci@proj.iam.gserviceaccount.com"}, true, false},
		{"nothing", nil, true, true},
		{"blank entries only", []string{" ", ""}, true, true},
		{"no at sign", []string{"example.com"}, false, false},
		{"no domain", []string{"alice@"}, false, false},
		{"no local part", []string{"@example.com"}, false, false},
		{"two at signs", []string{"a@b@example.com"}, false, false},
		{"a bare star", []string{"*"}, false, false},
		{"a space inside", []string{"al ice@example.com"}, false, false},
		{"a service account domain", []string{"*@proj.iam.gserviceaccount.com"}, false, false},
		{"the service account root domain", []string{"*@gserviceaccount.com"}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			a, err := auth.ParseAllow(tt.entries)
			is.Equal(err == nil, tt.ok) // accepted or refused
			if tt.ok {
				is.Equal(a.Empty(), tt.empty) // empty when nothing is listed
			}
		})
	}
}

func TestAllowAdmits(t *testing.T) {
	a, err := auth.ParseAllow([]string{"Alice@Example.com", "*@corp.example", "deployer@proj.iam.gserviceaccount.com"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		email    string
		verified bool
		want     bool
	}{
		{"listed address", "alice@example.com", true, true},
		{"listed address in another case", "ALICE@EXAMPLE.COM", true, true},
		{"listed address, unverified", "alice@example.com", false, false},
		{"other user of a listed address's domain", "bob@example.com", true, false},
		{"listed domain", "carol@corp.example", true, true},
		{"listed domain in another case", "carol@CORP.example", true, true},
		{"listed domain, unverified", "carol@corp.example", false, false},
		{"subdomain of a listed domain", "dave@eu.corp.example", true, false},
		{"suffix trick", "eve@evilcorp.example", true, false},
		{"listed service account", "deployer@proj.iam.gserviceaccount.com", true, true},
		{"other service account", "intruder@other.iam.gserviceaccount.com", true, false},
		{"no e-mail", "", true, false},
		{"not an address", "corp.example", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			is.Equal(a.Admits(tt.email, tt.verified), tt.want)
		})
	}
}

// A *@domain entry never admits a service account, even one whose domain it
// names exactly.
func TestAllowDomainNeverAdmitsServiceAccounts(t *testing.T) {
	is := is.New(t)
	var zero auth.Allow
	is.True(!zero.Admits("alice@example.com", true)) // the zero list admits nobody
	a, err := auth.ParseAllow([]string{"*@example.com"})
	is.NoErr(err)
	is.True(!a.Admits("x@developer.gserviceaccount.com", true)) // not listed by address
}

func TestUserID(t *testing.T) {
	tests := []struct {
		name, issuer, subject, want string
	}{
		{"google", "https://accounts.google.com", "110169484474386276334", "g.110169484474386276334"},
		{"google, bare issuer", "accounts.google.com", "110169484474386276334", "g.110169484474386276334"},
		{"identity platform", "https://securetoken.google.com/assetgen-prod", "Xy7Qk2Lm9Np", "ip-assetgen-prod.Xy7Qk2Lm9Np"},
		{"other issuer", "https://issuer.example", "42", "i-" + auth.ShortHash("https://issuer.example", 12) + ".42"},
		{"identity platform with an odd project", "https://securetoken.google.com/A.B", "42", "i-" + auth.ShortHash("https://securetoken.google.com/A.B", 12) + ".42"},
		{"unsafe subject", "https://accounts.google.com", "a/b.c", "g.h." + auth.ShortHash("a/b.c", 32)},
		{"overlong subject", "https://accounts.google.com", strings.Repeat("a", 129), "g.h." + auth.ShortHash(strings.Repeat("a", 129), 32)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			is.Equal(auth.UserID(tt.issuer, tt.subject), tt.want)
		})
	}
}

// Two issuers' equal subjects are two users.
func TestUserIDSeparatesIssuers(t *testing.T) {
	is := is.New(t)
	ids := map[string]bool{}
	for _, iss := range []string{"https://accounts.google.com", "https://securetoken.google.com/assetgen-prod", "https://securetoken.google.com/assetgen-test", "https://issuer.example"} {
		ids[auth.UserID(iss, "12345")] = true
	}
	is.Equal(len(ids), 4) // one user per issuer
}

// Through Authenticate and Require: a genuine token is admitted only with a
// verified, listed e-mail; anything else is 403 FORBIDDEN whose document
// names no entry of the list.
func TestGoogleAuthenticateAllowList(t *testing.T) {
	tests := []struct {
		name   string
		claims func(*auth.Claims)
		ok     bool
	}{
		{"listed and verified", func(*auth.Claims) {}, true},
		{"listed, upper case", func(c *auth.Claims) { c.Email = "SomeOne@Example.com" }, true},
		{"unverified", func(c *auth.Claims) { c.EmailVerified = false }, false},
		{"no e-mail", func(c *auth.Claims) { c.Email = "" }, false},
		{"another address", func(c *auth.Claims) { c.Email = "other@example.com" }, false},
		{"any service account", func(c *auth.Claims) { c.Email = "minter@attacker.iam.gserviceaccount.com" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			keys := newJWKS(t, publicJWK(keyA(), "A"))
			g := newGoogle(t, newClock(), nil, keys)
			r := httptest.NewRequest(http.MethodGet, "/budget", nil)
			r.Header.Set("Authorization", "Bearer "+mint(t, keyA(), "A", claims(tt.claims)))

			next := &recorder{}
			rec := httptest.NewRecorder()
			auth.Require(g, next).ServeHTTP(rec, r)
			if tt.ok {
				is.Equal(rec.Code, http.StatusOK)
				is.Equal(next.who.UserID, "g."+testSubject) // the issuer's user
				return
			}
			is.Equal(next.Called(), 0) // refused before the handler
			doc := wantProblem(t, rec, problem.Forbidden)
			is.True(!strings.Contains(rec.Body.String(), "example.com")) // no list entry, no address
			is.True(doc.Detail != "")                                    // but a reason
		})
	}
}
