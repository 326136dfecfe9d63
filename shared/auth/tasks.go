package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/problem"
)

// StrippedSignature is what Cloud Run leaves in place of an ID token's
// signature once its IAM check has verified the token: the container receives
// header.payload.SIGNATURE_REMOVED_BY_GOOGLE, so the token can no longer be
// verified there, only read.
const StrippedSignature = "SIGNATURE_REMOVED_BY_GOOGLE"

// googleIssuers are the issuers of Google-signed ID tokens, which Cloud Tasks'
// OIDC tokens are.
var googleIssuers = []string{"https://accounts.google.com", "accounts.google.com"}

// TaskToken is what the ID token of every task delivery must say.
type TaskToken struct {
	// Audience is the token's expected audience (TASKS_OIDC_AUDIENCE).
	Audience string
	// ServiceAccount is the queue's service account, whose verified e-mail the
	// token must carry (TASKS_SERVICE_ACCOUNT).
	ServiceAccount string
	// Leeway tolerates clock skew on exp, iat and nbf.
	Leeway time.Duration
}

// CheckTaskToken reads a task's ID token as Cloud Run hands it to the
// container and checks its claims. Its signature was verified by Cloud Run's
// IAM check, which admits only the invoker (the queue's service account), and
// then removed; what proves the token passed that check is the stripped
// marker in place of the signature. A token that still carries a signature did
// not come through Cloud Run and is refused. Errors are UNAUTHENTICATED for a
// token that is not a valid stripped token for want.Audience, FORBIDDEN for a
// valid one of another account.
func CheckTaskToken(raw string, want TaskToken, now time.Time) (Claims, error) {
	fail := func(why string) (Claims, error) {
		return Claims{}, &problem.Error{Code: problem.Unauthenticated, Detail: "the task's OIDC token is not valid", Err: errors.New("auth: task token: " + why)}
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return fail("not a compact JWT")
	}
	if parts[2] != StrippedSignature {
		return fail("its signature was not removed by Cloud Run's IAM check")
	}
	var head struct {
		Alg string `json:"alg"`
	}
	if err := decodeSegment(parts[0], &head); err != nil {
		return fail("header: " + err.Error())
	}
	if head.Alg != "RS256" {
		return fail("algorithm " + head.Alg + " is not RS256")
	}
	var c Claims
	if err := decodeSegment(parts[1], &c); err != nil {
		return fail("claims: " + err.Error())
	}
	if c.Expiry == nil {
		return fail("no expiry")
	}
	if err := c.ValidateWithLeeway(jwt.Expected{AnyAudience: []string{want.Audience}, Time: now}, want.Leeway); err != nil {
		return fail(err.Error())
	}
	issuerOK := false
	for _, iss := range googleIssuers {
		issuerOK = issuerOK || c.Issuer == iss
	}
	if !issuerOK {
		return fail("issuer " + c.Issuer + " is not Google")
	}
	if c.Email != want.ServiceAccount || !c.EmailVerified {
		return Claims{}, problem.New(problem.Forbidden, "the task's token is not the queue's service account")
	}
	return c, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// TaskAuth admits only Cloud Tasks to the generate function. In the cloud the
// function is private: Cloud Run's IAM check lets through only the queue's
// service account (the invoker) and verifies the token's signature. The
// handler then checks the queue name (X-CloudTasks-QueueName: one of Queues) and, with
// Token.Audience set, the claims of the stripped token (CheckTaskToken).
type TaskAuth struct {
	// Queues are the short ids (the last element of the name) of the queues
	// whose deliveries are admitted: the row queue and the dry-run queue.
	Queues []string
	// Token is what each task's ID token must say; an empty Audience skips
	// the token, which only RequireToken's absence allows.
	Token TaskToken
	// RequireToken is set everywhere but on the emulators: on Cloud Run
	// (K_SERVICE) and wherever Cloud Storage is real. There a queue header
	// alone, which anyone may send, never admits a task: Check fails, so the
	// function does not start.
	RequireToken bool
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Check says why the task check cannot run as configured: the function must
// not start with it.
func (a TaskAuth) Check() error {
	switch {
	case a.Token.Audience == "" && a.RequireToken:
		return errors.New("auth: TASKS_OIDC_AUDIENCE is not set outside the emulators, so task tokens cannot be checked; generate refuses to start without it (set it and TASKS_SERVICE_ACCOUNT)")
	case a.Token.Audience != "" && a.Token.ServiceAccount == "":
		return errors.New("auth: TASKS_OIDC_AUDIENCE is set without TASKS_SERVICE_ACCOUNT, so task tokens cannot be checked; generate refuses to start without it")
	}
	return nil
}

// Require wraps next.
func (a TaskAuth) Require(next http.Handler) http.Handler {
	now := a.Now
	if now == nil {
		now = time.Now
	}
	// A TaskAuth whose Check fails never admits a task, even where its
	// builder skipped Check.
	why := a.Check()
	var warn sync.Once
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if why != nil {
			warn.Do(func() { obs.Logger(r.Context()).Error("auth: generate refuses tasks", "error", why) })
			problem.Write(w, r, problem.New(problem.NotReady, "the generate function is misconfigured; see its logs"))
			return
		}
		if q := r.Header.Get("X-CloudTasks-QueueName"); !slices.Contains(a.Queues, q) {
			problem.Write(w, r, problem.New(problem.Forbidden, "only the %s task queues may call this endpoint", strings.Join(a.Queues, " and ")))
			return
		}
		if a.Token.Audience != "" {
			raw, ok := bearer(r)
			if !ok {
				problem.Write(w, r, problem.New(problem.Unauthenticated, "the task carries no OIDC token"))
				return
			}
			if _, err := CheckTaskToken(raw, a.Token, now()); err != nil {
				// Cloud Tasks retries refused deliveries; say why in the logs.
				obs.Logger(r.Context()).Warn("auth: task refused", "error", err)
				problem.Write(w, r, err)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
