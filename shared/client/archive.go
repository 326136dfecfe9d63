package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// ErrIncompleteArchive means an archive download ended before the ZIP's end
// record: the server stopped mid-stream. What was written is no usable
// archive; download it again.
var ErrIncompleteArchive = errors.New("assetgen: the archive ended before its end record")

// endRecord is the ZIP end-of-central-directory record without a comment:
// the archive's last 22 bytes, starting with its signature.
const endRecord = 22

// Archive downloads a batch's ZIP (GET /batch/{id}/archive) into w as it
// streams: its images, manifest.json and results.csv. The download is whole
// only when Archive returns nil; a stream cut short, however the connection
// ended, is ErrIncompleteArchive.
func (c *Client) Archive(ctx context.Context, batchID string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+"/batch/"+batchID+"/archive", nil)
	if err != nil {
		return err
	}
	c.authorize(req)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		pe := &ProblemError{Status: resp.StatusCode}
		_ = json.NewDecoder(resp.Body).Decode(&pe.Doc)
		return pe
	}
	t := &tail{}
	if _, err := io.Copy(io.MultiWriter(w, t), resp.Body); err != nil {
		return fmt.Errorf("%w: %w", ErrIncompleteArchive, err)
	}
	if !t.endsArchive() {
		return ErrIncompleteArchive
	}
	return nil
}

// tail keeps the last bytes written through it.
type tail struct{ last []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.last = append(t.last, p...)
	if over := len(t.last) - endRecord; over > 0 {
		t.last = append(t.last[:0], t.last[over:]...)
	}
	return len(p), nil
}

// endsArchive reports whether the bytes end with an end record that has no
// comment (the server writes none).
func (t *tail) endsArchive() bool {
	return len(t.last) == endRecord && bytes.HasPrefix(t.last, []byte("PK\x05\x06")) && t.last[20] == 0 && t.last[21] == 0
}
