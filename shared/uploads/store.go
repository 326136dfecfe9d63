package uploads

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/problem"
	"github.com/assetgen/assetgen/shared/urls"
)

// pendingType is the content type of a placeholder: issued, not uploaded.
// An upload's PUT must send an image type, so it never carries this one.
const pendingType = "application/vnd.assetgen.upload-pending"

// Options configure Uploads.
type Options struct {
	// PerDay is how many uploads one user may start in any Lifetime
	// (UPLOADS_PER_USER_PER_DAY); zero means DefaultPerDay.
	PerDay int
	// MaxBytes caps an upload's size: the reference size cap.
	MaxBytes int64
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Uploads issues and checks the uploads of one bucket.
type Uploads struct {
	b      *bucket.Bucket
	signer *urls.Signer
	o      Options
}

// New returns the uploads of b, whose URLs signer signs (a signer of b).
func New(b *bucket.Bucket, signer *urls.Signer, o Options) *Uploads {
	if o.PerDay <= 0 {
		o.PerDay = DefaultPerDay
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Uploads{b: b, signer: signer, o: o}
}

// MaxBytes is the largest upload accepted.
func (u *Uploads) MaxBytes() int64 { return u.o.MaxBytes }

// Ref is the reference that names object in a batch.
func (u *Uploads) Ref(object string) string { return "gs://" + u.b.Name() + "/" + object }

// Issue counts user's uploads of the last Lifetime (RATE_LIMITED with
// Retry-After at the quota), writes the new upload's placeholder and signs
// the URL that replaces it with req's image. Uploads of one user issued at
// the same moment each count only those issued before: together they can
// pass the quota by their number. Costs one listing and one write.
func (u *Uploads) Issue(ctx context.Context, user string, req api.UploadRequest) (api.Upload, error) {
	now := u.o.Now().UTC()
	if err := u.checkQuota(ctx, user, now); err != nil {
		return api.Upload{}, err
	}
	object := UserPrefix(user) + newID(now)
	res, err := u.b.Create(ctx, object, nil, bucket.Meta{ContentType: pendingType})
	if err != nil {
		return api.Upload{}, fmt.Errorf("uploads: writing the placeholder: %w", err)
	}
	if res.Outcome != bucket.Won {
		// 128 random bits met an existing name: the id is not what it claims.
		return api.Upload{}, fmt.Errorf("uploads: placeholder %s exists already", object)
	}
	headers := map[string]string{
		HeaderLengthRange: "0," + strconv.FormatInt(req.Size, 10),
		HeaderGeneration:  strconv.FormatInt(res.Generation, 10),
	}
	if req.SHA256 != "" {
		headers[HeaderSHA256] = req.SHA256
	}
	signed, err := u.signer.SignUpload(object, urls.Upload{ContentType: req.ContentType, Headers: headers, TTL: URLTTL})
	if err != nil {
		return api.Upload{}, fmt.Errorf("uploads: %w", err)
	}
	headers[HeaderContentType] = req.ContentType
	return api.Upload{
		UploadURL: signed.URL, Method: "PUT", Headers: headers, Ref: u.Ref(object),
		ExpiresAt: signed.Expires, DeleteAfter: now.Add(Lifetime).Truncate(time.Millisecond),
	}, nil
}

// checkQuota lists user's uploads issued in the Lifetime before now, up to
// the quota: names sort by issue time, so the listing starts at the window
// and reads no more than the quota.
func (u *Uploads) checkQuota(ctx context.Context, user string, now time.Time) error {
	prefix := UserPrefix(user)
	// An upload issued Lifetime ago has expired: the window starts a
	// millisecond (the ids' resolution) later.
	q := bucket.Query{Prefix: prefix, StartOffset: prefix + now.Add(-Lifetime+time.Millisecond).Format(idTime)}
	n := 0
	var oldest time.Time
	for a, err := range u.b.List(ctx, q) {
		if err != nil {
			return fmt.Errorf("uploads: counting uploads: %w", err)
		}
		name, ok := Parse(a.Name)
		if !ok {
			continue
		}
		if n == 0 {
			oldest = name.Issued
		}
		if n++; n >= u.o.PerDay {
			break
		}
	}
	if n < u.o.PerDay {
		return nil
	}
	// The oldest upload in the window leaves it first, freeing one place.
	wait := oldest.Add(Lifetime).Sub(now)
	return &problem.Error{
		Code:       problem.RateLimited,
		RetryAfter: max(1, int(math.Ceil(wait.Seconds()))),
		Detail:     fmt.Sprintf("%d uploads were started in the last 24 hours, the most allowed; the next is possible after the Retry-After delay", n),
		Extra:      map[string]any{"maxUploadsPerDay": u.o.PerDay},
	}
}

// Usable is an upload a batch may name.
type Usable struct {
	Ref    string
	Object string
	// SHA256 is what the content must hash to, if one was declared.
	SHA256 string
}

// Check says whether user may name ref, a reference into this bucket, in a
// batch now. The error is a *problem.Error naming no field: REF_NOT_ALLOWED
// for anything but one of user's uploads (another user's is refused by its
// name alone, without a look at the bucket, so nothing tells whether it
// exists); REF_FETCH_FAILED for one of user's that expired, was never issued,
// or has not been PUT yet. A failed read is the storage adapter's error.
func (u *Uploads) Check(ctx context.Context, user, ref string) (Usable, error) {
	pu, err := url.Parse(ref)
	if err != nil || pu.Scheme != "gs" || pu.Host != u.b.Name() {
		return Usable{}, problem.New(problem.RefNotAllowed, "%s is not an upload of this deployment", ref)
	}
	name, ok := Parse(strings.TrimPrefix(pu.Path, "/"))
	if !ok || name.Prefix != UserPrefix(user) {
		return Usable{}, problem.New(problem.RefNotAllowed, "%s is not one of your uploads: name the ref POST /uploads answered you", ref)
	}
	if expired := name.Issued.Add(Lifetime); !u.o.Now().Before(expired) {
		return Usable{}, problem.New(problem.RefFetchFailed, "%s expired at %s; upload the image again", ref, expired.Format(time.RFC3339))
	}
	a, err := u.b.Stat(ctx, name.Object)
	switch {
	case errors.Is(err, bucket.ErrNotFound):
		return Usable{}, problem.New(problem.RefFetchFailed, "%s is no upload: it was never issued, or is gone", ref)
	case err != nil:
		return Usable{}, fmt.Errorf("uploads: reading %s: %w", name.Object, err)
	case a.ContentType == pendingType:
		return Usable{}, problem.New(problem.RefFetchFailed, "%s has not been uploaded yet: PUT the image to its uploadUrl first", ref)
	}
	return Usable{Ref: ref, Object: name.Object, SHA256: a.Metadata[metaSHA256]}, nil
}
