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
// only from the allowed buckets and under the same size cap. The adapter
// retries reads by its own policy, so one deadline covers all the attempts the
// options would give an HTTP fetch.
func (f *Fetcher) readObject(ctx context.Context, u *url.URL) ([]byte, error) {
	bucketName, object := u.Host, strings.TrimPrefix(u.Path, "/")
	if !slices.Contains(f.o.Buckets, bucketName) {
		return nil, fail(problem.RefNotAllowed, nil, "names bucket %q, which is not allowed for references", bucketName)
	}
	if object == "" {
		return nil, fail(problem.RefNotAllowed, nil, "does not name an object")
	}
	if f.buckets == nil {
		return nil, fail(problem.RefFetchFailed, nil, "could not be read: gs:// references are not configured")
	}
	ctx, cancel := context.WithTimeout(ctx, f.o.Timeout*time.Duration(f.o.Retries+1))
	defer cancel()
	data, err := f.buckets.Bucket(bucketName).ReadLimited(ctx, object, f.o.MaxBytes)
	switch {
	case errors.Is(err, bucket.ErrNotFound):
		return nil, fail(problem.RefFetchFailed, err, "could not be read: no such object")
	case errors.Is(err, bucket.ErrTooLarge):
		return nil, fail(problem.RefTooLarge, nil, "is larger than %s", sizeText(f.o.MaxBytes))
	case err != nil:
		return nil, fail(problem.RefFetchFailed, err, "could not be read")
	}
	return data, nil
}
