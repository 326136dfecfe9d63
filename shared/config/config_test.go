package config_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/flags"
)

// The README's configuration tables are exactly what the code reads: regenerate
// them with `go run ./scripts/configdoc` when a variable changes.
func TestReadmeTablesMatchTheCode(t *testing.T) {
	is := is.New(t)
	b, err := os.ReadFile("../../README.md")
	is.NoErr(err)
	readme := string(b)
	is.True(strings.Contains(readme, config.Markdown(config.LocalVars))) // README lists the local stack's variables as the code does
	is.True(strings.Contains(readme, config.Markdown(config.Vars)))      // README lists every function variable as the code does
	for _, f := range flags.Registry {
		is.True(strings.Contains(readme, "| `"+f.Name+"` |")) // every flag is documented
	}
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaults(t *testing.T) {
	is := is.New(t)
	c, err := config.Load(env(nil))
	is.NoErr(err)
	is.Equal(c.Bucket, "assetgen-local")
	is.Equal(c.SSEHeartbeat, 30*time.Second)                // heartbeat default
	is.Equal(c.RowLease, c.DispatchDeadline+30*time.Second) // lease outlives a delivery
	is.Equal(c.DailyBudgetUSD, 25.0)                        // budget default
	is.Equal(c.Models.Default, "gemini-2.5-flash-image")
}

func TestBadValuesAreAllReported(t *testing.T) {
	is := is.New(t)
	_, err := config.Load(env(map[string]string{
		"SSE_HEARTBEAT":           "soon",
		"TASKS_DISPATCH_DEADLINE": "1h",
		"TASKS_MAX_ATTEMPTS":      "0",
		"LIVE_BACKEND":            "dall-e",
		"REFS_ALLOW_LOOPBACK":     "true", // not local: refused
		"GENERATE_URL":            "ftp://x",
		"DAILY_BUDGET_USD":        "-1",
	}))
	is.True(err != nil)
	for _, name := range []string{"SSE_HEARTBEAT", "TASKS_DISPATCH_DEADLINE", "TASKS_MAX_ATTEMPTS", "LIVE_BACKEND", "REFS_ALLOW_LOOPBACK", "GENERATE_URL", "DAILY_BUDGET_USD"} {
		is.True(strings.Contains(err.Error(), name)) // every bad variable is named
	}
}

func TestLiveBackendNeedsItsSettings(t *testing.T) {
	is := is.New(t)
	_, err := config.Load(env(map[string]string{"LIVE_BACKEND": "vertex"}))
	is.True(err != nil && strings.Contains(err.Error(), "GOOGLE_CLOUD_PROJECT")) // vertex needs a project
	c, err := config.Load(env(map[string]string{"LIVE_BACKEND": "gemini"}))
	is.NoErr(err) // submit knows live runs exist without holding the key
	is.Equal(c.GeminiAPIKey, "")
	c, err = config.Load(env(map[string]string{"LIVE_BACKEND": "gemini", "GEMINI_API_KEY": "k"}))
	is.NoErr(err)
	is.Equal(c.LiveBackend, "gemini")
}

// Google mode without an allow-list would admit every Google identity: the
// configuration is refused, so the function never serves.
func TestGoogleModeNeedsAnAllowList(t *testing.T) {
	is := is.New(t)
	_, err := config.Load(env(map[string]string{"AUTH_MODE": "google", "AUTH_AUDIENCES": "client-id"}))
	is.True(err != nil && strings.Contains(err.Error(), "AUTH_ALLOW")) // refused, naming the setting
	_, err = config.Load(env(map[string]string{"AUTH_MODE": "google", "AUTH_ALLOW": " , "}))
	is.True(err != nil) // blank entries are no list
	c, err := config.Load(env(map[string]string{"AUTH_MODE": "google", "AUTH_ALLOW": "alice@example.com, *@corp.example"}))
	is.NoErr(err)
	is.Equal(c.AuthAllow, []string{"alice@example.com", "*@corp.example"}) // every entry, trimmed
	_, err = config.Load(env(map[string]string{"AUTH_MODE": "apikey"}))
	is.NoErr(err) // other modes need no list
}
