package auth_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/obs"
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

// stripped is a token as Cloud Run hands it to the container after its IAM
// check: the signature replaced by the marker.
func stripped(signed string) string {
	return signed[:strings.LastIndex(signed, ".")+1] + auth.StrippedSignature
}

// strippedClaims is a stripped RS256 token over c.
func strippedClaims(t *testing.T, c any) string {
	return stripped(mint(t, keyA(), "A", c))
}

// handMade builds header.payload.signature from raw JSON segments.
func handMade(header, payload, signature string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + signature
}

var want = auth.TaskToken{Audience: taskAudience, ServiceAccount: serviceAccount, Leeway: time.Minute}

func TestCheckTaskToken(t *testing.T) {
	mod := func(mods ...func(*auth.Claims)) func(t *testing.T) string {
		return func(t *testing.T) string { return strippedClaims(t, taskClaims(mods...)) }
	}
	payload, err := json.Marshal(taskClaims())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		token func(t *testing.T) string
		want  problem.Code // "" when accepted
	}{
		{"stripped token of the queue's account", mod(), ""},
		{"issuer without scheme", mod(func(c *auth.Claims) { c.Issuer = "accounts.google.com" }), ""},
		{"audience among others", mod(func(c *auth.Claims) { c.Audience = jwt.Audience{"https://other.example", taskAudience} }), ""},
		{"expired within the leeway", mod(func(c *auth.Claims) { c.Expiry = jwt.NewNumericDate(t0.Add(-30 * time.Second)) }), ""},
		{"still signed: did not pass Cloud Run", func(t *testing.T) string { return mint(t, keyA(), "A", taskClaims()) }, problem.Unauthenticated},
		{"empty signature", func(*testing.T) string {
			return handMade(`{"alg":"RS256","typ":"JWT"}`, string(payload), "")
		}, problem.Unauthenticated},
		{"marker with alg none", func(*testing.T) string {
			return handMade(`{"alg":"none","typ":"JWT"}`, string(payload), auth.StrippedSignature)
		}, problem.Unauthenticated},
		{"marker with HMAC", func(*testing.T) string {
			return handMade(`{"alg":"HS256","typ":"JWT"}`, string(payload), auth.StrippedSignature)
		}, problem.Unauthenticated},
		{"two segments", func(*testing.T) string { return "abc." + auth.StrippedSignature }, problem.Unauthenticated},
		{"payload not base64", func(*testing.T) string {
			return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256"}`)) + ".%%%." + auth.StrippedSignature
		}, problem.Unauthenticated},
		{"payload not JSON", func(*testing.T) string {
			return handMade(`{"alg":"RS256","typ":"JWT"}`, "not json", auth.StrippedSignature)
		}, problem.Unauthenticated},
		{"another audience", mod(func(c *auth.Claims) { c.Audience = jwt.Audience{"https://submit-abc123-uc.a.run.app"} }), problem.Unauthenticated},
		{"no audience", mod(func(c *auth.Claims) { c.Audience = nil }), problem.Unauthenticated},
		{"expired", mod(func(c *auth.Claims) {
			c.IssuedAt, c.Expiry = jwt.NewNumericDate(t0.Add(-2*time.Hour)), jwt.NewNumericDate(t0.Add(-time.Hour))
		}), problem.Unauthenticated},
		{"no expiry", mod(func(c *auth.Claims) { c.Expiry = nil }), problem.Unauthenticated},
		{"issued in the future", mod(func(c *auth.Claims) { c.IssuedAt = jwt.NewNumericDate(t0.Add(10 * time.Minute)) }), problem.Unauthenticated},
		{"not yet valid", mod(func(c *auth.Claims) { c.NotBefore = jwt.NewNumericDate(t0.Add(10 * time.Minute)) }), problem.Unauthenticated},
		{"Identity Platform issuer", mod(func(c *auth.Claims) { c.Issuer = "https://securetoken.google.com/assetgen-prod" }), problem.Unauthenticated},
		{"no issuer", mod(func(c *auth.Claims) { c.Issuer = "" }), problem.Unauthenticated},
		{"another service account", mod(func(c *auth.Claims) { c.Email = "attacker@evil-project.iam.gserviceaccount.com" }), problem.Forbidden},
		{"e-mail in another case", mod(func(c *auth.Claims) { c.Email = strings.ToUpper(serviceAccount) }), problem.Forbidden},
		{"no e-mail", mod(func(c *auth.Claims) { c.Email = "" }), problem.Forbidden},
		{"e-mail not verified", mod(func(c *auth.Claims) { c.EmailVerified = false }), problem.Forbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			c, err := auth.CheckTaskToken(tt.token(t), want, t0)
			if tt.want == "" {
				is.NoErr(err)                     // accepted
				is.Equal(c.Email, serviceAccount) // claims returned
				return
			}
			wantCode(t, err, tt.want)
		})
	}
}

