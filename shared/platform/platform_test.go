package platform_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"maps"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/notify"
	"github.com/assetgen/assetgen/shared/platform"
	"github.com/assetgen/assetgen/shared/platform/platformtest"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestOpenBuildsTheSharedPieces(t *testing.T) {
	is := is.New(t)
	p := platformtest.Open(t, nil)
	is.True(p.Ledger != nil && p.Bucket != nil && p.Signer != nil) // the storage clients
	is.True(p.Budgets != nil && p.Flags != nil && p.Keys != nil)   // the stores over them
	is.True(p.Tokens != nil)                                       // the token signer

	ready := p.Readiness(p.BucketWritable(), p.BucketReadable(), p.QueueReachable())
	checks, err := ready.Check(ctx(t))
	is.NoErr(err) // the bucket takes a write, lists, and the queue answers
	is.Equal(checks, map[string]string{"bucket": "ok", "queue": "ok"})
}

func TestWhatOnlySomeNeedIsBuiltOnceOnFirstUse(t *testing.T) {
	is := is.New(t)
	p := platformtest.Open(t, nil)
	f1, err := p.Finisher()
	is.NoErr(err)
	f2, err := p.Finisher()
	is.NoErr(err)
	is.True(f1 == f2) // one finisher per instance
	q1, err := p.Queue()
	is.NoErr(err)
	q2, err := p.Queue()
	is.NoErr(err)
	is.True(q1 == q2) // one enqueuer, over one tasks client
	is.True(p.Refs() == p.Refs())

	callers, err := p.Callers()
	is.NoErr(err)
	is.Equal(callers, auth.Authenticator(auth.None{})) // the local stack trusts X-Assetgen-User

	gens, err := p.Generators()
	is.NoErr(err)
	is.True(gens[ledger.DryRun] != nil) // the placeholder
	is.True(gens[ledger.Live] == nil)   // no live model without LIVE_BACKEND
}

func TestSettingsOfOneFunctionAreCheckedWhenItIsBuilt(t *testing.T) {
	t.Run("the queue needs GENERATE_URL", func(t *testing.T) {
		is := is.New(t)
		p := platformtest.Open(t, map[string]string{"GENERATE_URL": ""})
		_, err := p.Queue()
		is.True(err != nil && strings.Contains(err.Error(), "GENERATE_URL")) // says what is missing
		_, err = p.Finisher()
		is.NoErr(err) // what does not enqueue still builds
	})
	t.Run("callers need a real authenticator off the local stack", func(t *testing.T) {
		is := is.New(t)
		p := platformtest.Open(t, map[string]string{"AUTH_MODE": "apikey"})
		callers, err := p.Callers()
		is.NoErr(err)
		_, isNone := callers.(auth.None)
		is.True(!isNone) // API keys, not trust
	})
	t.Run("google callers need a usable allow-list", func(t *testing.T) {
		is := is.New(t)
		p := platformtest.Open(t, map[string]string{"AUTH_MODE": "google", "AUTH_AUDIENCES": "client-id", "AUTH_ALLOW": "*@corp.iam.gserviceaccount.com"})
		_, err := p.Callers()
		is.True(err != nil && strings.Contains(err.Error(), "AUTH_ALLOW")) // a domain entry that admits nobody is refused
		p = platformtest.Open(t, map[string]string{"AUTH_MODE": "google", "AUTH_AUDIENCES": "client-id", "AUTH_ALLOW": "alice@example.com"})
		callers, err := p.Callers()
		is.NoErr(err)
		_, isGoogle := callers.(*auth.Google)
		is.True(isGoogle) // ID tokens with the allow-list
	})
	t.Run("live runs get the model", func(t *testing.T) {
		is := is.New(t)
		p := platformtest.Open(t, map[string]string{"LIVE_BACKEND": "gemini", "GEMINI_API_KEY": "k", "GEMINI_BASE_URL": "http://127.0.0.1:1"})
		gens, err := p.Generators()
		is.NoErr(err)
		is.True(gens[ledger.Live] != nil)
	})
}

// The webhook signing keys come from WEBHOOK_SIGNING_KEYS and are published
// as configured; a malformed value stops the instance when it opens, even one
// (progress) that never signs.
func TestWebhookSigningKeys(t *testing.T) {
	seed := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	t.Run("configured keys are published, the first signs", func(t *testing.T) {
		is := is.New(t)
		spec := "k2:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32)) + ",k1:" + seed
		p := platformtest.Open(t, map[string]string{"WEBHOOK_SIGNING_KEYS": spec})
		f, err := p.Finisher()
		is.NoErr(err)
		want, err := notify.ParseSigningKeys(spec)
		is.NoErr(err)
		is.Equal(f.WebhookKeys(), want.Public()) // both keys, k2 first
	})
	for name, spec := range map[string]string{
		"no id":       seed,
		"short seed":  "k1:" + base64.StdEncoding.EncodeToString(make([]byte, 16)),
		"duplicate":   "k1:" + seed + ",k1:" + seed,
		"not base64":  "k1:not-base64!",
		"empty entry": "k1:" + seed + ",",
	} {
		t.Run("refused: "+name, func(t *testing.T) {
			is := is.New(t)
			s := platformtest.Open(t, nil)
			env := maps.Clone(s.Env)
			env["WEBHOOK_SIGNING_KEYS"] = spec
			cfg, err := config.Load(func(k string) string { return env[k] })
			is.NoErr(err) // the settings parse; the keys are checked by the platform
			_, err = platform.Open(ctx(t), cfg, platform.Options{Getenv: func(k string) string { return env[k] }, Log: slog.New(slog.DiscardHandler)})
			is.True(err != nil)                                            // the instance does not start
			is.True(strings.Contains(err.Error(), "WEBHOOK_SIGNING_KEYS")) // and says which setting
			is.True(!strings.Contains(err.Error(), seed))                  // without repeating a seed
		})
	}
}

// Dependencies point one way: the shared packages never import the functions
// or the jobs, and the functions' handlers take their collaborators as Deps
// instead of reaching for the wiring.
func TestDependenciesPointOneWay(t *testing.T) {
	const module = "github.com/assetgen/assetgen/"
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", "./...")
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	handlers := map[string]bool{"functions/submit": true, "functions/generate": true, "functions/progress": true, "functions/console": true}
	pkgs := 0
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		pkgs++
		pkg := strings.TrimPrefix(f[0], module)
		for _, d := range f[1:] {
			dep, ours := strings.CutPrefix(d, module)
			switch {
			case !ours:
			case strings.HasPrefix(pkg, "shared/") && (strings.HasPrefix(dep, "functions/") || strings.HasPrefix(dep, "jobs/")):
				t.Errorf("%s imports %s: shared code never depends on functions or jobs", pkg, dep)
			case handlers[pkg] && (dep == "shared/platform" || dep == "functions/wire" || dep == "shared/cloud"):
				t.Errorf("%s imports %s: a handler takes its collaborators as Deps", pkg, dep)
			}
		}
	}
	if pkgs < 20 {
		t.Fatalf("go list found %d packages", pkgs)
	}
}
