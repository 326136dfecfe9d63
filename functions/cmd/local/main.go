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
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/assetgen/assetgen/functions"
	"github.com/assetgen/assetgen/shared/cloud"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/obs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "assetgen:", err)
		os.Exit(1)
	}
}

// LocalVars are the settings only the local stack reads (the README lists them).
var LocalVars = []config.Var{
	{Name: "PORT", Default: "8080", Help: "Port of the local stack (all three functions)."},
	{Name: "HOST", Default: "127.0.0.1", Help: "Interface the local stack listens on."},
	{Name: "DATA_DIR", Default: ".data", Help: "Where the local stack keeps the emulated bucket and its signing key."},
	{Name: "LOCAL_GCS_ADDR", Default: "127.0.0.1:4443", Help: "Address of the embedded Cloud Storage emulator (signed URLs point here)."},
	{Name: "LOCAL_TASKS_ADDR", Default: "127.0.0.1:8123", Help: "Address of the embedded Cloud Tasks stand-in (gRPC)."},
	{Name: "TASKS_DUPLICATE_DELIVERY", Default: "false", Help: "Deliver every task twice, to watch at-least-once delivery do no harm."},
}

func run(ctx context.Context, _ []string, getenv func(string) string, stdout, stderr io.Writer) error {
	local := func(name string) string {
		if v := getenv(name); v != "" {
			return v
		}
		for _, v := range LocalVars {
			if v.Name == name {
				return v.Default
			}
		}
		return ""
	}
	dup, err := strconv.ParseBool(local("TASKS_DUPLICATE_DELIVERY"))
	if err != nil {
		return fmt.Errorf("TASKS_DUPLICATE_DELIVERY: %w", err)
	}
	dataDir := local("DATA_DIR")
	ln, err := net.Listen("tcp", net.JoinHostPort(local("HOST"), local("PORT")))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	base := "http://" + ln.Addr().String()

	// The emulators first; then the configuration as the cloud would see it,
	// pointed at them.
	probe, err := config.Load(getenv)
	if err != nil {
		return err
	}
	log := obs.NewLogger(stderr, probe.LogLevel)
	gcs, err := devstack.StartGCS(devstack.GCSOptions{
		Addr: local("LOCAL_GCS_ADDR"), Root: filepath.Join(dataDir, "gcs"), Buckets: []string{probe.Bucket},
	})
	if err != nil {
		return err
	}
	defer gcs.Close(context.WithoutCancel(ctx))
	tasks, err := devstack.StartTasks(devstack.TasksOptions{
		Addr: local("LOCAL_TASKS_ADDR"), Queue: probe.Queue, MaxAttempts: probe.MaxAttempts,
		DuplicateDelivery: dup, Log: log,
	})
	if err != nil {
		return err
	}
	defer tasks.Close()

	env := map[string]string{
		"STORAGE_EMULATOR_HOST": gcs.Addr,
		"TASKS_EMULATOR_HOST":   tasks.Addr,
		"GENERATE_URL":          base + "/tasks/generate",
		"SIGNING_KEY_FILE":      filepath.Join(dataDir, "signing-key.pem"),
	}
	cfg, err := config.Load(func(name string) string {
		if v := getenv(name); v != "" && name != "STORAGE_EMULATOR_HOST" && name != "TASKS_EMULATOR_HOST" {
			return v
		}
		return env[name]
	})
	if err != nil {
		return err
	}
	clients, err := cloud.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer clients.Close()
	if err := clients.OpenTasks(ctx, cfg); err != nil {
		return err
	}
	submitH, err := functions.NewSubmit(cfg, clients, log)
	if err != nil {
		return err
	}
	generateH := functions.NewGenerate(cfg, clients, log)
	progressH, hub := functions.NewProgress(cfg, clients, log)

	mux := http.NewServeMux()
	mux.Handle("/batch/", submitH)
	mux.Handle("/tasks/", generateH)
	mux.Handle("/progress/", progressH)
	mux.Handle("/", submitH) // health, readiness, and problem documents for anything else

	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(hub.Close)
	fmt.Fprintf(stdout, "assetgen local stack listening on %s\n", base)
	fmt.Fprintf(stdout, "  storage emulator  STORAGE_EMULATOR_HOST=%s  bucket %s\n", gcs.Addr, cfg.Bucket)
	fmt.Fprintf(stdout, "  tasks stand-in    TASKS_EMULATOR_HOST=%s  queue %s\n", tasks.Addr, cfg.Queue)
	fmt.Fprintf(stdout, "  data              %s\n", dataDir)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// A fresh context: the one that ended is what asked us to stop.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	fmt.Fprintln(stdout, "assetgen local stack stopped")
	return err
}
