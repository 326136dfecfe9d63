// Package functions registers the three functions with the Functions
// Framework. Deployed, every instance builds its function on its first
// request: the platform from the environment (shared/platform), then the
// handler over it (functions/wire).
package functions

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/assetgen/assetgen/functions/progress"
	"github.com/assetgen/assetgen/functions/wire"
	"github.com/assetgen/assetgen/shared/config"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/platform"
	"github.com/assetgen/assetgen/shared/problem"
)

func init() {
	functions.HTTP("Submit", lazy(wire.Submit))
	if err := generateCanStart(os.Getenv); err != nil {
		// Unregistered, Generate is not served: the Functions Framework refuses
		// to start an instance whose FUNCTION_TARGET names it, so the revision
		// never becomes ready and its deploy fails where everyone sees it,
		// instead of refusing every task.
		slog.Error("functions: Generate cannot start", "error", err)
	} else {
		functions.HTTP("Generate", lazy(wire.Generate))
	}
	functions.HTTP("Progress", lazy(func(p *platform.Platform) (http.Handler, error) {
		svc, err := wire.Progress(p)
		if err != nil {
			return nil, err
		}
		go drainOnSIGTERM(svc, p.Log)
		return svc, nil
	}))
}

// generateCanStart checks, on an instance serving Generate, the settings
// that fix how tasks are admitted: a revision's environment never changes, so
// an instance that would admit tasks unchecked must not start at all.
func generateCanStart(getenv func(string) string) error {
	if getenv("FUNCTION_TARGET") != "Generate" {
		return nil
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return nil // reported by the build on the first request, as for every function
	}
	return wire.TaskAuth(cfg).Check()
}

// drainOnSIGTERM is the progress service's shutdown in the cloud, where the
// Functions Framework has none: on SIGTERM every stream tells its client to
// reconnect (EventSource resumes elsewhere from its Last-Event-ID), and the
// process exits once they are gone, inside Cloud Run's 10 s grace period.
func drainOnSIGTERM(svc *progress.Service, log *slog.Logger) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	log.Info("progress: SIGTERM, sending streams elsewhere")
	svc.Close()
	// A fresh context: nothing else bounds the drain.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	if err := svc.WaitIdle(ctx); err != nil {
		log.Warn("progress: streams still open at exit", "error", err)
	}
	os.Exit(0)
}

// lazy builds a function from the environment once, on the first request of
// the instance. A build failure is logged and answered as a problem document
// on every request, never a crash loop.
func lazy(build func(*platform.Platform) (http.Handler, error)) func(http.ResponseWriter, *http.Request) {
	get := sync.OnceValues(func() (http.Handler, error) {
		cfg, err := config.Load(os.Getenv)
		if err != nil {
			return nil, err
		}
		log := obs.NewLogger(os.Stdout, cfg.LogLevel)
		slog.SetDefault(log)
		p, err := platform.Open(context.Background(), cfg, platform.Options{Getenv: os.Getenv, Log: log})
		if err != nil {
			return nil, err
		}
		h, err := build(p)
		if err != nil {
			_ = p.Close()
			return nil, err
		}
		return h, nil
	})
	return func(w http.ResponseWriter, r *http.Request) {
		h, err := get()
		if err != nil {
			slog.Error("functions: cannot start", "error", err)
			problem.Write(w, r, problem.Wrap(problem.NotReady, err, "the function is misconfigured; see its logs"))
			return
		}
		h.ServeHTTP(w, r)
	}
}
