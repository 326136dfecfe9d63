package submit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"golang.org/x/sync/errgroup"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/problem"
	"github.com/assetgen/assetgen/shared/refs"
	"github.com/assetgen/assetgen/shared/uploads"
)

// handleUpload is POST /uploads: a signed URL to PUT one reference image to,
// and the gs:// reference that names it in the caller's batches.
func (s *server) handleUpload() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.From(r.Context())
		body, err := api.ReadBody(w, r, uploads.MaxBody)
		if err != nil {
			problem.Write(w, r, err)
			return
		}
		req, err := uploads.Decode(body, s.uploads.MaxBytes())
		if err != nil {
			problem.Write(w, r, err)
			return
		}
		up, err := s.uploads.Issue(r.Context(), p.UserID, req)
		if err != nil {
			problem.Write(w, r, err)
			return
		}
		obs.Annotate(r.Context(), "upload", up.Ref)
		api.WriteJSON(w, http.StatusCreated, up)
	})
}

// uploadChecks is how many uploads a submit checks at once.
const uploadChecks = 8

// checkUploads refuses a batch that names, in the platform's bucket,
// anything but the caller's own uploads that are PUT and not expired, before
// anything is fetched: every such reference is a field error where it was
// written. It returns ctx granting the fetcher the caller's uploads, each
// held to the SHA-256 declared when it was issued.
func (s *server) checkUploads(ctx context.Context, req batch.Request, spec batch.Spec, user string) (context.Context, error) {
	var named []string
	seen := map[string]bool{}
	for _, row := range spec.Rows {
		for _, u := range row.RefURLs {
			if pu, err := url.Parse(u); err == nil && pu.Scheme == "gs" && pu.Host == s.Bucket.Name() && !seen[u] {
				seen[u] = true
				named = append(named, u)
			}
		}
	}
	if len(named) == 0 {
		return ctx, nil
	}
	usable := make([]uploads.Usable, len(named))
	verdicts := make([]error, len(named))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(uploadChecks)
	for i, u := range named {
		g.Go(func() error {
			usable[i], verdicts[i] = s.uploads.Check(gctx, user, u)
			var pe *problem.Error
			if verdicts[i] != nil && !errors.As(verdicts[i], &pe) {
				return verdicts[i] // the bucket failed, not the reference
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return ctx, err
	}
	locate := batch.RefLocator(req)
	var refused []refusal
	digests := map[string]string{}
	for i, u := range named {
		if verdicts[i] != nil {
			refused = append(refused, refusal{url: u, err: verdicts[i]})
		} else if usable[i].SHA256 != "" {
			digests[usable[i].Object] = usable[i].SHA256
		}
	}
	if err := refusedRefs(refused, locate); err != nil {
		return ctx, err
	}
	return refs.WithGrant(ctx, refs.Grant{Bucket: s.Bucket.Name(), Prefix: uploads.UserPrefix(user), SHA256: digests}), nil
}

// refusal is one reference a submit refuses.
type refusal struct {
	url string
	err error
}

// refusedRefs is one problem for every refused reference, each a field
// error at every place it was written, with the code of the first; nil when
// there are none.
func refusedRefs(refused []refusal, locate func(string) []string) error {
	if len(refused) == 0 {
		return nil
	}
	first := problem.CodeOf(refused[0].err)
	detail := refused[0].err.Error()
	var pe *problem.Error
	if errors.As(refused[0].err, &pe) {
		detail = pe.Detail
	}
	if len(refused) > 1 {
		detail = fmt.Sprintf("%d references could not be used", len(refused))
	}
	out := &problem.Error{Code: first, Detail: detail}
	for _, r := range refused {
		d := r.err.Error()
		if errors.As(r.err, &pe) {
			d = pe.Detail
		}
		for _, at := range locate(r.url) {
			out.Fields = append(out.Fields, problem.FieldError{Field: at, Code: string(problem.CodeOf(r.err)), Detail: d})
		}
	}
	return out
}
