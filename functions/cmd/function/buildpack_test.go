package main

import (
	"archive/zip"
	"bytes"
	"context"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/client"
	"github.com/assetgen/assetgen/shared/devstack"
)

const (
	frameworkFunctions = "github.com/GoogleCloudPlatform/functions-framework-go/functions"
	// appDir is where the builder puts the main it generates, inside the source.
	appDir = "functions.local/app"
	// tasksInvoker is the queue's service account, the only invoker of Generate.
	tasksInvoker = "tasks-invoker@assetgen-test.iam.gserviceaccount.com"
)

// The builder's generated main for a root package that registers its
// functions with functions.HTTP: it imports the package for its init and
// starts the framework, which serves the registration FUNCTION_TARGET names.
var declarativeMain = template.Must(template.New("main").Parse(`package main

import (
	"log"
	"os"

	_ "{{.Package}}"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if err := funcframework.Start(port); err != nil {
		log.Fatalf("funcframework.Start: %v", err)
	}
}
`))

// The builder's generated main for any other root package: it registers the
// exported function the target names.
var targetMain = template.Must(template.New("main").Parse(`package main

import (
	"context"
	"log"
	"os"

	userfunction "{{.Package}}"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
)

func main() {
	if err := funcframework.RegisterHTTPFunctionContext(context.Background(), "/", userfunction.{{.Target}}); err != nil {
		log.Fatalf("register: %v", err)
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if err := funcframework.Start(port); err != nil {
		log.Fatalf("funcframework.Start: %v", err)
	}
}
`))

// The functions run exactly as Cloud Run functions builds and runs them: the
// source archive scripts/package.sh makes, unpacked, with the main the Go
// function builder generates for its root package, built without the
// repository, one process per function, Generate private behind Cloud Run's
// IAM check (which hands it the task's token with the signature removed),
// each on Cloud Run (K_SERVICE set). A batch runs to done.
func TestFunctionsAsTheBuilderBuildsThem(t *testing.T) {
	if testing.Short() {
		t.Skip("packages, builds and starts three processes")
	}
	is := is.New(t)
	bin := buildFromArchive(t, "Submit")

	const queue = "projects/p/locations/l/queues/q"
	gcs, err := devstack.StartGCS(devstack.GCSOptions{Addr: "127.0.0.1:0", Root: t.TempDir(), Buckets: []string{"fn-test"}})
	is.NoErr(err)
	t.Cleanup(func() { _ = gcs.Close(context.Background()) })
	tokens, err := devstack.NewIDTokens()
	is.NoErr(err)
	tasks, err := devstack.StartTasks(devstack.TasksOptions{Addr: "127.0.0.1:0", Queue: queue, MinBackoff: 10 * time.Millisecond, IDTokens: tokens})
	is.NoErr(err)
	t.Cleanup(tasks.Close)

	ports := map[string]string{"Submit": freePort(t), "Generate": freePort(t), "Progress": freePort(t)}
	local := func(target string) string { return "http://127.0.0.1:" + ports[target] }
	// Generate's public face: Cloud Run's IAM check before the process.
	generate, err := url.Parse(local("Generate"))
	is.NoErr(err)
	front := httptest.NewUnstartedServer(nil)
	generateURL := "http://" + front.Listener.Addr().String() + "/"
	iam := devstack.NewCloudRunIAM(devstack.CloudRunIAMOptions{
		Tokens: tokens, Audiences: []string{generateURL}, Invokers: []string{tasksInvoker},
	}, httputil.NewSingleHostReverseProxy(generate))
	front.Config.Handler = iam
	front.Start()
	t.Cleanup(front.Close)

	env := []string{
		"BUCKET=fn-test",
		"TASKS_QUEUE=" + queue,
		"STORAGE_EMULATOR_HOST=" + gcs.Addr,
		"TASKS_EMULATOR_HOST=" + tasks.Addr,
		"GENERATE_URL=" + generateURL,
		"TASKS_SERVICE_ACCOUNT=" + tasksInvoker,
		"TASKS_OIDC_AUDIENCE=" + generateURL,
		"PROGRESS_BASE_URL=" + local("Progress"),
		"SIGNING_KEY_FILE=" + filepath.Join(t.TempDir(), "key.pem"),
		"SSE_POLL_MIN=20ms",
		"LOG_LEVEL=warn",
	}
	startFunctions(t, bin, ports, env, func(target string) []string { return []string{"K_SERVICE=" + strings.ToLower(target)} }, local)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := client.New(local("Submit"))
	two := 2
	sub, err := c.Submit(ctx, batch.Request{RunMode: "dry_run", Rows: []batch.RowRequest{{Prompt: "as built", Variants: &two}, {Prompt: "by the builder"}}}, "")
	is.NoErr(err) // Submit accepts the batch
	done := followToDone(ctx, t, c, sub.ProgressURL)
	is.Equal(done.Status, "done")        // the batch finished
	is.Equal(done.VariantCounts.Done, 3) // Generate made every image
	st := iam.Stats()
	is.Equal(st.Unauthenticated+st.Forbidden, int64(0)) // every task passed Cloud Run's check
	is.True(st.Passed >= 2)                             // at least once per row

	// Past the IAM check, generate still refuses a token Cloud Run did not
	// strip: only what came through the check is trusted.
	signed, err := tokens.Mint(tasksInvoker, generateURL)
	is.NoErr(err)
	req, err := http.NewRequest(http.MethodPost, local("Generate")+"/", strings.NewReader(`{"batchId":"`+sub.BatchID+`","row":0}`))
	is.NoErr(err)
	req.Header.Set("X-CloudTasks-QueueName", "q")
	req.Header.Set("Authorization", "Bearer "+signed)
	resp, err := http.DefaultClient.Do(req)
	is.NoErr(err)
	resp.Body.Close()
	is.Equal(resp.StatusCode, http.StatusUnauthorized) // a token with its signature is not one Cloud Run handed on
}

