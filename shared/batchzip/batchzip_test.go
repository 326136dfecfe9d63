package batchzip_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/batchzip"
	"github.com/assetgen/assetgen/shared/ledger"
)

func TestSlug(t *testing.T) {
	for _, c := range []struct{ prompt, want string }{
		{"A red fox", "a-red-fox"},
		{"  leading and trailing  ", "leading-and-trailing"},
		{"Crème brûlée, café", "creme-brulee-cafe"},
		{"don't stop", "dont-stop"},
		{"it’s fine", "its-fine"},
		{`a/b\c "quoted" <tag>`, "a-b-c-quoted-tag"},
		{"../../etc/passwd", "etc-passwd"},
		{"日本の猫", ""},
		{"猫 cat 猫", "cat"},
		{"ＦＵＬＬ ｗｉｄｔｈ ２", "full-width-2"},
		{"", ""},
		{"---", ""},
		{"emoji 🦊 fox", "emoji-fox"},
		{strings.Repeat("abcdefghij ", 10), "abcdefghij-abcdefghij-abcdefghij-abcdefg"},
		{strings.Repeat("x", 100), strings.Repeat("x", 40)},
		// A word boundary at the limit leaves no dangling dash.
		{strings.Repeat("y", 39) + " z", strings.Repeat("y", 39)},
	} {
		t.Run(c.prompt, func(t *testing.T) {
			is := is.New(t)
			got := batchzip.Slug(c.prompt)
			is.Equal(got, c.want)                 // the slug
			is.True(len(got) <= batchzip.MaxSlug) // bounded
		})
	}
}

func TestEntryNameAndExt(t *testing.T) {
	for _, c := range []struct {
		row, variant     int
		prompt, ext      string
		object, ctype    string
		wantExt, wantAll string
	}{
		{0, 0, "A red fox", "", "batches/x/images/r00-v0.png", "image/png", ".png", "r0-v0-a-red-fox.png"},
		{9, 2, "猫", "", "batches/x/images/r09-v2.jpg", "image/jpeg", ".jpg", "r9-v2.jpg"},
		{1, 1, "x", "", "batches/x/images/r01-v1.png", "image/webp", ".webp", "r1-v1-x.webp"},
		{1, 0, "x", "", "batches/x/images/r01-v0.JPEG", "", ".jpg", "r1-v0-x.jpg"},
		{1, 0, "x", "", "batches/x/images/r01-v0.webp", "application/octet-stream", ".webp", "r1-v0-x.webp"},
		{1, 0, "x", "", "batches/x/images/r01-v0", "", ".bin", "r1-v0-x.bin"},
		{1, 0, "x", "", "o.png", "image/png; charset=binary", ".png", "r1-v0-x.png"},
	} {
		t.Run(c.wantAll, func(t *testing.T) {
			is := is.New(t)
			ext := batchzip.Ext(c.object, c.ctype)
			is.Equal(ext, c.wantExt)                                                 // the extension
			is.Equal(batchzip.EntryName(c.row, c.variant, c.prompt, ext), c.wantAll) // the entry's name
		})
	}
}

// memory serves images from a map; a name in fail answers that error.
type memory struct {
	images map[string][]byte
	fail   map[string]error
	opened []string
}

func (m *memory) open(_ context.Context, object string) (batchzip.Image, error) {
	m.opened = append(m.opened, object)
	if err := m.fail[object]; err != nil {
		return batchzip.Image{}, err
	}
	b, ok := m.images[object]
	if !ok {
		return batchzip.Image{}, ledger.ErrNotFound
	}
	return batchzip.Image{Body: io.NopCloser(bytes.NewReader(b)), ContentType: "image/png", Modified: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, nil
}

// sample is a two-row batch: row 0 made two images, the second of which is
// gone; row 1 has a failed and a cancelled variant.
func sample() (batchzip.Batch, *memory) {
	id := "0190b6a4-7c3e-7d2a-8b1e-3f5a6c7d8e9f"
	m := &ledger.Manifest{BatchID: id, RunMode: ledger.DryRun, Model: "m", CreatedAt: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC),
		Rows: []ledger.ManifestRow{{Index: 0, Prompt: "Fox, \"red\"", Variants: 2}, {Index: 1, ID: "b", Prompt: "=cmd\nline", Variants: 2}}}
	img0 := ledger.ImageObject(id, 0, 0, ".png")
	img1 := ledger.ImageObject(id, 0, 1, ".png")
	rows := []ledger.Row{
		{Index: 0, Status: ledger.Done, Variants: []ledger.Variant{{Status: ledger.Done, Object: img0}, {Status: ledger.Done, Object: img1}}},
		{Index: 1, Status: ledger.Failed, Error: &ledger.Failure{Code: "MODEL_FAILED"}, Variants: []ledger.Variant{
			{Status: ledger.Failed, Error: &ledger.Failure{Code: "MODEL_SAFETY_BLOCKED"}}, {Status: ledger.Failed}}},
	}
	b := batchzip.Batch{Manifest: m, Rows: rows, At: time.Date(2026, 1, 2, 5, 0, 0, 0, time.UTC),
		Link: func(r, v int) string { return fmt.Sprintf("https://x.test/assets/%s/%d/%d?token=t", id, r, v) }}
	return b, &memory{images: map[string][]byte{img0: []byte("png zero")}}
}

