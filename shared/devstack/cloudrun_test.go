package devstack_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/problem"
	"github.com/assetgen/assetgen/shared/queue"
)

const (
	invoker  = "tasks-invoker@assetgen-local.iam.gserviceaccount.com"
	intruder = "intruder@elsewhere.iam.gserviceaccount.com"
)

// RSA keys are slow to make: the test binary makes two, once.
var (
	testTokens  = sync.OnceValue(func() *devstack.IDTokens { return mustTokens() })
	otherTokens = sync.OnceValue(func() *devstack.IDTokens { return mustTokens() })
)

func mustTokens() *devstack.IDTokens {
	k, err := devstack.NewIDTokens()
	if err != nil {
		panic(err)
	}
	return k
}

// seen is what the service behind the front-end received.
type seen struct {
	mu      sync.Mutex
	headers []http.Header
}

func (s *seen) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.headers = append(s.headers, r.Header.Clone())
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (s *seen) all() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.headers...)
}

// The front-end answers as Cloud Run's IAM check does, and hands the service
// only invokers' requests, with the signature removed.
func TestCloudRunIAM(t *testing.T) {
	const aud = "https://generate-abc-uc.a.run.app"
	mint := func(k *devstack.IDTokens, email, audience string) string {
		raw, err := k.Mint(email, audience)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	good := mint(testTokens(), invoker, aud)
	expiring := mustTokensWithTTL(t, -time.Hour)
	tests := []struct {
		name    string
		headers map[string]string
		want    int
	}{
		{"no token", nil, http.StatusUnauthorized},
		{"not a bearer token", map[string]string{"Authorization": "Basic " + good}, http.StatusUnauthorized},
		{"garbage", map[string]string{"Authorization": "Bearer not.a.token"}, http.StatusUnauthorized},
		{"signed by another key", map[string]string{"Authorization": "Bearer " + mint(otherTokens(), invoker, aud)}, http.StatusUnauthorized},
		{"another audience", map[string]string{"Authorization": "Bearer " + mint(testTokens(), invoker, "https://submit-abc-uc.a.run.app")}, http.StatusUnauthorized},
		{"expired", map[string]string{"Authorization": "Bearer " + mint(expiring, invoker, aud)}, http.StatusUnauthorized},
		{"already stripped", map[string]string{"Authorization": "Bearer " + good[:strings.LastIndex(good, ".")+1] + auth.StrippedSignature}, http.StatusUnauthorized},
		{"not an invoker", map[string]string{"Authorization": "Bearer " + mint(testTokens(), intruder, aud)}, http.StatusForbidden},
		{"invoker", map[string]string{"Authorization": "Bearer " + good}, http.StatusOK},
		{"invoker in X-Serverless-Authorization", map[string]string{"X-Serverless-Authorization": "Bearer " + good, "Authorization": "Bearer app-credential"}, http.StatusOK},
		{"X-Serverless-Authorization wins", map[string]string{"X-Serverless-Authorization": "Bearer " + mint(testTokens(), intruder, aud), "Authorization": "Bearer " + good}, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			svc := &seen{}
			fe := devstack.NewCloudRunIAM(devstack.CloudRunIAMOptions{
				Tokens: testTokens(), Audiences: []string{aud}, Invokers: []string{invoker},
			}, svc)
			r := httptest.NewRequest(http.MethodPost, "/tasks/generate", nil)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			fe.ServeHTTP(rec, r)
			is.Equal(rec.Code, tt.want) // Cloud Run's answer
			if tt.want != http.StatusOK {
				is.Equal(len(svc.all()), 0)                                               // the service never sees it
				is.True(strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html")) // Cloud Run's page, not a problem document
				is.True(strings.Contains(rec.Body.String(), "Your client does not have permission"))
				if tt.want == http.StatusUnauthorized {
					is.True(rec.Header().Get("WWW-Authenticate") != "") // a bearer challenge
				}
				return
			}
			got := svc.all()
			is.Equal(len(got), 1) // handed to the service once
			h := got[0]
			checked := "Authorization"
			if tt.headers["X-Serverless-Authorization"] != "" {
				checked = "X-Serverless-Authorization"
				is.Equal(h.Get("Authorization"), "Bearer app-credential") // the other header passes untouched
			}
			tok := strings.TrimPrefix(h.Get(checked), "Bearer ")
			is.True(strings.HasSuffix(tok, "."+auth.StrippedSignature))                      // signature removed
			is.Equal(tok[:strings.LastIndex(tok, ".")], good[:strings.LastIndex(good, ".")]) // header and claims kept
			is.Equal(fe.Stats(), devstack.IAMStats{Passed: 1})
		})
	}
}

func mustTokensWithTTL(t *testing.T, ttl time.Duration) *devstack.IDTokens {
	t.Helper()
	k, err := devstack.NewIDTokens()
	if err != nil {
		t.Fatal(err)
	}
	k.TTL = ttl
	return k
}

// A task with an OIDC token travels through the stand-in and the front-end:
// verifying its signature behind Cloud Run (what generate used to do) refuses
// every delivery; checking the stripped token's claims admits the queue's own
// account, and the front-end refuses another account's task with 403 before
// the service.
func TestTaskTokenThroughCloudRun(t *testing.T) {
	is := is.New(t)
	tokens := testTokens()

	// Google's key endpoint for the old check, serving the stand-in's key.
	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(tokens.KeySet())
	}))
	t.Cleanup(keys.Close)

	var mu sync.Mutex
	routes := map[string]http.Handler{}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		h := routes[r.URL.Path]
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	oldURL, newURL := front.URL+"/old", front.URL+"/new"

	verifier, err := auth.NewGoogle(auth.GoogleOptions{Audiences: []string{oldURL}, JWKSURLs: []string{keys.URL}, HTTPClient: keys.Client()})
	is.NoErr(err) // the old signature check
	oldCheck := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if _, err := verifier.Verify(r.Context(), raw); err != nil {
			problem.Write(w, r, problem.Wrap(problem.Unauthenticated, err, "the task's OIDC token is not valid"))
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	svc := &seen{}
	newCheck := auth.TaskAuth{Queues: []string{"rows"}, Token: auth.TaskToken{Audience: newURL, ServiceAccount: invoker, Leeway: time.Minute}, RequireToken: true}.Require(svc)
	oldFE := devstack.NewCloudRunIAM(devstack.CloudRunIAMOptions{Tokens: tokens, Audiences: []string{oldURL}, Invokers: []string{invoker}}, oldCheck)
	newFE := devstack.NewCloudRunIAM(devstack.CloudRunIAMOptions{Tokens: tokens, Audiences: []string{newURL}, Invokers: []string{invoker}}, newCheck)
	mu.Lock()
	routes["/old"], routes["/new"] = oldFE, newFE
	mu.Unlock()

	s := startStack(t, devstack.TasksOptions{MaxAttempts: 2, IDTokens: tokens}, nil)
	ctx := ctxTimeout(t)
	enqueue := func(url, account string, row int) {
		e := queue.New(s.client, queue.Config{Queue: testQueue, TargetURL: url, ServiceAccount: account})
		is.NoErr(e.Enqueue(ctx, queue.Task{BatchID: batch.NewID(), Row: row})) // enqueued
	}
	enqueue(oldURL, invoker, 0)
	enqueue(newURL, invoker, 1)
	enqueue(newURL, intruder, 2)
	s.waitIdle(t)

	is.Equal(oldFE.Stats(), devstack.IAMStats{Passed: 2})               // Cloud Run admits both attempts...
	is.Equal(newFE.Stats(), devstack.IAMStats{Passed: 1, Forbidden: 2}) // ...the intruder's task never passes
	st := s.tasks.Stats()
	is.Equal(st.Succeeded, int64(1)) // only the new check's task of the invoker succeeds
	is.Equal(st.Dropped, int64(2))   // the old check refused the stripped token every time; the intruder was refused by IAM
	got := svc.all()
	is.Equal(len(got), 1) // the service ran once
	c, err := auth.CheckTaskToken(strings.TrimPrefix(got[0].Get("Authorization"), "Bearer "), auth.TaskToken{Audience: newURL, ServiceAccount: invoker}, time.Now())
	is.NoErr(err)              // it received a stripped token of the queue's account
	is.Equal(c.Email, invoker) // for the account
	is.True(c.Subject != "")   // with a subject
	is.Equal(c.Issuer, "https://accounts.google.com")
}

