// Package batchzip writes a batch's download: a ZIP of every stored image,
// then manifest.json and results.csv, which say what the archive holds of
// each variant. It is written as a stream: images are opened one at a time
// and copied through a single buffer, so memory does not grow with the
// batch, and the archive is valid only once Write returns nil (the ZIP's
// central directory is its last bytes).
package batchzip

import (
	"archive/zip"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/ledger"
)

// Names of the archive's own entries.
const (
	ManifestFile = "manifest.json"
	ResultsFile  = "results.csv"
)

// ResultsHeader is results.csv's header line: one line follows per variant.
var ResultsHeader = []string{"row", "variant", "prompt", "status", "error_code", "link"}

// MaxSlug bounds the prompt's part of an image's name, in bytes.
const MaxSlug = 40

// Image is an opened stored image.
type Image struct {
	Body        io.ReadCloser
	ContentType string
	// Modified is when the image was stored; zero for unknown.
	Modified time.Time
}

// Opener opens a stored image by object name. ledger.ErrNotFound means it is
// gone: the archive records it as missing instead of failing.
type Opener func(ctx context.Context, object string) (Image, error)

// Batch is what an archive is built from: the manifest and the rows as read
// at one moment.
type Batch struct {
	Manifest *ledger.Manifest
	Rows     []ledger.Row
	// Link is a made image's stable link (absolute).
	Link func(row, variant int) string
	// At is when the rows were read.
	At time.Time
}

// Write streams b's archive to w. Images come first, stored as they are (they
// are compressed already); manifest.json and results.csv follow, deflated,
// so they can tell what the archive really holds. On an error the archive is
// left unfinished on purpose: without its central directory no reader takes
// it for a complete one.
func Write(ctx context.Context, w io.Writer, b Batch, open Opener) error {
	zw := zip.NewWriter(w)
	files := make([][]string, len(b.Rows))
	missing := make([][]bool, len(b.Rows))
	buf := make([]byte, 32<<10)
	for i, r := range b.Rows {
		files[i] = make([]string, len(r.Variants))
		missing[i] = make([]bool, len(r.Variants))
		for j, v := range r.Variants {
			if !made(v) {
				continue
			}
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("batchzip: %w", err)
			}
			name, err := copyImage(ctx, zw, open, v.Object, EntryName(i, j, b.Manifest.Rows[i].Prompt, ""), buf, b.At)
			if errors.Is(err, ledger.ErrNotFound) {
				missing[i][j] = true
				continue
			}
			if err != nil {
				return err
			}
			files[i][j] = name
		}
	}
	man := NewManifest(b, files, missing)
	if err := writeDeflated(zw, ManifestFile, b.At, func(fw io.Writer) error {
		enc := json.NewEncoder(fw)
		enc.SetIndent("", "  ")
		return enc.Encode(man)
	}); err != nil {
		return err
	}
	if err := writeDeflated(zw, ResultsFile, b.At, func(fw io.Writer) error { return WriteResults(fw, man) }); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("batchzip: finishing the archive: %w", err)
	}
	return nil
}

// made reports whether the variant has a stored image.
func made(v ledger.Variant) bool { return v.Status == ledger.Done && v.Object != "" }

// copyImage opens object and copies it into the archive under base plus its
// extension, returning the entry's name.
func copyImage(ctx context.Context, zw *zip.Writer, open Opener, object, base string, buf []byte, at time.Time) (string, error) {
	img, err := open(ctx, object)
	if err != nil {
		return "", fmt.Errorf("batchzip: opening %s: %w", object, err)
	}
	defer img.Body.Close()
	name := base + Ext(object, img.ContentType)
	mod := img.Modified
	if mod.IsZero() {
		mod = at
	}
	fw, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store, Modified: mod})
	if err != nil {
		return "", fmt.Errorf("batchzip: adding %s: %w", name, err)
	}
	if _, err := io.CopyBuffer(fw, img.Body, buf); err != nil {
		return "", fmt.Errorf("batchzip: copying %s: %w", object, err)
	}
	return name, nil
}

func writeDeflated(zw *zip.Writer, name string, at time.Time, fill func(io.Writer) error) error {
	fw, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: at})
	if err == nil {
		err = fill(fw)
	}
	if err != nil {
		return fmt.Errorf("batchzip: writing %s: %w", name, err)
	}
	return nil
}

