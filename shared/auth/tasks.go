package auth

import (
	"net/http"

	"github.com/assetgen/assetgen/shared/problem"
)

// TaskAuth admits only Cloud Tasks to the generate function: the request must
// name the expected queue (X-CloudTasks-QueueName) and, when a verifier is
// configured, carry an OIDC token for the expected audience issued to the
// queue's service account. In the cloud the function is also private (IAM
// invoker granted only to that account); this is the second lock.
type TaskAuth struct {
	// Queue is the queue's short id (the last element of its name).
	Queue string
	// Verifier checks the OIDC token; nil skips the check (the local stack).
	Verifier *Google
	// ServiceAccount is the email the token must be issued to.
	ServiceAccount string
}

// Require wraps next.
func (a TaskAuth) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if q := r.Header.Get("X-CloudTasks-QueueName"); q != a.Queue {
			problem.Write(w, r, problem.New(problem.Forbidden, "only the %s task queue may call this endpoint", a.Queue))
			return
		}
		if a.Verifier != nil {
			raw, ok := bearer(r)
			if !ok {
				problem.Write(w, r, problem.New(problem.Unauthenticated, "the task carries no OIDC token"))
				return
			}
			c, err := a.Verifier.Verify(r.Context(), raw)
			if err != nil {
				problem.Write(w, r, problem.Wrap(problem.Unauthenticated, err, "the task's OIDC token is not valid"))
				return
			}
			if c.Email != a.ServiceAccount || !c.EmailVerified {
				problem.Write(w, r, problem.New(problem.Forbidden, "the task's token is not the queue's service account"))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