// A task without an explicit audience gets a token for its URL, and one with
// an audience gets that.
func TestTasksOIDCTokenAudience(t *testing.T) {
	is := is.New(t)
	tokens := testTokens()
	s := startStack(t, devstack.TasksOptions{IDTokens: tokens}, nil)
	ctx := ctxTimeout(t)
	is.NoErr(queue.New(s.client, queue.Config{Queue: testQueue, TargetURL: s.rcv.url(), ServiceAccount: invoker}).
		Enqueue(ctx, queue.Task{BatchID: batch.NewID(), Row: 0})) // enqueued without audience
	s.waitIdle(t)
	is.NoErr(queue.New(s.client, queue.Config{Queue: testQueue, TargetURL: s.rcv.url(), ServiceAccount: invoker, Audience: "custom-aud"}).
		Enqueue(ctx, queue.Task{BatchID: batch.NewID(), Row: 1})) // enqueued with an audience
	s.waitIdle(t)
	is.NoErr(queue.New(s.client, queue.Config{Queue: testQueue, TargetURL: s.rcv.url()}).
		Enqueue(ctx, queue.Task{BatchID: batch.NewID(), Row: 2})) // enqueued without a token
	s.waitIdle(t)

	got := s.rcv.deliveries()
	is.Equal(len(got), 3)
	bearer := func(d delivery) string { return strings.TrimPrefix(d.header.Get("Authorization"), "Bearer ") }
	c, err := tokens.Verify(bearer(got[0]), []string{s.rcv.url()})
	is.NoErr(err) // a signed token for the task's URL
	is.Equal(c.Email, invoker)
	is.True(c.EmailVerified)
	_, err = tokens.Verify(bearer(got[1]), []string{"custom-aud"})
	is.NoErr(err)                                    // a signed token for the task's audience
	is.Equal(got[2].header.Get("Authorization"), "") // no token asked, none sent
}
