package submit

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/auth"
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
		s.writeBatch(w, r, m)
	})
}

// manifest loads the caller's batch named in the path. Anyone else's batch
// answers exactly like a missing one, so ids reveal nothing.
func (s *server) manifest(r *http.Request) (*ledger.Manifest, error) {
	id := r.PathValue("batchId")
	notFound := problem.New(problem.BatchNotFound, "no batch %q", id)
	if !batch.ValidID(id) {
		return nil, notFound
	}
	m, err := s.Store.Manifest(r.Context(), id)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, fmt.Errorf("submit: reading the batch: %w", err)
	}
	if p, _ := auth.From(r.Context()); p.UserID != m.Owner {
		return nil, notFound
	}
	return m, nil
}

// handleProgressToken mints a fresh progress token for the caller's batch: a
// browser whose stream URL expired gets a new one without resubmitting.
func (s *server) handleProgressToken() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, err := s.manifest(r)
		if err != nil {
			problem.Write(w, r, err)
			return
		}
		url, exp := s.progressURL(r, m)
		api.WriteJSON(w, http.StatusOK, api.NewProgressToken(url, exp))
	})
}
