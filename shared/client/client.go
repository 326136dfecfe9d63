// Package client is a Go client of the assetgen HTTP API: submit a batch, read
// its state, and follow its progress stream with automatic resume. The operator
// scripts use it; so can Go backends that drive assetgen.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/problem"
)

// Client talks to one deployment.
type Client struct {
	// Base is the submit function's origin, e.g. http://127.0.0.1:8080.
	Base string
	// HTTP is the client used (no timeout: progress streams are long).
	HTTP *http.Client
	// Token, when set, is sent as a bearer credential.
	Token string
}

// New returns a client for base.
func New(base string) *Client {
	return &Client{Base: strings.TrimRight(base, "/"), HTTP: &http.Client{}}
}

// ProblemError is a problem document answered by the API.
type ProblemError struct {
	Status int
	Doc    problem.Document
}

func (e *ProblemError) Error() string {
	return fmt.Sprintf("assetgen: %d %s: %s", e.Status, e.Doc.Code, e.Doc.Detail)
}

func (c *Client) do(ctx context.Context, method, url string, body any, headers map[string]string, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.authorize(req)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		pe := &ProblemError{Status: resp.StatusCode}
		_ = json.NewDecoder(resp.Body).Decode(&pe.Doc)
		return pe
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (c *Client) authorize(req *http.Request) {
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
}

// Submit posts a batch. idempotencyKey may be empty.
func (c *Client) Submit(ctx context.Context, req batch.Request, idempotencyKey string) (api.SubmitResponse, error) {
	var out api.SubmitResponse
	h := map[string]string{}
	if idempotencyKey != "" {
		h["Idempotency-Key"] = idempotencyKey
	}
	err := c.do(ctx, http.MethodPost, c.Base+"/batch/images", req, h, &out)
	return out, err
}

// Batch reads a batch's state.
func (c *Client) Batch(ctx context.Context, batchID string) (api.Batch, error) {
	var out api.Batch
	err := c.do(ctx, http.MethodGet, c.Base+"/batch/"+batchID, nil, nil, &out)
	return out, err
}

// ProgressToken mints a fresh progress URL for a batch of the caller's
// (GET /batch/{id}/progress-token), for a stream that outlives its token.
func (c *Client) ProgressToken(ctx context.Context, batchID string) (api.ProgressToken, error) {
	var out api.ProgressToken
	err := c.do(ctx, http.MethodGet, c.Base+"/batch/"+batchID+"/progress-token", nil, nil, &out)
	return out, err
}

// ErrFinished is returned by Follow when the batch was already finished when
// the stream opened (204) and the client had not seen anything yet.
var ErrFinished = errors.New("assetgen: batch already finished")

// Follow streams progressURL, calling fn for every row, batch and done event,
// until done. A dropped connection is resumed from the last event id, as a
// browser's EventSource would. It returns the last event id.
func (c *Client) Follow(ctx context.Context, progressURL, lastID string, fn func(Event) error) (string, error) {
	for attempt := 0; ; attempt++ {
		done, err := c.followOnce(ctx, progressURL, &lastID, fn)
		if done || ctx.Err() != nil {
			return lastID, err
		}
		var pe *ProblemError
		if errors.As(err, &pe) && pe.Status < 500 {
			return lastID, err
		}
		if attempt >= 20 {
			return lastID, fmt.Errorf("assetgen: stream kept failing: %w", err)
		}
		t := time.NewTimer(time.Duration(min(attempt+1, 10)) * 200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return lastID, ctx.Err()
		case <-t.C:
		}
	}
}

func (c *Client) followOnce(ctx context.Context, url string, lastID *string, fn func(Event) error) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return true, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if *lastID != "" {
		req.Header.Set("Last-Event-ID", *lastID)
	}
	c.authorize(req)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNoContent:
		if *lastID == "" {
			return true, ErrFinished
		}
		return true, nil
	case resp.StatusCode != http.StatusOK:
		pe := &ProblemError{Status: resp.StatusCode}
		_ = json.NewDecoder(resp.Body).Decode(&pe.Doc)
		return false, pe
	}
	events := NewEventReader(resp.Body, *lastID)
	for {
		ev, err := events.Next()
		if errors.Is(err, io.EOF) {
			return false, io.ErrUnexpectedEOF // the stream ended before done
		}
		if err != nil {
			return false, err
		}
		*lastID = ev.LastID
		switch ev.Type {
		case "row", "batch", "done":
			if err := fn(ev); err != nil {
				return true, err
			}
		}
		if ev.Type == "done" {
			return true, nil
		}
	}
}
