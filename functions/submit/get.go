package submit

import (
	"errors"
	"net/http"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/problem"
)

// handleGet answers the batch's current state, with freshly signed URLs.
func (s *server) handleGet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, err := s.manifest(r)
		if err != nil {
			problem.Write(w, r, err)
			return
		}
		rows, err := s.Store.Rows(r.Context(), m)
		if err != nil {
			problem.Write(w, r, err)
			return
		}
		b, err := api.NewBatch(m, rows, s.Signer.Sign)
		if err != nil {
			problem.Write(w, r, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, b)
	})
}

// manifest loads the batch named in the path, or answers BATCH_NOT_FOUND.
func (s *server) manifest(r *http.Request) (*ledger.Manifest, error) {
	id := r.PathValue("batchId")
	if !batch.ValidID(id) {
		return nil, problem.New(problem.BatchNotFound, "no batch %q", id)
	}
	m, err := s.Store.Manifest(r.Context(), id)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, problem.New(problem.BatchNotFound, "no batch %q", id)
	}
	return m, err
}
