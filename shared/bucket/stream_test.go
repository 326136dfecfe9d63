package bucket_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/bucket"
)

func TestUploadStreamsCreateOnce(t *testing.T) {
	is := is.New(t)
	b := open(t, nil, fast)
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB, four chunks

	up := b.NewUpload(ctx, "s/one.bin", bucket.Meta{ContentType: "image/png"}, 256<<10)
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 100_000)
		_, err := up.Write(rest[:n])
		is.NoErr(err) // streamed
		rest = rest[n:]
	}
	res, err := up.Commit(ctx)
	is.NoErr(err)                     // committed
	is.Equal(res.Outcome, bucket.Won) // created
	got, err := b.ReadBytes(ctx, "s/one.bin")
	is.NoErr(err)
	is.True(bytes.Equal(got, data)) // the very bytes, across chunks
	a, err := b.Stat(ctx, "s/one.bin")
	is.NoErr(err)
	is.Equal(a.ContentType, "image/png") // the content type given

	again := b.NewUpload(ctx, "s/one.bin", bucket.Meta{}, 256<<10)
	_, err = again.Write([]byte("other"))
	is.NoErr(err)
	res, err = again.Commit(ctx)
	is.NoErr(err)                      // a create-once that finds the object is no error
	is.Equal(res.Outcome, bucket.Lost) // it lost
	got, err = b.ReadBytes(ctx, "s/one.bin")
	is.NoErr(err)
	is.True(bytes.Equal(got, data)) // the first content stays

	gone := b.NewUpload(ctx, "s/aborted.bin", bucket.Meta{}, 256<<10)
	_, err = gone.Write(data)
	is.NoErr(err)
	gone.Abort()
	ok, err := b.Exists(ctx, "s/aborted.bin")
	is.NoErr(err)
	is.True(!ok) // an aborted upload creates nothing
}

// The emulator applies neither preconditions nor custom time to copies, so
// only what it does implement is checked here: content, content type, write id.
func TestCopyOnce(t *testing.T) {
	is := is.New(t)
	b := open(t, nil, fast)
	ctx := context.Background()
	_, err := b.Create(ctx, "s/src", []byte("picture"), bucket.Meta{ContentType: "application/octet-stream"})
	is.NoErr(err)

	res, err := b.CopyOnce(ctx, "s/src", "d/dst", bucket.Meta{ContentType: "image/png", CustomTime: time.Now()})
	is.NoErr(err)                     // copied
	is.Equal(res.Outcome, bucket.Won) // created
	got, err := b.ReadBytes(ctx, "d/dst")
	is.NoErr(err)
	is.Equal(string(got), "picture") // same content
	a, err := b.Stat(ctx, "d/dst")
	is.NoErr(err)
	is.Equal(a.ContentType, "image/png") // the destination's content type
	src, err := b.Stat(ctx, "s/src")
	is.NoErr(err)
	is.True(a.Metadata[bucket.WriteIDKey] != src.Metadata[bucket.WriteIDKey]) // tagged with its own write id

	_, err = b.CopyOnce(ctx, "s/none", "d/x", bucket.Meta{})
	var be *bucket.Error
	is.True(errors.As(err, &be)) // a missing source is a failed write
}

func TestOpenStreams(t *testing.T) {
	is := is.New(t)
	b := open(t, nil, fast)
	ctx := context.Background()
	_, err := b.Create(ctx, "s/o", []byte("streamed content"), bucket.Meta{})
	is.NoErr(err)
	r, size, err := b.Open(ctx, "s/o")
	is.NoErr(err)             // opened
	is.Equal(size, int64(16)) // its size, before reading
	got, err := io.ReadAll(r)
	is.NoErr(err)
	is.NoErr(r.Close())
	is.Equal(string(got), "streamed content")

	_, _, err = b.Open(ctx, "s/none")
	is.True(errors.Is(err, bucket.ErrNotFound)) // missing
}

func TestOpenObjectAnswersItsAttributes(t *testing.T) {
	is := is.New(t)
	b := open(t, nil, fast)
	ctx := context.Background()
	res, err := b.Create(ctx, "s/img.webp", []byte("RIFF....WEBP"), bucket.Meta{ContentType: "image/webp"})
	is.NoErr(err)
	r, a, err := b.OpenObject(ctx, "s/img.webp")
	is.NoErr(err) // opened
	defer r.Close()
	is.Equal(a.Name, "s/img.webp")
	is.Equal(a.Size, int64(12))            // its size
	is.Equal(a.ContentType, "image/webp")  // its content type, from the read itself
	is.Equal(a.Generation, res.Generation) // the generation read
	is.True(!a.Updated.IsZero())           // when it was written
	got, err := io.ReadAll(r)
	is.NoErr(err)
	is.Equal(string(got), "RIFF....WEBP") // its content

	_, _, err = b.OpenObject(ctx, "s/none")
	is.True(errors.Is(err, bucket.ErrNotFound)) // missing
}
