package auth_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/problem"
)

const (
	taskQueue      = "generate"
	taskAudience   = "https://generate-abc123-uc.a.run.app"
	serviceAccount = "tasks-invoker@assetgen-prod.iam.gserviceaccount.com"
)

// taskClaims are the claims of the OIDC token Cloud Tasks attaches for the
// queue's service account, changed by mods.
func taskClaims(mods ...func(*auth.Claims)) auth.Claims {
	return claims(append([]func(*auth.Claims){func(c *auth.Claims) {
		c.Audience = jwt.Audience{taskAudience}
		c.Subject = "104857483920184756392"
		c.Email = serviceAccount
		c.EmailVerified = true
	}}, mods...)...)
}

func TestTaskAuth(t *testing.T) {
	token := func(mods ...func(*auth.Claims)) func(t *testing.T) string {
		return func(t *testing.T) string { return "Bearer " + mint(t, keyA(), "A", taskClaims(mods...)) }
	}
	none := func(*testing.T) string { return "" }
	tests := []struct {
		name          string
		verify        bool // with a Verifier
		queue         string
		queueHeader   bool
		authorization func(t *testing.T) string
		want          problem.Code // "" when next runs
	}{
		{"no queue header, no verifier", false, "", false, none, problem.Forbidden},
		{"wrong queue, no verifier", false, "other-queue", true, none, problem.Forbidden},
		{"queue name in another case", false, "Generate", true, none, problem.Forbidden},
		{"full queue name instead of its id", false, "projects/p/locations/l/queues/generate", true, none, problem.Forbidden},
		{"right queue, no verifier", false, taskQueue, true, none, ""},
		{"no queue header, valid token", true, "", false, token(), problem.Forbidden},
		{"wrong queue, valid token", true, "other-queue", true, token(), problem.Forbidden},
		{"right queue, no token", true, taskQueue, true, none, problem.Unauthenticated},
		{"right queue, not a bearer token", true, taskQueue, true, func(t *testing.T) string {
			return "Basic " + mint(t, keyA(), "A", taskClaims())
		}, problem.Unauthenticated},
		{"right queue, token for another audience", true, taskQueue, true, token(func(c *auth.Claims) {
			c.Audience = jwt.Audience{"https://submit-abc123-uc.a.run.app"}
		}), problem.Unauthenticated},
		{"right queue, expired token", true, taskQueue, true, token(func(c *auth.Claims) {
			c.IssuedAt, c.Expiry = jwt.NewNumericDate(t0.Add(-2*time.Hour)), jwt.NewNumericDate(t0.Add(-time.Hour))
		}), problem.Unauthenticated},
		{"right queue, forged token", true, taskQueue, true, func(t *testing.T) string {
			return "Bearer " + mint(t, keyEvil(), "A", taskClaims())
		}, problem.Unauthenticated},
		{"right queue, another service account", true, taskQueue, true, token(func(c *auth.Claims) {
			c.Email = "attacker@evil-project.iam.gserviceaccount.com"
		}), problem.Forbidden},
		{"right queue, no email", true, taskQueue, true, token(func(c *auth.Claims) {
			c.Email = ""
		}), problem.Forbidden},
		{"right queue, email not verified", true, taskQueue, true, token(func(c *auth.Claims) {
			c.EmailVerified = false
		}), problem.Forbidden},
		{"right queue, valid token", true, taskQueue, true, token(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			a := auth.TaskAuth{Queue: taskQueue, ServiceAccount: serviceAccount}
			if tt.verify {
				keys := newJWKS(t, publicJWK(keyA(), "A"))
				v, err := auth.NewGoogle(auth.GoogleOptions{
					Audiences: []string{taskAudience}, JWKSURLs: []string{keys.URL},
					HTTPClient: keys.Client(), Leeway: time.Minute, Now: newClock().Now,
				})
				is.NoErr(err)
				a.Verifier = v
			}
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			if tt.queueHeader {
				r.Header.Set("X-CloudTasks-QueueName", tt.queue)
			}
			if h := tt.authorization(t); h != "" {
				r.Header.Set("Authorization", h)
			}
			next := &recorder{}
			rec := httptest.NewRecorder()
			a.Require(next).ServeHTTP(rec, r)

			if tt.want == "" {
				is.Equal(next.Called(), 1) // next runs
				is.Equal(rec.Code, http.StatusOK)
				return
			}
			is.Equal(next.Called(), 0) // next never runs
			wantProblem(t, rec, tt.want)
		})
	}
}
