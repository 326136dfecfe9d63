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
	var refused []refusal
	digests := map[string]string{}
	for i, u := range named {
		var pe *problem.Error
		switch {
		case errors.As(verdicts[i], &pe):
			refused = append(refused, refusal{url: u, pe: pe})
		case usable[i].SHA256 != "":
			digests[usable[i].Object] = usable[i].SHA256
		}
	}
	if len(refused) > 0 {
		return ctx, refusedRefs(refused, batch.RefLocator(req))
	}
	return refs.WithGrant(ctx, refs.Grant{Bucket: s.Bucket.Name(), Prefix: uploads.UserPrefix(user), SHA256: digests}), nil
}

// refusal is one reference a submit refuses, and why.
type refusal struct {
	url string
	pe  *problem.Error
}

// refusedRefs is one problem for every refused reference, each a field
// error at every place it was written, with the code of the first.
func refusedRefs(refused []refusal, locate func(string) []string) error {
	out := &problem.Error{Code: refused[0].pe.Code, Detail: refused[0].pe.Detail}
	if len(refused) > 1 {
		out.Detail = fmt.Sprintf("%d references could not be used", len(refused))
	}
	for _, r := range refused {
		for _, at := range locate(r.url) {
			out.Fields = append(out.Fields, problem.FieldError{Field: at, Code: string(r.pe.Code), Detail: r.pe.Detail})
		}
	}
	return out
}
