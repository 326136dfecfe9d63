package client_test

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/client"
)

// An archive whose response ends cleanly but without the ZIP's end record
// (a server whose framework finished the response after a failure) is
// reported as incomplete, whatever the transport said.
func TestArchiveChecksTheEndRecord(t *testing.T) {
	is := is.New(t)
	var whole bytes.Buffer
	zw := zip.NewWriter(&whole)
	f, err := zw.Create("manifest.json")
	is.NoErr(err)
	_, err = f.Write([]byte(`{}`))
	is.NoErr(err)
	is.NoErr(zw.Close())

	for _, c := range []struct {
		name string
		body []byte
		want error
	}{
		{"whole", whole.Bytes(), nil},
		{"cut before the end record", whole.Bytes()[:whole.Len()-30], client.ErrIncompleteArchive},
		{"text after the archive", append(bytes.Clone(whole.Bytes()), "A panic occurred"...), client.ErrIncompleteArchive},
		{"empty", nil, client.ErrIncompleteArchive},
	} {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				is.Equal(r.URL.Path, "/batch/b1/archive")
				is.Equal(r.Header.Get("Authorization"), "Bearer tok") // the credential is sent
				w.Header().Set("Content-Type", "application/zip")
				_, _ = w.Write(c.body)
			}))
			defer srv.Close()
			cl := client.New(srv.URL)
			cl.Token = "tok"
			var got bytes.Buffer
			err := cl.Archive(context.Background(), "b1", &got)
			is.True(errors.Is(err, c.want))           // whole, or reported incomplete
			is.True(bytes.Equal(got.Bytes(), c.body)) // every byte is passed on as it comes
		})
	}
}

func TestArchiveAnswersProblems(t *testing.T) {
	is := is.New(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("Retry-After", "10")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"status":429,"code":"RATE_LIMITED","detail":"too many archives"}`))
	}))
	defer srv.Close()
	var got bytes.Buffer
	err := client.New(srv.URL).Archive(context.Background(), "b1", &got)
	var pe *client.ProblemError
	is.True(errors.As(err, &pe)) // a problem document
	is.Equal(pe.Status, http.StatusTooManyRequests)
	is.Equal(string(pe.Doc.Code), "RATE_LIMITED")
	is.Equal(got.Len(), 0) // nothing written
}