// buildFromArchive packages the working tree with scripts/package.sh, unpacks
// the archive, adds the main the Go function builder would generate for it
// (its choice depends on the root package's imports), and builds that main
// in the unpacked source, offline from the module cache when it can. It
// returns the binary.
func buildFromArchive(t *testing.T, target string) string {
	t.Helper()
	is := is.New(t)
	root, err := filepath.Abs("../../..")
	is.NoErr(err)
	var out, errs bytes.Buffer
	pkg := exec.Command("bash", filepath.Join(root, "scripts", "package.sh"), "--out", t.TempDir())
	pkg.Dir, pkg.Stdout, pkg.Stderr = root, &out, &errs
	if err := pkg.Run(); err != nil {
		t.Fatalf("package.sh: %v\n%s", err, errs.String())
	}
	src := filepath.Join(t.TempDir(), "src")
	unzip(t, strings.TrimSpace(out.String()), src)

	module := modulePath(t, filepath.Join(src, "go.mod"))
	imports := rootImports(t, src)
	tmpl := targetMain
	if slices.Contains(imports, frameworkFunctions) {
		tmpl = declarativeMain
	}
	is.NoErr(os.MkdirAll(filepath.Join(src, appDir), 0o755))
	f, err := os.Create(filepath.Join(src, appDir, "main.go"))
	is.NoErr(err)
	is.NoErr(tmpl.Execute(f, map[string]string{"Package": module, "Target": target}))
	is.NoErr(f.Close())

	bin := filepath.Join(t.TempDir(), "function")
	build := func(extra ...string) ([]byte, error) {
		// -trimpath keeps the build cache valid across temporary directories.
		cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./"+appDir)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), append([]string{"GOFLAGS=-mod=mod -buildvcs=false"}, extra...)...)
		return cmd.CombinedOutput()
	}
	if msg, err := build("GOPROXY=off"); err != nil {
		// The module cache lacks something: let the proxy fill it.
		if msg2, err2 := build(); err2 != nil {
			t.Fatalf("the builder's main does not build (root package imports %v):\n%s\nwith the module proxy:\n%s", imports, msg, msg2)
		}
	}
	return bin
}

func unzip(t *testing.T, archive, dir string) {
	t.Helper()
	zr, err := zip.OpenReader(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	for _, f := range zr.File {
		path := filepath.Join(dir, filepath.FromSlash(f.Name))
		if !strings.HasPrefix(path, dir+string(filepath.Separator)) {
			t.Fatalf("archive entry %q leaves the directory", f.Name)
		}
		if f.FileInfo().IsDir() {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func modulePath(t *testing.T, gomod string) string {
	t.Helper()
	b, err := os.ReadFile(gomod)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.TrimSpace(m)
		}
	}
	t.Fatal("go.mod has no module line")
	return ""
}

// rootImports are the imports of the package at the root of the source, as
// the builder reads them.
func rootImports(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go package at the root of the archive: %v", err)
	}
	var out []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			out = append(out, p)
		}
	}
	return out
}
