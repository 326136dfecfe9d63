// Command local runs the whole platform in one process — submit, generate and
// progress on one port, with an embedded Cloud Storage emulator, an in-process
// Cloud Tasks stand-in and the dry-run placeholder generator. It is `make run`:
// no cloud account, no credentials, nothing to install beyond Go.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/assetgen/assetgen/functions/console"
	"github.com/assetgen/assetgen/functions/progress"
	"github.com/assetgen/assetgen/functions/wire"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/platform"
	"github.com/assetgen/assetgen/shared/uploads"
	"github.com/assetgen/assetgen/shared/urls"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "assetgen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, _ []string, getenv func(string) string, stdout, stderr io.Writer) error {
	a, err := start(ctx, getenv, stderr, options{})
	if err != nil {
		return err
	}
	defer a.close()
	fmt.Fprintf(stdout, "assetgen local stack listening on %s\n", a.base)
	fmt.Fprintf(stdout, "  storage emulator  STORAGE_EMULATOR_HOST=%s  bucket %s\n", a.gcs.Addr, a.cfg.Bucket)
	fmt.Fprintf(stdout, "  tasks stand-in    TASKS_EMULATOR_HOST=%s  queue %s, dry runs %s\n", a.tasks.Addr, a.cfg.Queue, a.cfg.DryRunQueue)
	fmt.Fprintf(stdout, "  data              %s\n", a.dataDir)
	if a.model != nil {
		fmt.Fprintf(stdout, "  fake model        GEMINI_BASE_URL=%s (live runs cost nothing)\n", a.model.URL)
	}
	if a.faults != nil {
		fmt.Fprintf(stdout, "  storage faults    LOCAL_STORAGE_FAULTS=%s\n", a.faultSpec)
	}
	if a.iam != nil {
		fmt.Fprintf(stdout, "  cloud run IAM     generate admits only %s\n", a.cfg.TasksServiceAccount)
	}

	errc := make(chan error, 1)
	go func() { errc <- a.srv.Serve(a.ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// A fresh context: the one that ended is what asked us to stop.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = a.srv.Shutdown(shutdownCtx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = a.srv.Close()
	}
	fmt.Fprintln(stdout, "assetgen local stack stopped")
	return err
}

// options are what tests may add to the wiring; run uses none.
type options struct {
	// wrapGCS sits between the storage client and the emulator (fault injection,
	// request counting).
	wrapGCS func(http.Handler) http.Handler
	// tasksLatency is added to every Cloud Tasks API call.
	tasksLatency time.Duration
	// deliveries makes the Cloud Tasks stand-in's HTTP requests.
	deliveries *http.Client
	// tasksIntercept sees every Cloud Tasks API call first (fault injection).
	tasksIntercept grpc.UnaryServerInterceptor
}

// app is the wired local stack, not yet serving.
type app struct {
	ln      net.Listener
	base    string
	dataDir string
	cfg     config.Config
	gcs     *devstack.GCS
	tasks   *devstack.Tasks
	// faults injects LOCAL_STORAGE_FAULTS (nil when it is empty).
	faults    *devstack.Faults
	faultSpec devstack.StorageFaults
	model     *devstack.FakeModel
	iam       *devstack.CloudRunIAM
	platform  *platform.Platform
	progress  *progress.Service
	srv       *http.Server
	log       *slog.Logger
}

