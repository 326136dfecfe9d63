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

// grantKey is the context key of a Grant.
type grantKey struct{}

// Grant lets the references resolved under a context read the objects
// under Prefix in Bucket, a private bucket (Options.Private).
type Grant struct {
	Bucket string
	Prefix string
	// SHA256 maps objects to the digest their content must have: a content
	// that hashes otherwise fails the reference (REF_FETCH_FAILED), before
	// anything of it is kept.
	SHA256 map[string]string
}

// WithGrant returns ctx granting g to the fetches made under it: a submit
// grants its caller's own uploads, and no one else's.
func WithGrant(ctx context.Context, g Grant) context.Context {
	return context.WithValue(ctx, grantKey{}, g)
}

// granted reports whether ctx grants reading object in bucket.
func granted(ctx context.Context, bucketName, object string) bool {
	g, ok := ctx.Value(grantKey{}).(Grant)
	return ok && g.Prefix != "" && g.Bucket == bucketName && strings.HasPrefix(object, g.Prefix)
}

// expected is the digest ctx's grant wants object's content to have, if any.
func expected(ctx context.Context, bucketName, object string) string {
	g, ok := ctx.Value(grantKey{}).(Grant)
	if !ok || g.Bucket != bucketName {
		return ""
	}
	return g.SHA256[object]
}

// readObject reads a gs://bucket/object reference through the storage adapter,
// only from the allowed buckets (from a private one only what the context
// grants) and under the same size cap and limits. The adapter retries reads
// by its own policy, so one deadline covers all the attempts the options
// would give an HTTP fetch.
func (f *Fetcher) readObject(ctx context.Context, u *url.URL, open opener) (Image, error) {
	bucketName, object := u.Host, strings.TrimPrefix(u.Path, "/")
	switch {
	case slices.Contains(f.o.Private, bucketName):
		if !granted(ctx, bucketName, object) {
			return Image{}, fail(problem.RefNotAllowed, nil, "names an object of bucket %q that this request may not read", bucketName)
		}
	case !slices.Contains(f.o.Buckets, bucketName):
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
	if want := expected(ctx, bucketName, object); want != "" && want != img.SHA256 {
		// What was staged is deleted with the failed resolve.
		return Image{}, fail(problem.RefFetchFailed, nil, "does not hash to the SHA-256 declared when it was uploaded")
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