func TestTaskAuth(t *testing.T) {
	bearerOf := func(token func(t *testing.T) string) func(t *testing.T) string {
		return func(t *testing.T) string { return "Bearer " + token(t) }
	}
	valid := bearerOf(func(t *testing.T) string { return strippedClaims(t, taskClaims()) })
	none := func(*testing.T) string { return "" }
	checked := auth.TaskToken{Audience: taskAudience, ServiceAccount: serviceAccount, Leeway: time.Minute}
	tests := []struct {
		name          string
		token         auth.TaskToken
		requireToken  bool
		queue         string // "-" sends no header
		authorization func(t *testing.T) string
		want          problem.Code // "" when next runs
	}{
		{"local: no queue header", auth.TaskToken{}, false, "-", none, problem.Forbidden},
		{"local: wrong queue", auth.TaskToken{}, false, "other-queue", none, problem.Forbidden},
		{"local: queue name in another case", auth.TaskToken{}, false, "Generate", none, problem.Forbidden},
		{"local: full queue name instead of its id", auth.TaskToken{}, false, "projects/p/locations/l/queues/generate", none, problem.Forbidden},
		{"local: right queue, no token needed", auth.TaskToken{}, false, taskQueue, none, ""},
		{"deployed without an audience", auth.TaskToken{}, true, taskQueue, valid, problem.NotReady},
		{"audience without a service account", auth.TaskToken{Audience: taskAudience}, false, taskQueue, valid, problem.NotReady},
		{"no queue header, valid token", checked, true, "-", valid, problem.Forbidden},
		{"wrong queue, valid token", checked, true, "other-queue", valid, problem.Forbidden},
		{"right queue, no token", checked, true, taskQueue, none, problem.Unauthenticated},
		{"right queue, not a bearer token", checked, true, taskQueue, func(t *testing.T) string {
			return "Basic " + strippedClaims(t, taskClaims())
		}, problem.Unauthenticated},
		{"right queue, signed token (not through Cloud Run)", checked, true, taskQueue, bearerOf(func(t *testing.T) string {
			return mint(t, keyA(), "A", taskClaims())
		}), problem.Unauthenticated},
		{"right queue, token for another audience", checked, true, taskQueue, bearerOf(func(t *testing.T) string {
			return strippedClaims(t, taskClaims(func(c *auth.Claims) { c.Audience = jwt.Audience{"https://other.example"} }))
		}), problem.Unauthenticated},
		{"right queue, another service account", checked, true, taskQueue, bearerOf(func(t *testing.T) string {
			return strippedClaims(t, taskClaims(func(c *auth.Claims) { c.Email = "attacker@evil-project.iam.gserviceaccount.com" }))
		}), problem.Forbidden},
		{"Cloud Run: right queue, stripped token", checked, true, taskQueue, valid, ""},
		{"local front-end: right queue, stripped token", checked, false, taskQueue, valid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			a := auth.TaskAuth{Queues: []string{taskQueue}, Token: tt.token, RequireToken: tt.requireToken, Now: newClock().Now}
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			if tt.queue != "-" {
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

// A TaskAuth used without its Check still refuses every task, and says why in
// its logs once rather than on every delivery.
func TestTaskAuthMisconfiguredLogsOnce(t *testing.T) {
	is := is.New(t)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	h := auth.TaskAuth{Queues: []string{taskQueue}, RequireToken: true}.Require(&recorder{})
	for range 3 {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header.Set("X-CloudTasks-QueueName", taskQueue)
		r = r.WithContext(obs.WithLogger(r.Context(), log))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		wantProblem(t, rec, problem.NotReady)
	}
	is.Equal(strings.Count(logs.String(), "TASKS_OIDC_AUDIENCE is not set"), 1) // the reason is logged once
}

func TestTaskAuthCheck(t *testing.T) {
	checked := auth.TaskToken{Audience: taskAudience, ServiceAccount: serviceAccount}
	tests := []struct {
		name         string
		token        auth.TaskToken
		requireToken bool
		ok           bool
	}{
		{"emulators, header check", auth.TaskToken{}, false, true},
		{"emulators, token check", checked, false, true},
		{"deployed, token check", checked, true, true},
		{"deployed without an audience", auth.TaskToken{ServiceAccount: serviceAccount}, true, false},
		{"deployed with nothing", auth.TaskToken{}, true, false},
		{"audience without a service account", auth.TaskToken{Audience: taskAudience}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			err := auth.TaskAuth{Queues: []string{taskQueue}, Token: tt.token, RequireToken: tt.requireToken}.Check()
			is.Equal(err == nil, tt.ok) // starts only with a check that can run
			if err != nil {
				is.True(strings.Contains(err.Error(), "TASKS_OIDC_AUDIENCE")) // names the setting
			}
		})
	}
}