func TestWriteRecordsEveryVariant(t *testing.T) {
	is := is.New(t)
	b, mem := sample()
	var out bytes.Buffer
	is.NoErr(batchzip.Write(context.Background(), &out, b, mem.open)) // written
	zr, err := zip.NewReader(bytes.NewReader(out.Bytes()), int64(out.Len()))
	is.NoErr(err) // a valid archive
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	is.Equal(names, []string{"r0-v0-fox-red.png", "manifest.json", "results.csv"})  // the image there is, then the records
	is.Equal(zr.File[0].Method, zip.Store)                                          // images are stored as they are
	is.Equal(zr.File[1].Method, zip.Deflate)                                        // the records are compressed
	is.True(zr.File[0].Modified.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))) // dated when stored

	var raw map[string]any
	is.NoErr(json.Unmarshal(read(t, zr, "manifest.json"), &raw))
	is.Equal(raw["rowCounts"], map[string]any{"queued": 0.0, "running": 0.0, "done": 1.0, "failed": 1.0, "cancelled": 0.0}) // the batch's counts
	var man api.ArchiveManifest
	is.NoErr(json.Unmarshal(read(t, zr, "manifest.json"), &man))
	is.True(man.Complete)             // every row is final
	is.Equal(man.Note, "")            // nothing to warn about
	is.Equal(man.Status, ledger.Done) // at least one image made
	v := man.Rows[0].Variants
	is.Equal(v[0].File, "r0-v0-fox-red.png")
	is.True(!v[0].Missing)
	is.Equal(v[1].File, "")  // gone from the bucket
	is.True(v[1].Missing)    // and said so
	is.True(v[1].Link != "") // the link still stands for it
	failed := man.Rows[1].Variants
	is.Equal(failed[0].ErrorCode, "MODEL_SAFETY_BLOCKED") // the variant's own failure
	is.Equal(failed[1].ErrorCode, "MODEL_FAILED")         // else the row's
	is.Equal(failed[0].Link, "")                          // no image, no link

	lines, err := csv.NewReader(bytes.NewReader(read(t, zr, "results.csv"))).ReadAll()
	is.NoErr(err) // valid CSV
	is.Equal(lines[0], batchzip.ResultsHeader)
	is.Equal(len(lines), 5)               // one line per variant
	is.Equal(lines[1][2], "Fox, \"red\"") // quotes and commas survive
	is.Equal(lines[3][2], "=cmd\nline")   // so do newlines
	is.Equal(lines[3][3:], []string{"failed", "MODEL_SAFETY_BLOCKED", ""})
	is.Equal(lines[1][5], "https://x.test/assets/0190b6a4-7c3e-7d2a-8b1e-3f5a6c7d8e9f/0/0?token=t")
}

func TestRunningBatchSaysItIsIncomplete(t *testing.T) {
	is := is.New(t)
	b, mem := sample()
	b.Rows[1] = ledger.Row{Index: 1, Status: ledger.Running, Variants: []ledger.Variant{{Status: ledger.Running}, {Status: ledger.Queued}}}
	var out bytes.Buffer
	is.NoErr(batchzip.Write(context.Background(), &out, b, mem.open))
	zr, err := zip.NewReader(bytes.NewReader(out.Bytes()), int64(out.Len()))
	is.NoErr(err)
	var man api.ArchiveManifest
	is.NoErr(json.Unmarshal(read(t, zr, "manifest.json"), &man))
	is.True(!man.Complete)                                              // the batch runs
	is.Equal(man.Status, ledger.Running)                                // and says so
	is.True(strings.Contains(man.Note, "images made by then (1 of 4)")) // what the archive holds of the batch
}

func TestFailedReadLeavesNoValidArchive(t *testing.T) {
	is := is.New(t)
	b, mem := sample()
	boom := errors.New("storage down")
	mem.fail = map[string]error{b.Rows[0].Variants[1].Object: boom}
	var out bytes.Buffer
	err := batchzip.Write(context.Background(), &out, b, mem.open)
	is.True(errors.Is(err, boom)) // the failure is returned
	_, err = zip.NewReader(bytes.NewReader(out.Bytes()), int64(out.Len()))
	is.True(err != nil) // what was written is no archive
}

func TestCancelledWriteStops(t *testing.T) {
	is := is.New(t)
	b, mem := sample()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := batchzip.Write(ctx, io.Discard, b, mem.open)
	is.True(errors.Is(err, context.Canceled)) // a gone client stops the work
	is.Equal(len(mem.opened), 0)              // before any image is read
}

func read(t *testing.T, zr *zip.Reader, name string) []byte {
	t.Helper()
	f, err := zr.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
