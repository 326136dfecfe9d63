package submit

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/problem"
)

// handleAsset is the stable link of one image: it answers 302 to a freshly
// signed URL, so a link kept in a spreadsheet or a CMS works as long as the
// image is retained, while signed URLs live minutes. The link carries its own
// token (or the batch's progress token); without one, the owner's credential.
func (s *server) handleAsset() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("batchId")
		notFound := problem.New(problem.BatchNotFound, "no batch %q", id)
		row, err1 := strconv.Atoi(r.PathValue("row"))
		variant, err2 := strconv.Atoi(r.PathValue("variant"))
		if !batch.ValidID(id) || err1 != nil || err2 != nil || row < 0 || variant < 0 {
			problem.Write(w, r, notFound)
			return
		}
		var p auth.Principal
		var err error
		if tok := r.URL.Query().Get("token"); tok != "" {
			p, err = s.Tokens.VerifyAsset(tok, id, row, variant)
		} else {
			p, err = s.Auth.Authenticate(r)
		}
		if err != nil {
			problem.Write(w, r, err)
			return
		}
		m, err := s.Store.Manifest(r.Context(), id)
		if errors.Is(err, ledger.ErrNotFound) || (err == nil && m.Owner != p.UserID) {
			problem.Write(w, r, notFound)
			return
		}
		if err != nil {
			problem.Write(w, r, fmt.Errorf("submit: reading the batch: %w", err))
			return
		}
		if row >= len(m.Rows) || variant >= m.Rows[row].Variants {
			problem.Write(w, r, problem.New(problem.NotFound, "batch %s has no row %d variant %d", id, row, variant))
			return
		}
		state, _, err := s.Store.ReadRow(r.Context(), m, row)
		if err != nil {
			problem.Write(w, r, fmt.Errorf("submit: reading the row: %w", err))
			return
		}
		v := state.Variants[variant]
		if v.Status != ledger.Done || v.Object == "" {
			problem.Write(w, r, problem.New(problem.NotFound, "the image is not made (yet): the variant is %s", v.Status))
			return
		}
		signed, err := s.Signer.Sign(v.Object)
		if err != nil {
			problem.Write(w, r, err)
			return
		}
		w.Header().Set("Cache-Control", "private, no-store")
		http.Redirect(w, r, signed.URL, http.StatusFound)
	})
}

// assetLink is an image's stable link, valid as long as images are retained.
func (s *server) assetLink(r *http.Request, m *ledger.Manifest, row, variant int) string {
	tok := s.Tokens.MintAsset(m.BatchID, m.Owner, row, variant, s.cfg.AssetLinkTTL)
	return fmt.Sprintf("%s/assets/%s/%d/%d?token=%s", s.publicBase(r), m.BatchID, row, variant, tok)
}

// addLinks puts a stable link on every made image of b.
func (s *server) addLinks(r *http.Request, m *ledger.Manifest, b *api.Batch) {
	for i := range b.Rows {
		for j := range b.Rows[i].Variants {
			if v := &b.Rows[i].Variants[j]; v.URL != "" {
				v.Link = s.assetLink(r, m, i, j)
			}
		}
	}
}
