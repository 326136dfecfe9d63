package client

import (
	"context"
	"net/http"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/batch"
)

// Cancel stops a batch of the caller's (POST /batch/{id}/cancel): rows not
// started end at once, running rows after the variants they are making. The
// answer is the batch, with what the cancel leaves in its Cancel field.
func (c *Client) Cancel(ctx context.Context, batchID string) (api.Batch, error) {
	var out api.Batch
	err := c.do(ctx, http.MethodPost, c.Base+"/batch/"+batchID+"/cancel", nil, nil, &out)
	return out, err
}

// RetryOptions are a retry's settings.
type RetryOptions struct {
	// Confirm must be true for a live batch: a retry spends money like a
	// submit.
	Confirm bool
	// IdempotencyKey makes the retry safe to repeat: the same key answers
	// the same round.
	IdempotencyKey string
}

// Retry re-runs the failed and cancelled variants of a finished batch of the
// caller's (POST /batch/{id}/retry) as a new round under the same id. The
// answer is a submit's, with the round and its estimate; follow its
// ProgressURL as for a new batch.
func (c *Client) Retry(ctx context.Context, batchID string, o RetryOptions) (api.SubmitResponse, error) {
	var out api.SubmitResponse
	h := map[string]string{}
	if o.IdempotencyKey != "" {
		h["Idempotency-Key"] = o.IdempotencyKey
	}
	body := map[string]string{}
	if o.Confirm {
		body["confirm"] = batch.ConfirmWord
	}
	err := c.do(ctx, http.MethodPost, c.Base+"/batch/"+batchID+"/retry", body, h, &out)
	return out, err
}