// start brings up the emulators, then the functions configured exactly as in
// the cloud but pointed at them, all on one listener.
func start(ctx context.Context, getenv func(string) string, stderr io.Writer, o options) (a *app, err error) {
	local := func(name string) string {
		if v := getenv(name); v != "" {
			return v
		}
		for _, v := range config.LocalVars {
			if v.Name == name {
				return v.Default
			}
		}
		return ""
	}
	dup, err := strconv.ParseBool(local("TASKS_DUPLICATE_DELIVERY"))
	if err != nil {
		return nil, fmt.Errorf("TASKS_DUPLICATE_DELIVERY: %w", err)
	}
	concurrent, err := strconv.ParseInt(local("LOCAL_TASKS_MAX_CONCURRENT"), 10, 64)
	if err != nil || concurrent < 1 {
		return nil, fmt.Errorf("LOCAL_TASKS_MAX_CONCURRENT: want a positive integer")
	}
	dryConcurrent, err := strconv.ParseInt(local("LOCAL_TASKS_DRY_RUN_MAX_CONCURRENT"), 10, 64)
	if err != nil || dryConcurrent < 1 {
		return nil, fmt.Errorf("LOCAL_TASKS_DRY_RUN_MAX_CONCURRENT: want a positive integer")
	}
	fakeModel, err := strconv.ParseBool(local("LOCAL_FAKE_MODEL"))
	if err != nil {
		return nil, fmt.Errorf("LOCAL_FAKE_MODEL: %w", err)
	}
	fakeDelay, err := time.ParseDuration(local("LOCAL_FAKE_MODEL_DELAY"))
	if err != nil {
		return nil, fmt.Errorf("LOCAL_FAKE_MODEL_DELAY: %w", err)
	}
	cloudRunIAM, err := strconv.ParseBool(local("LOCAL_CLOUD_RUN_IAM"))
	if err != nil {
		return nil, fmt.Errorf("LOCAL_CLOUD_RUN_IAM: %w", err)
	}
	nameWindow, err := time.ParseDuration(local("LOCAL_TASKS_NAME_WINDOW"))
	if err != nil || nameWindow <= 0 {
		return nil, fmt.Errorf("LOCAL_TASKS_NAME_WINDOW: want a positive duration such as 1h, got %q", local("LOCAL_TASKS_NAME_WINDOW"))
	}
	storageFaults, err := devstack.ParseStorageFaults(local("LOCAL_STORAGE_FAULTS"))
	if err != nil {
		return nil, fmt.Errorf("LOCAL_STORAGE_FAULTS: %w", err)
	}
	// What the emulators need to know, read before they exist; the local stack is
	// local by definition.
	probe, err := config.Load(func(k string) string {
		if k == "STORAGE_EMULATOR_HOST" {
			return "127.0.0.1:0"
		}
		return getenv(k)
	})
	if err != nil {
		return nil, err
	}
	if err := checkExposure(local("HOST"), probe.AuthMode); err != nil {
		return nil, err
	}
	built := &app{dataDir: local("DATA_DIR"), log: obs.NewLogger(stderr, probe.LogLevel)}
	defer func() {
		if err != nil {
			built.close()
		}
	}()
	a = built
	if a.ln, err = net.Listen("tcp", net.JoinHostPort(local("HOST"), local("PORT"))); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	a.base = "http://" + a.ln.Addr().String()
	wrap := o.wrapGCS
	if !storageFaults.IsZero() {
		if storageFaults.Seed == 0 {
			storageFaults.Seed = rand.Uint64()
		}
		a.faults, a.faultSpec = devstack.NewFaults(storageFaults.Seed), storageFaults
		a.faults.Apply(storageFaults)
		wrap = a.faults.Wrap
		if o.wrapGCS != nil {
			wrap = func(h http.Handler) http.Handler { return o.wrapGCS(a.faults.Wrap(h)) }
		}
	}
	// The emulator checks signed URLs with the key that signs them, as Cloud
	// Storage would: an upload PUT that breaks its URL's bounds fails here too.
	keyFile := getenv("SIGNING_KEY_FILE")
	if keyFile == "" {
		keyFile = filepath.Join(a.dataDir, "signing-key.pem")
	}
	signingKey, err := urls.LoadOrCreateKey(keyFile)
	if err != nil {
		return nil, err
	}
	a.gcs, err = devstack.StartGCS(devstack.GCSOptions{
		Addr: local("LOCAL_GCS_ADDR"), Root: filepath.Join(a.dataDir, "gcs"), Buckets: []string{probe.Bucket}, Wrap: wrap,
		SigningKey: signingKey, CORSHeaders: uploads.Headers(),
	})
	if err != nil {
		return nil, err
	}
	var tokens *devstack.IDTokens
	if cloudRunIAM {
		if tokens, err = devstack.NewIDTokens(); err != nil {
			return nil, err
		}
	}
	// Dry runs have a queue of their own, as in the cloud, unless
	// TASKS_DRY_RUN_QUEUE names the main one.
	dryQueue := probe.Queue + "-dry-run"
	if getenv("TASKS_DRY_RUN_QUEUE") != "" {
		dryQueue = probe.DryRunQueue
	}
	var more []devstack.QueueOptions
	if dryQueue != probe.Queue {
		more = []devstack.QueueOptions{{Name: dryQueue, MaxConcurrent: dryConcurrent}}
	}
	// Tasks live in the data dir, so a restarted stack finishes what a killed
	// one left; their URLs name this stack's PORT.
	a.tasks, err = devstack.StartTasks(devstack.TasksOptions{
		Addr: local("LOCAL_TASKS_ADDR"), Queue: probe.Queue, More: more, MaxAttempts: probe.MaxAttempts,
		DuplicateDelivery: dup, Log: a.log, Latency: o.tasksLatency, MaxConcurrent: concurrent,
		Dir: filepath.Join(a.dataDir, "tasks"), IDTokens: tokens, Client: o.deliveries, NameWindow: nameWindow, Intercept: o.tasksIntercept,
	})
	if err != nil {
		return nil, err
	}

	ours := map[string]string{
		"STORAGE_EMULATOR_HOST": a.gcs.Addr,
		"TASKS_EMULATOR_HOST":   a.tasks.Addr,
		"TASKS_DRY_RUN_QUEUE":   dryQueue,
		"GENERATE_URL":          a.base + "/tasks/generate",
		"SIGNING_KEY_FILE":      keyFile,
		// Stable image links in webhooks and sheets point at the local stack.
		"PUBLIC_BASE_URL": a.base,
	}
	if cloudRunIAM {
		// Tasks carry the invoker's token for generate's URL, as on Cloud Run.
		ours["TASKS_SERVICE_ACCOUNT"] = localInvoker
		ours["TASKS_OIDC_AUDIENCE"] = ours["GENERATE_URL"]
	}
	var modelClient *http.Client
	if fakeModel {
		if a.model, err = devstack.StartFakeModel("127.0.0.1:0", fakeDelay); err != nil {
			return nil, err
		}
		// The fake plays Vertex AI, which runs every model of the table
		// (the SDK has Imagen's generateImages on Vertex AI only), reached
		// with a plain client so no credentials are looked up.
		// LIVE_BACKEND=gemini makes it play the Gemini API instead.
		ours["GEMINI_BASE_URL"], modelClient = a.model.URL, &http.Client{}
		if getenv("LIVE_BACKEND") == "gemini" {
			ours["GEMINI_API_KEY"] = "local-fake-model"
		} else {
			ours["LIVE_BACKEND"], ours["GOOGLE_CLOUD_PROJECT"], ours["VERTEX_LOCATION"] = "vertex", "assetgen-local", "us-central1"
		}
	}
	a.cfg, err = config.Load(func(name string) string {
		if v := getenv(name); v != "" && name != "STORAGE_EMULATOR_HOST" && name != "TASKS_EMULATOR_HOST" {
			return v
		}
		return ours[name]
	})
	if err != nil {
		return nil, err
	}
	// The local stack is one process, so every function shares one platform.
	if a.platform, err = platform.Open(ctx, a.cfg, platform.Options{Getenv: getenv, Log: a.log, ModelHTTPClient: modelClient}); err != nil {
		return nil, err
	}
	submitH, err := wire.Submit(a.platform)
	if err != nil {
		return nil, err
	}
	generateH, err := wire.Generate(a.platform)
	if err != nil {
		return nil, err
	}
	if a.progress, err = wire.Progress(a.platform); err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	// "/batch" too: the subtree pattern alone would redirect it to "/batch/".
	mux.Handle("/batch", submitH)
	mux.Handle("/batch/", submitH)
	mux.Handle("/assets/", submitH)
	if cloudRunIAM {
		a.iam = devstack.NewCloudRunIAM(devstack.CloudRunIAMOptions{
			// Cloud Run accepts tokens for its own URL and for custom audiences.
			Tokens: tokens, Audiences: []string{a.cfg.GenerateURL, a.cfg.TasksOIDCAudience}, Invokers: []string{a.cfg.TasksServiceAccount},
		}, generateH)
		generateH = a.iam
	}
	mux.Handle("/tasks/", generateH)
	mux.Handle("/progress/", a.progress)
	// The batch console, on the API's own origin.
	consoleH := wire.Console(a.cfg)
	mux.Handle("GET /{$}", consoleH)
	mux.Handle(console.Prefix, consoleH)
	mux.Handle("/", submitH) // health, readiness, and problem documents for anything else
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	a.srv.RegisterOnShutdown(a.progress.Close)
	return a, nil
}

// checkExposure refuses to serve AUTH_MODE=none beyond this machine: that
// mode believes whatever user X-Assetgen-User names, so anyone who can reach
// the port could act as any user (and spend their budgets).
func checkExposure(host, authMode string) error {
	if authMode != "none" || loopbackHost(host) {
		return nil
	}
	return fmt.Errorf("HOST=%q with AUTH_MODE=none would let anyone on the network act as any user; set HOST=127.0.0.1, or AUTH_MODE=apikey to serve beyond this machine", host)
}

// loopbackHost reports whether host names only this machine: localhost or a
// loopback address. An empty host listens on every interface.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// localInvoker is the service account whose tasks the local Cloud Run IAM
// check admits (TASKS_SERVICE_ACCOUNT overrides it).
const localInvoker = "tasks-invoker@assetgen-local.iam.gserviceaccount.com"

// close releases everything start acquired, in reverse order.
func (a *app) close() {
	if a.platform != nil {
		_ = a.platform.Close()
	}
	if a.tasks != nil {
		a.tasks.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if a.model != nil {
		_ = a.model.Close(ctx)
	}
	if a.gcs != nil {
		_ = a.gcs.Close(ctx)
	}
	if a.ln != nil {
		_ = a.ln.Close()
	}
}
