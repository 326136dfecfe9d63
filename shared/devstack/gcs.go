// Package devstack runs the cloud services the platform needs inside the process,
// for `make run` and for tests: fake-gcs-server as the Cloud Storage emulator,
// and a Cloud Tasks stand-in that speaks the real gRPC API and delivers tasks
// over HTTP the way Cloud Tasks does. The production clients talk to both,
// unchanged, through their emulator endpoints.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

// GCS is a running Cloud Storage emulator.
type GCS struct {
	// Addr is host:port, the value of STORAGE_EMULATOR_HOST.
	Addr   string
	server *fakestorage.Server
	http   *http.Server
	// inflight counts handlers still running, so Close can wait for them: a
	// handler that outlives Close would write into a directory its owner (a
	// test's TempDir) is already removing.
	inflight handlers
}

// handlers counts running handlers; once closing, new requests are refused.
type handlers struct {
	mu      sync.Mutex
	n       int
	closing bool
	idle    chan struct{}
}

func (h *handlers) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	h.n++
	return true
}

func (h *handlers) leave() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n--; h.n == 0 && h.idle != nil {
		close(h.idle)
		h.idle = nil
	}
}

// wait refuses new handlers and waits for the running ones.
func (h *handlers) wait(ctx context.Context) error {
	h.mu.Lock()
	h.closing = true
	if h.n == 0 {
		h.mu.Unlock()
		return nil
	}
	idle := make(chan struct{})
	h.idle = idle
	h.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("devstack: gcs handlers still running: %w", ctx.Err())
	}
}

// GCSOptions configure the emulator.
type GCSOptions struct {
	// Addr to listen on; "127.0.0.1:0" picks a free port.
	Addr string
	// Root is the filesystem directory holding the objects; empty keeps them in
	// memory (slower past a few thousand objects, gone at exit).
	Root string
	// Buckets to create.
	Buckets []string
	// Wrap, when set, wraps the emulator's handler: fault injection and request
	// counting sit here, between the real client and the emulator.
	Wrap func(http.Handler) http.Handler
	// SigningKey, when set, is the PEM key URLs are signed with: requests
	// made with signed URLs are then checked as Cloud Storage checks them
	// (VerifySignedURL), which the emulator itself does not.
	SigningKey []byte
	// CORSHeaders are request headers browsers may send from other origins
	// besides the emulator's defaults (Content-Type, Range, …): the headers
	// signed upload URLs bind.
	CORSHeaders []string
}

// StartGCS serves fake-gcs-server on its own listener.
func StartGCS(o GCSOptions) (*GCS, error) {
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("devstack: gcs listen %s: %w", o.Addr, err)
	}
	hostport := ln.Addr().String()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		NoListener:  true,
		Scheme:      "http",
		PublicHost:  hostport,
		ExternalURL: "http://" + hostport,
		StorageRoot: o.Root,
		Writer:      io.Discard,
		// Browsers PUT uploads from the console's origin.
		AllowedCORSHeaders: o.CORSHeaders,
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("devstack: gcs: %w", err)
	}
	for _, b := range o.Buckets {
		srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: b})
	}
	locks := &objectLocks{}
	h := locks.wrap(srv.HTTPHandler())
	if o.SigningKey != nil {
		key, err := PublicKeyOf(o.SigningKey)
		if err != nil {
			ln.Close()
			srv.Stop()
			return nil, err
		}
		h = checkSignedURLs(key, h)
	}
	if o.Wrap != nil {
		h = o.Wrap(h)
	}
	g := &GCS{Addr: hostport, server: srv}
	g.http = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.inflight.enter() {
			http.Error(w, "emulator closing", http.StatusServiceUnavailable)
			return
		}
		defer g.inflight.leave()
		h.ServeHTTP(w, r)
	})}
	go func() {
		if err := g.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("devstack: gcs emulator stopped", "error", err)
		}
	}()
	return g, nil
}

// Close stops the emulator: it waits briefly for requests in flight, then
// closes every connection (idle keep-alive connections would otherwise hold
// Shutdown until its deadline), and waits, until ctx ends, for the handlers
// that were still running (closed connections cancel their requests).
func (g *GCS) Close(ctx context.Context) error {
	grace, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	err := g.http.Shutdown(grace)
	if err != nil {
		err = g.http.Close()
	}
	err = errors.Join(err, g.inflight.wait(ctx))
	g.server.Stop()
	return err
}
