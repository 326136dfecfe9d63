package notify

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

// docVector is the test vector docs/notifications.md publishes.
type docVector struct {
	spec, keys, body, header string
}

func readDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/notifications.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// docLine is the rest of the one line of doc that starts with prefix.
func docLine(t *testing.T, doc, prefix string) string {
	t.Helper()
	var found []string
	for line := range strings.SplitSeq(doc, "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			found = append(found, rest)
		}
	}
	if len(found) != 1 {
		t.Fatalf("docs/notifications.md: want one line starting %q, found %d", prefix, len(found))
	}
	return found[0]
}

func vectorOf(t *testing.T, doc string) docVector {
	return docVector{
		spec:   docLine(t, doc, "WEBHOOK_SIGNING_KEYS="),
		keys:   docLine(t, doc, "GET /webhooks/keys: "),
		body:   docLine(t, doc, "body: "),
		header: "t=1700000000," + docLine(t, doc, "X-Assetgen-Signature: t=1700000000,"),
	}
}

// The documented test vector is what the code signs and publishes for its
// seed, and it verifies (at its own, deliberately old, time) — and not a
// second later than the tolerance.
func TestDocumentedTestVector(t *testing.T) {
	is := is.New(t)
	v := vectorOf(t, readDoc(t))
	keys, err := ParseSigningKeys(v.spec)
	is.NoErr(err) // the documented seed parses
	published, err := json.Marshal(keys.Public())
	is.NoErr(err)
	is.Equal(v.keys, string(published)) // the documented key document is what GET /webhooks/keys answers
	at := time.Unix(1_700_000_000, 0)
	header := v.header
	is.Equal(header, keys.Sign(at, []byte(v.body))) // the documented signature is what Deliver sends (Ed25519 is deterministic)
	var set KeySet
	is.NoErr(json.Unmarshal([]byte(v.keys), &set))
	is.NoErr(Verify(set, header, []byte(v.body), at, 0))                                                                      // verifies at its own time
	is.Equal(Verify(set, header, []byte(v.body), time.Now(), 0), ErrStaleSignature)                                           // and is stale today, as the doc warns
	is.Equal(Verify(set, header, []byte(v.body+" "), at, 0), ErrBadSignature)                                                 // an altered body fails
	is.Equal(Verify(set, strings.Replace(header, "t=1700000000", "t=1700000001", 1), []byte(v.body), at, 0), ErrBadSignature) // so does another t
}

// fenced returns the one code block of doc fenced as lang.
func fenced(t *testing.T, doc, lang string) string {
	t.Helper()
	parts := strings.Split(doc, "```"+lang+"\n")
	if len(parts) != 2 {
		t.Fatalf("docs/notifications.md: want one %s block, found %d", lang, len(parts)-1)
	}
	code, _, ok := strings.Cut(parts[1], "\n```")
	if !ok {
		t.Fatalf("docs/notifications.md: the %s block is not closed", lang)
	}
	return code
}

// The Node.js and Python recipes, run as documented on the test vector:
// accepted at the vector's time, refused as stale now, refused with an altered
// body, a wrong t or an unknown kid. Each runs where its interpreter (and, for
// Python, the cryptography package) is installed; all cases in one process.
func TestDocumentedRecipes(t *testing.T) {
	doc := readDoc(t)
	v := vectorOf(t, doc)
	cases := []struct {
		header, body, now string
		want              string // the line the driver prints
	}{
		{v.header, v.body, "1700000000", "ok"},
		{v.header, v.body, "", "refused: stale signature"},
		{v.header, strings.Replace(v.body, "u1", "u2", 1), "1700000000", "refused: bad signature"},
		{strings.Replace(v.header, "t=1700000000", "t=1700000001", 1), v.body, "1700000000", "refused: bad signature"},
		{strings.Replace(v.header, "kid=test", "kid=other", 1), v.body, "1700000000", "refused: unknown key"},
	}
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	recipes := []struct {
		lang, bin, probe string
		call             func(header, body, now string) string
	}{
		{lang: "js", bin: "node", call: func(header, body, now string) string {
			if now == "" {
				now = "undefined"
			}
			return "try { verifyWebhook(" + v.keys + ", " + q(header) + ", Buffer.from(" + q(body) + "), " + now + "); console.log('ok'); } " +
				"catch (e) { console.log('refused: ' + e.message.split(':')[0]); }\n"
		}},
		{lang: "python", bin: "python3", probe: "import cryptography", call: func(header, body, now string) string {
			if now == "" {
				now = "None"
			}
			return "try:\n    verify_webhook(json.loads(" + q(v.keys) + "), " + q(header) + ", " + q(body) + ".encode(), " + now + ")\n    print('ok')\n" +
				"except ValueError as e:\n    print('refused: ' + str(e).split(':')[0])\n"
		}},
	}
	for _, r := range recipes {
		t.Run(r.lang, func(t *testing.T) {
			is := is.New(t)
			bin, err := exec.LookPath(r.bin)
			if err != nil {
				t.Skipf("%s is not installed", r.bin)
			}
			if r.probe != "" && exec.Command(bin, "-c", r.probe).Run() != nil {
				t.Skipf("%s lacks what the recipe imports (%s)", r.bin, r.probe)
			}
			program := fenced(t, doc, r.lang) + "\n"
			var want []string
			for _, c := range cases {
				program += r.call(c.header, c.body, c.now)
				want = append(want, c.want)
			}
			file := filepath.Join(t.TempDir(), "recipe."+r.lang)
			is.NoErr(os.WriteFile(file, []byte(program), 0o600))
			out, err := exec.Command(bin, file).CombinedOutput()
			is.NoErr(err)                                                       // the recipe runs
			is.Equal(strings.Split(strings.TrimSpace(string(out)), "\n"), want) // each case gets its verdict
		})
	}
}
