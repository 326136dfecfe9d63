package client

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/assetgen/assetgen/shared/api"
)

// UploadError is a PUT to a signed upload URL that Cloud Storage refused
// (its answer is XML, not a problem document).
type UploadError struct {
	Status int
	Body   string
}

func (e *UploadError) Error() string {
	return fmt.Sprintf("assetgen: upload refused by storage: %d %s", e.Status, e.Body)
}

// Upload stores a reference image of contentType (image/png, image/jpeg or
// image/webp) and size bytes read from r, and returns the gs:// reference
// that names it in the caller's batches for a day. It asks for a signed URL
// (POST /uploads), then PUTs the bytes to it with the headers the URL binds.
func (c *Client) Upload(ctx context.Context, contentType string, r io.Reader, size int64) (ref string, err error) {
	up, err := c.NewUpload(ctx, api.UploadRequest{ContentType: contentType, Size: size})
	if err != nil {
		return "", err
	}
	if err := c.PutUpload(ctx, up, r, size); err != nil {
		return "", err
	}
	return up.Ref, nil
}

// NewUpload asks for a signed upload URL (POST /uploads): the first half of
// Upload, for callers that declare a SHA-256 or PUT the bytes themselves.
func (c *Client) NewUpload(ctx context.Context, req api.UploadRequest) (api.Upload, error) {
	var out api.Upload
	err := c.do(ctx, http.MethodPost, c.Base+"/uploads", req, nil, &out)
	return out, err
}

// PutUpload PUTs size bytes from r to up's signed URL with the headers it
// binds. The URL goes to Cloud Storage, not to the API: no credential is
// sent with it.
func (c *Client) PutUpload(ctx context.Context, up api.Upload, r io.Reader, size int64) error {
	req, err := http.NewRequestWithContext(ctx, up.Method, up.UploadURL, r)
	if err != nil {
		return fmt.Errorf("assetgen: upload: %w", err)
	}
	req.ContentLength = size
	for k, v := range up.Headers {
		req.Header.Set(k, v)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("assetgen: upload: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return &UploadError{Status: resp.StatusCode, Body: string(b)}
	}
	return nil
}
