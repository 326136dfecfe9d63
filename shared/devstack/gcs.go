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
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

// GCS is a running Cloud Storage emulator.
type GCS struct {
	// Addr is host:port, the value of STORAGE_EMULATOR_HOST.
	Addr   string
	server *fakestorage.Server
	http   *http.Server
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
	if o.Wrap != nil {
		h = o.Wrap(h)
	}
	g := &GCS{Addr: hostport, server: srv, http: &http.Server{Handler: h}}
	go func() {
		if err := g.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("devstack: gcs emulator stopped", "error", err)
		}
	}()
	return g, nil
}

// Close stops the emulator: it waits briefly for requests in flight, then
// closes every connection (idle keep-alive connections would otherwise hold
// Shutdown until its deadline).
func (g *GCS) Close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	err := g.http.Shutdown(ctx)
	if err != nil {
		err = g.http.Close()
	}
	g.server.Stop()
	return err
}
