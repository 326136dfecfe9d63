package submit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/obs"
	"github.com/assetgen/assetgen/shared/problem"
	"github.com/assetgen/assetgen/shared/queue"
)

func (s *server) handleSubmit() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := s.submit(w, r)
		if err != nil {
			problem.Write(w, r, err)
			return
		}
		w.Header().Set("Location", resp.StatusURL)
		api.WriteJSON(w, http.StatusAccepted, resp)
	})
}

// submit runs the checks in their fixed order — decode, validate, confirm — and
// only then writes and enqueues. A failure after the first write rolls back.
func (s *server) submit(w http.ResponseWriter, r *http.Request) (api.SubmitResponse, error) {
	ctx := r.Context()
	body, err := api.ReadBody(w, r, api.MaxBody)
	if err != nil {
		return api.SubmitResponse{}, err
	}
	spec, req, err := s.validate(body)
	if err != nil {
		return api.SubmitResponse{}, err
	}
	if err := batch.CheckConfirm(req); err != nil {
		return api.SubmitResponse{}, err
	}
	if spec.RunMode == batch.Live && !s.cfg.LiveAvailable {
		return api.SubmitResponse{}, problem.New(problem.FeatureDisabled, "live generation is not configured on this deployment")
	}

	model, _ := s.cfg.Rules.Models.Lookup(spec.Model)
	m := &ledger.Manifest{
		Schema: 1, BatchID: batch.NewID(), RunMode: spec.RunMode, Model: model.Name,
		CreatedAt: s.now().UTC(), RequestID: obs.RequestID(ctx), PriceUSD: model.PriceUSD,
	}
	m.EstimateUSD = float64(spec.Images()) * model.PriceUSD
	for _, row := range spec.Rows {
		m.Rows = append(m.Rows, ledger.ManifestRow{
			Index: row.Index, ID: row.ID, Prompt: row.Prompt, Variants: row.Variants, AspectRatio: row.AspectRatio,
		})
	}

	if err := s.store.CreateManifest(ctx, m); err != nil {
		return api.SubmitResponse{}, problem.Wrap(problem.GCSWriteFailed, err, "recording the batch failed; nothing was queued")
	}
	if err := s.enqueue(ctx, m); err != nil {
		s.rollback(ctx, m.BatchID)
		return api.SubmitResponse{}, problem.Wrap(problem.TaskEnqueueFailed, err, "queueing the batch failed; nothing was kept")
	}
	obs.Logger(ctx).Info("submit: batch accepted", "batchId", m.BatchID, "rows", len(m.Rows), "images", m.Images(), "runMode", m.RunMode)
	return s.response(r, m), nil
}

// validate decodes and validates the body, reporting decoding and validation
// errors together.
func (s *server) validate(body []byte) (batch.Spec, batch.Request, error) {
	req, fieldErrs, err := batch.Decode(body)
	if err != nil {
		return batch.Spec{}, req, err
	}
	spec, err := batch.Validate(req, s.cfg.Rules)
	if len(fieldErrs) == 0 {
		return spec, req, err
	}
	var pe *problem.Error
	if errors.As(err, &pe) {
		fieldErrs = append(fieldErrs, pe.Fields...)
	}
	return batch.Spec{}, req, &problem.Error{
		Code: problem.ValidationFailed, Detail: fmt.Sprintf("%d field(s) are invalid", len(fieldErrs)), Fields: fieldErrs,
	}
}

// enqueue creates every row's task at once; names are deterministic, so a
// retried submit cannot queue a row twice.
func (s *server) enqueue(ctx context.Context, m *ledger.Manifest) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, row := range m.Rows {
		g.Go(func() error {
			return s.queue.Enqueue(gctx, queue.Task{BatchID: m.BatchID, Row: row.Index})
		})
	}
	return g.Wait()
}

// rollback deletes what a failed submit wrote. Tasks that did get queued find no
// manifest and are acknowledged without doing anything.
func (s *server) rollback(ctx context.Context, batchID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := s.store.DeleteBatch(ctx, batchID); err != nil {
		obs.Logger(ctx).Error("submit: rollback failed; the housekeeping job will remove the batch", "batchId", batchID, "error", err)
	}
}

func (s *server) response(r *http.Request, m *ledger.Manifest) api.SubmitResponse {
	base := s.cfg.PublicBaseURL
	if base == "" {
		base = origin(r)
	}
	progress := s.cfg.ProgressBaseURL
	if progress == "" {
		progress = base
	}
	resp := api.SubmitResponse{
		BatchID:     m.BatchID,
		Status:      ledger.Queued,
		StatusURL:   base + "/batch/" + m.BatchID,
		ProgressURL: progress + "/progress/" + m.BatchID,
		CreatedAt:   m.CreatedAt,
		Estimate: api.Estimate{
			Images: m.Images(), Model: m.Model, PricePerImageUSD: m.PriceUSD,
			CostUSD: m.EstimateUSD, Charged: m.RunMode == batch.Live,
		},
	}
	for _, row := range m.Rows {
		resp.Rows = append(resp.Rows, api.SubmitRow{Index: row.Index, ID: row.ID, Refs: len(row.Refs), DroppedRefs: row.DroppedRefs})
	}
	return resp
}

// origin is the scheme://host the client used, honouring the proxy headers
// Cloud Run and Cloud Functions set.
func origin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	}
	host := r.Host
	if strings.ContainsAny(host, "/\\ ") || host == "" {
		host = "localhost"
	}
	return scheme + "://" + host
}
