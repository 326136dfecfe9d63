// Package auth says who is calling. Every request of the public API carries a
// principal; the user id it names owns batches and budgets.
package auth

import (
	"context"
	"net/http"

	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/problem"
)

// Principal is an authenticated caller.
type Principal struct {
	UserID string
	// Via names the credential that proved it: "none", "google", "apikey",
	// "progress-token".
	Via string
	// BatchID limits a progress token's principal to one batch.
	BatchID string
}

// Authenticator turns a request's credentials into a principal, or fails with
// UNAUTHENTICATED.
type Authenticator interface {
	Authenticate(r *http.Request) (Principal, error)
}

type ctxKey struct{}

// With returns ctx carrying p.
func With(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// From returns the principal of ctx.
func From(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}

// Require wraps next so it only runs for an authenticated caller, whose
// principal it finds in the context.
func Require(a Authenticator, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := Admit(a, w, r)
		if !ok {
			return
		}
		ctx := obs.With(With(r.Context(), p), "userId", p.UserID)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// Admit authenticates r for a handler that takes the principal from here
// rather than from its context (a progress stream, which keeps nothing of its
// request while it waits). The request's log line names the user and the
// batch, as under Require; when authentication fails, Admit answers the
// problem and returns false.
func Admit(a Authenticator, w http.ResponseWriter, r *http.Request) (Principal, bool) {
	p, err := a.Authenticate(r)
	if err != nil {
		problem.Write(w, r, err)
		return Principal{}, false
	}
	obs.Annotate(r.Context(), "userId", p.UserID)
	if id := r.PathValue("batchId"); id != "" {
		obs.Annotate(r.Context(), "batchId", id)
	}
	return p, true
}

// HeaderUser names the simulated user of the local stack (AUTH_MODE=none).
const HeaderUser = "X-Assetgen-User"

// LocalUser is the user of the local stack when no header names one.
const LocalUser = "local"

// None trusts the caller: the user is X-Assetgen-User, or "local". It exists
// for the local stack, where it lets one browser play several users; a cloud
// deployment refuses to start with it.
type None struct{}

// Authenticate implements Authenticator.
func (None) Authenticate(r *http.Request) (Principal, error) {
	u := r.Header.Get(HeaderUser)
	if u == "" {
		return Principal{UserID: LocalUser, Via: "none"}, nil
	}
	if !obs.SaneRequestID(u) {
		return Principal{}, problem.New(problem.Unauthenticated, "%s must be short printable text", HeaderUser)
	}
	return Principal{UserID: u, Via: "none"}, nil
}
