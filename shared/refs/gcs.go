package refs

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/problem"
)

// readObject reads a gs://bucket/object reference through the storage adapter,
// only from the allowed buckets and under the same size cap and limits. The
// adapter retries reads by its own policy, so one deadline covers all the
// attempts the options would give an HTTP fetch.
func (f *Fetcher) readObject(ctx context.Context, u *url.URL, open opener) (Image, error) {
	bucketName, object := u.Host, strings.TrimPrefix(u.Path, "/")
	if !slices.Contains(f.o.Buckets, bucketName) {
		return Image{}, fail(problem.RefNotAllowed, nil, "names bucket %q, which is not allowed for references", bucketName)
	}
	if object == "" {
		return Image{}, fail(problem.RefNotAllowed, nil, "does not name an object")
	}
	if f.buckets == nil {
		return Image{}, fail(problem.RefFetchFailed, nil, "could not be read: gs:// references are not configured")
	}
	res, err := f.lim.reserve(ctx, f.o.MaxBytes)
	if err != nil {
		return Image{}, late(ctx, err)
	}
	defer res.release()
	octx, cancel := context.WithTimeout(ctx, f.o.Timeout*time.Duration(f.o.Retries+1))
	defer cancel()
	r, size, err := f.buckets.Bucket(bucketName).Open(octx, object)
	switch {
	case errors.Is(err, bucket.ErrNotFound):
		return Image{}, fail(problem.RefFetchFailed, err, "could not be read: no such object")
	case err != nil:
		return Image{}, f.unreadable(ctx, err)
	case size > f.o.MaxBytes:
		_ = r.Close()
		return Image{}, fail(problem.RefTooLarge, nil, "is larger than %s", sizeText(f.o.MaxBytes))
	}
	defer r.Close()
	res.shrink(size)
	img, err := f.consume(octx, r, open)
	if err != nil {
		return Image{}, f.unreadable(ctx, err)
	}
	return img, nil
}

// unreadable is a failed object read as the user sees it; verdicts on the
// content and failures to store it pass through.
func (f *Fetcher) unreadable(ctx context.Context, err error) error {
	var (
		fl *failure
		se *storeError
	)
	if errors.As(err, &fl) || errors.As(err, &se) {
		return err
	}
	if err = late(ctx, err); errors.As(err, new(*lateError)) {
		return describe(err, 1, f.o)
	}
	return fail(problem.RefFetchFailed, err, "could not be read")
}
