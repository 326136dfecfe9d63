package client

import (
	"context"
	"net/http"

	"github.com/assetgen/assetgen/shared/api"
)

// Models reads what a batch may ask for (GET /models): each model's prices
// per size, reference limit, aspect ratios, sizes, formats, seed support and
// whether this deployment runs it live.
func (c *Client) Models(ctx context.Context) (api.Models, error) {
	var out api.Models
	err := c.do(ctx, http.MethodGet, c.Base+"/models", nil, nil, &out)
	return out, err
}
