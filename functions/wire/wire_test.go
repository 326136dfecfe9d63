package wire_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/functions/wire"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/platform/platformtest"
)

// Each function built from one platform answers its health and readiness
// probes: every dependency it needs was built and handed over.
func TestEveryFunctionBuildsFromOnePlatform(t *testing.T) {
	p := platformtest.Open(t, nil)
	submitH, err := wire.Submit(p.Platform)
	if err != nil {
		t.Fatal(err)
	}
	generateH, err := wire.Generate(p.Platform)
	if err != nil {
		t.Fatal(err)
	}
	progressSvc, err := wire.Progress(p.Platform)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(progressSvc.Close)
	for name, h := range map[string]http.Handler{"submit": submitH, "generate": generateH, "progress": progressSvc} {
		for _, path := range []string{"/health", "/ready", "/healthz", "/readyz"} {
			t.Run(name+path, func(t *testing.T) {
				is := is.New(t)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
				is.Equal(w.Code, http.StatusOK) // alive and ready
			})
		}
	}

	is := is.New(t)
	for _, path := range []string{"/", "/console/config.js"} {
		w := httptest.NewRecorder()
		progressSvc.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		is.Equal(w.Code, http.StatusOK) // progress serves the console
	}
	w := httptest.NewRecorder()
	wire.Console(p.Platform.Config).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	is.Equal(w.Code, http.StatusOK) // so does the console on its own

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	is.NoErr(progressSvc.WaitIdle(ctx)) // no stream left open
}

// Submit cannot be built without somewhere to send row tasks.
func TestSubmitNeedsTheGenerateURL(t *testing.T) {
	is := is.New(t)
	p := platformtest.Open(t, map[string]string{"GENERATE_URL": ""})
	_, err := wire.Submit(p.Platform)
	is.True(err != nil) // refused at build time, not on the first submit
	_, err = wire.Progress(p.Platform)
	is.NoErr(err) // progress does not enqueue
}

// Generate does not start where a queue header alone would admit a task: on
// Cloud Run, or anywhere off the emulators, without the task token check.
func TestGenerateRefusesToStartWithoutTheTaskCheck(t *testing.T) {
	is := is.New(t)
	p := platformtest.Open(t, map[string]string{"K_SERVICE": "generate"})
	_, err := wire.Generate(p.Platform)
	is.True(err != nil && strings.Contains(err.Error(), "TASKS_OIDC_AUDIENCE")) // refused, naming the setting

	p = platformtest.Open(t, map[string]string{"K_SERVICE": "generate", "TASKS_OIDC_AUDIENCE": "https://generate.example", "TASKS_SERVICE_ACCOUNT": "tasks@p.iam.gserviceaccount.com"})
	_, err = wire.Generate(p.Platform)
	is.NoErr(err) // with the check configured it starts

	cloud, err := config.Load(func(string) string { return "" })
	is.NoErr(err)
	is.True(wire.TaskAuth(cloud).RequireToken)   // real Cloud Storage: a token is required even without K_SERVICE
	is.True(wire.TaskAuth(cloud).Check() != nil) // and its absence stops the start
	emulated, err := config.Load(func(k string) string { return map[string]string{"STORAGE_EMULATOR_HOST": "127.0.0.1:1"}[k] })
	is.NoErr(err)
	is.True(!wire.TaskAuth(emulated).RequireToken) // on the emulators off Cloud Run the queue header suffices
}

// A browser on a CORS_ORIGINS origin may name the local stack's simulated
// user (X-Assetgen-User) on every function it calls, but only where that
// header means something: with AUTH_MODE=none.
func TestCORSAllowsTheSimulatedUserOnlyWithoutAuth(t *testing.T) {
	const origin = "http://localhost:5173"
	for _, mode := range []string{"none", "apikey"} {
		t.Run(mode, func(t *testing.T) {
			is := is.New(t)
			p := platformtest.Open(t, map[string]string{"AUTH_MODE": mode, "CORS_ORIGINS": origin})
			submitH, err := wire.Submit(p.Platform)
			is.NoErr(err)
			progressSvc, err := wire.Progress(p.Platform)
			is.NoErr(err)
			t.Cleanup(progressSvc.Close)
			for path, h := range map[string]http.Handler{"/batch/images": submitH, "/progress/01a2148a-18c3-7c4d-87a1-b12f92f73113": progressSvc} {
				r := httptest.NewRequest(http.MethodOptions, path, nil)
				r.Header.Set("Origin", origin)
				r.Header.Set("Access-Control-Request-Method", http.MethodPost)
				r.Header.Set("Access-Control-Request-Headers", "content-type, x-assetgen-user")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				is.Equal(w.Code, http.StatusNoContent)                          // the preflight is answered
				is.Equal(w.Header().Get("Access-Control-Allow-Origin"), origin) // for the dev server's origin
				allowed := strings.Contains(strings.ToLower(w.Header().Get("Access-Control-Allow-Headers")), "x-assetgen-user")
				is.Equal(allowed, mode == "none") // X-Assetgen-User only where it names the user
			}
		})
	}
}