// NewManifest is manifest.json's content: files[i][j] is the archive's file
// of row i's variant j ("" for none), missing[i][j] says a made image was
// gone when read.
func NewManifest(b Batch, files [][]string, missing [][]bool) api.ArchiveManifest {
	m := b.Manifest
	out := api.ArchiveManifest{
		BatchID: m.BatchID, CreatedAt: m.CreatedAt, RunMode: string(m.RunMode), Model: m.Model,
		Totals: api.NewTotals(b.Rows), ArchivedAt: b.At, Rows: make([]api.ArchiveRow, len(b.Rows)),
	}
	out.Complete = out.Status.Terminal()
	if !out.Complete {
		out.Note = fmt.Sprintf("The batch was still %s when this archive was built: it holds the images made by then (%d of %d). Download it again once the batch is finished for the rest.",
			out.Status, countFiles(files), m.Images())
	}
	for i, r := range b.Rows {
		mr := m.Rows[i]
		row := api.ArchiveRow{Index: i, ID: mr.ID, Prompt: mr.Prompt, Status: r.Status, Variants: make([]api.ArchiveVariant, len(r.Variants))}
		for j, v := range r.Variants {
			av := api.ArchiveVariant{Index: j, Status: v.Status, ErrorCode: errorCode(r, v)}
			if made(v) {
				av.File, av.Missing = files[i][j], missing[i][j]
				if b.Link != nil {
					av.Link = b.Link(i, j)
				}
			}
			row.Variants[j] = av
		}
		out.Rows[i] = row
	}
	return out
}

func countFiles(files [][]string) int {
	n := 0
	for _, row := range files {
		for _, f := range row {
			if f != "" {
				n++
			}
		}
	}
	return n
}

// errorCode is why a variant failed: its own failure, or its row's.
func errorCode(r ledger.Row, v ledger.Variant) string {
	switch {
	case v.Error != nil:
		return v.Error.Code
	case v.Status == ledger.Failed && r.Error != nil:
		return r.Error.Code
	}
	return ""
}

// WriteResults writes results.csv: the header, then one line per variant,
// made or not, in row and variant order.
func WriteResults(w io.Writer, m api.ArchiveManifest) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(ResultsHeader); err != nil {
		return err
	}
	for _, r := range m.Rows {
		for _, v := range r.Variants {
			line := []string{strconv.Itoa(r.Index), strconv.Itoa(v.Index), r.Prompt, string(v.Status), v.ErrorCode, v.Link}
			if err := cw.Write(line); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

// EntryName is an image's name in the archive: r{row}-v{variant}, then the
// prompt's slug when it has one, then ext (with its dot).
func EntryName(row, variant int, prompt, ext string) string {
	name := "r" + strconv.Itoa(row) + "-v" + strconv.Itoa(variant)
	if s := Slug(prompt); s != "" {
		name += "-" + s
	}
	return name + ext
}

// Slug is the prompt as a file name part: lowercase ASCII letters and digits
// joined by single dashes, at most MaxSlug bytes. Accents are dropped
// (é → e), apostrophes too (don't → dont); anything else separates words.
// A prompt with no ASCII letter or digit has no slug.
func Slug(prompt string) string {
	var b strings.Builder
	gap := false
	for _, r := range norm.NFKD.String(prompt) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case r >= 'A' && r <= 'Z':
			r += 'a' - 'A'
		case r == '\'' || r == '’' || unicode.Is(unicode.Mn, r):
			continue
		default:
			gap = b.Len() > 0
			continue
		}
		need := 1
		if gap {
			need = 2
		}
		if b.Len()+need > MaxSlug {
			break
		}
		if gap {
			b.WriteByte('-')
			gap = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Ext is an image's file extension, with its dot: from its content type, else
// from the object's name, else .bin.
func Ext(object, contentType string) string {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "image/png":
		return ".png"
	case "image/jpeg":
		return ".jpg"
	case "image/webp":
		return ".webp"
	}
	switch e := strings.ToLower(path.Ext(object)); e {
	case ".png", ".webp", ".jpg":
		return e
	case ".jpeg":
		return ".jpg"
	}
	return ".bin"
}
