package refs

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/storage"

	"github.com/assetgen/assetgen/shared/problem"
)

// readObject reads a gs://bucket/object reference through the storage client,
// only from the allowed buckets and under the same size cap. The client retries
// reads by its own policy, so one deadline covers all the attempts the options
// would give an HTTP fetch.
func (f *Fetcher) readObject(ctx context.Context, u *url.URL) ([]byte, error) {
	bucket, object := u.Host, strings.TrimPrefix(u.Path, "/")
	if !slices.Contains(f.o.Buckets, bucket) {
		return nil, fail(problem.RefNotAllowed, nil, "names bucket %q, which is not allowed for references", bucket)
	}
	if object == "" {
		return nil, fail(problem.RefNotAllowed, nil, "does not name an object")
	}
	if f.sc == nil {
		return nil, fail(problem.RefFetchFailed, nil, "could not be read: gs:// references are not configured")
	}
	ctx, cancel := context.WithTimeout(ctx, f.o.Timeout*time.Duration(f.o.Retries+1))
	defer cancel()
	r, err := f.sc.Bucket(bucket).Object(object).NewReader(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return nil, fail(problem.RefFetchFailed, err, "could not be read: no such object")
	}
	if err != nil {
		return nil, fail(problem.RefFetchFailed, err, "could not be read")
	}
	defer r.Close()
	if r.Attrs.Size > f.o.MaxBytes {
		return nil, fail(problem.RefTooLarge, nil, "is larger than %s", sizeText(f.o.MaxBytes))
	}
	data, err := readCapped(r, f.o.MaxBytes)
	var fl *failure
	if errors.As(err, &fl) {
		return nil, err
	}
	if err != nil {
		return nil, fail(problem.RefFetchFailed, err, "could not be read")
	}
	return data, nil
}
