package bucket

import (
	"context"
	"errors"
	"fmt"
	"io"

	"cloud.google.com/go/storage"
)

// Open returns a reader over the object's content and its size; ErrNotFound
// when there is none. The caller closes the reader. Use it for objects too
// large to hold in memory at once: nothing is buffered beyond what the caller
// reads.
func (b *Bucket) Open(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	r, a, err := b.OpenObject(ctx, name)
	return r, a.Size, err
}

// OpenObject is Open with the attributes the read answers: size, content
// type, generation and last modification (Updated). Reading costs no call
// beyond the read itself.
func (b *Bucket) OpenObject(ctx context.Context, name string) (io.ReadCloser, Attrs, error) {
	r, err := b.object(name, nil).NewReader(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return nil, Attrs{}, ErrNotFound
	}
	if err != nil {
		return nil, Attrs{}, &Error{Op: Read, Object: name, Err: err}
	}
	a := Attrs{
		Name: name, Size: r.Attrs.Size, ContentType: r.Attrs.ContentType,
		Generation: r.Attrs.Generation, Metageneration: r.Attrs.Metageneration, Updated: r.Attrs.LastModified,
	}
	return &reader{r: r, name: name}, a, nil
}

// reader classifies the read errors of an open object.
type reader struct {
	r    *storage.Reader
	name string
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = &Error{Op: Read, Object: r.name, Err: err}
	}
	return n, err
}

func (r *reader) Close() error { return r.r.Close() }

// Upload is a create-once write whose content is streamed: Write as the bytes
// arrive, then Commit (the upload lands at Commit, not before) or Abort.
// Memory stays at the chunk size whatever the object's size.
type Upload struct {
	b      *Bucket
	name   string
	id     string
	c      *call
	w      *storage.Writer
	cancel context.CancelFunc
}

// NewUpload starts a create-once upload of name. chunkSize is the writer's
// buffer (a multiple of 256 KiB; rounded up): each chunk is one resumable
// request, retried on its own, and an object smaller than one chunk is sent
// in a single request. Zero sends the whole object in one request that
// cannot be retried.
func (b *Bucket) NewUpload(ctx context.Context, name string, m Meta, chunkSize int) *Upload {
	ctx, cancel := context.WithCancel(ctx)
	c := &call{}
	id := newWriteID()
	w := b.object(name, c).If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx)
	w.ContentType = m.ContentType
	w.CustomTime = m.CustomTime
	w.Metadata = map[string]string{WriteIDKey: id}
	w.ChunkSize = chunkSize
	return &Upload{b: b, name: name, id: id, c: c, w: w, cancel: cancel}
}

// Name is the object the upload writes.
func (u *Upload) Name() string { return u.name }

// Write streams p into the upload.
func (u *Upload) Write(p []byte) (int, error) {
	n, err := u.w.Write(p)
	if err != nil {
		err = &Error{Op: Write, Object: u.name, Err: err}
	}
	return n, err
}

// Commit finishes the upload: Won when this upload created the object, Lost
// when an object was there already.
func (u *Upload) Commit(ctx context.Context) (Result, error) {
	defer u.cancel()
	err := u.w.Close()
	if err == nil {
		return Result{Outcome: Won, Generation: u.w.Attrs().Generation}, nil
	}
	if !isPreconditionFailed(err) {
		return Result{}, &Error{Op: Write, Object: u.name, Err: err}
	}
	if !u.c.retried.Load() {
		return Result{Outcome: Lost}, nil
	}
	return u.b.settle(ctx, u.name, u.id, err)
}

// Abort gives the upload up: nothing is created (an upload lands only once
// it is committed).
func (u *Upload) Abort() {
	u.cancel()
	_ = u.w.Close() // reports the cancellation; there is nothing to keep
}

// CopyOnce copies src to dst unless dst exists already, on the server (no
// bytes pass through the caller): Won when this call created dst, Lost when
// another writer's object is there. dst gets m's content type and custom time.
func (b *Bucket) CopyOnce(ctx context.Context, src, dst string, m Meta) (Result, error) {
	c := &call{}
	id := newWriteID()
	cp := b.object(dst, c).If(storage.Conditions{DoesNotExist: true}).CopierFrom(b.h.Object(src))
	cp.ContentType = m.ContentType
	cp.CustomTime = m.CustomTime
	cp.Metadata = map[string]string{WriteIDKey: id}
	attrs, err := cp.Run(ctx)
	switch {
	case err == nil:
		return Result{Outcome: Won, Generation: attrs.Generation}, nil
	case errors.Is(err, storage.ErrObjectNotExist):
		return Result{}, &Error{Op: Write, Object: dst, Err: fmt.Errorf("copy from %s: %w", src, err)}
	case !isPreconditionFailed(err):
		return Result{}, &Error{Op: Write, Object: dst, Err: err}
	case !c.retried.Load():
		return Result{Outcome: Lost}, nil
	}
	return b.settle(ctx, dst, id, err)
}
