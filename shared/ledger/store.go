package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"github.com/googleapis/gax-go/v2"

	"github.com/assetgen/assetgen/shared/metrics"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
)

// Store reads and writes the ledger through the Cloud Storage client. Every write
// is create-once (DoesNotExist) or compare-and-swap (GenerationMatch); 429 and 5xx
// answers are retried by the client's own retry policy (see Configure), and a
// lost race (412) re-reads and re-applies the transition.
type Store struct {
	bucket *storage.BucketHandle
	// casAttempts bounds how often one update re-reads after a lost race.
	casAttempts int
	casBackoff  gax.Backoff
	now         func() time.Time
}

// Configure sets the retry policy the ledger relies on: precondition-guarded
// writes are idempotent, so they are retried on 429/5xx with exponential backoff.
func Configure(c *storage.Client) {
	c.SetRetry(
		storage.WithErrorFunc(func(err error) bool {
			retry := storage.ShouldRetry(err)
			if retry {
				status := "network"
				var ge *googleapi.Error
				if errors.As(err, &ge) {
					status = strconv.Itoa(ge.Code)
				}
				metrics.GCSRetries.WithLabelValues(status).Inc()
			}
			return retry
		}),
		storage.WithPolicy(storage.RetryIdempotent),
		storage.WithBackoff(gax.Backoff{Initial: 200 * time.Millisecond, Max: 8 * time.Second, Multiplier: 2}),
		storage.WithMaxAttempts(8),
	)
}

// NewStore returns a store over one bucket of an already configured client.
func NewStore(c *storage.Client, bucket string) *Store {
	return &Store{
		bucket:      c.Bucket(bucket),
		casAttempts: 20,
		casBackoff:  gax.Backoff{Initial: 50 * time.Millisecond, Max: 2 * time.Second, Multiplier: 1.6},
		now:         time.Now,
	}
}

// Bucket is the bucket the store writes to.
func (s *Store) Bucket() *storage.BucketHandle { return s.bucket }

// IsPreconditionFailed reports whether err is a lost create-once or CAS race.
func IsPreconditionFailed(err error) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && ge.Code == http.StatusPreconditionFailed
}

// ledgerChunk is the writer buffer for small JSON objects: large enough to hold
// them whole (so the client can retry the upload), small enough to be cheap.
const ledgerChunk = 256 << 10

func (s *Store) writeJSON(ctx context.Context, name string, cond storage.Conditions, v any) (int64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("ledger: encode %s: %w", name, err)
	}
	return s.write(ctx, name, cond, "application/json", b)
}

func (s *Store) write(ctx context.Context, name string, cond storage.Conditions, contentType string, b []byte) (int64, error) {
	return s.writeAttrs(ctx, name, cond, storage.ObjectAttrs{ContentType: contentType}, b)
}

func (s *Store) writeAttrs(ctx context.Context, name string, cond storage.Conditions, attrs storage.ObjectAttrs, b []byte) (int64, error) {
	o := s.bucket.Object(name)
	if cond != (storage.Conditions{}) {
		o = o.If(cond)
	}
	w := o.NewWriter(ctx)
	w.ContentType = attrs.ContentType
	w.CustomTime = attrs.CustomTime
	w.ChunkSize = max(ledgerChunk, len(b))
	if _, err := w.Write(b); err != nil {
		_ = w.Close()
		return 0, fmt.Errorf("ledger: write %s: %w", name, err)
	}
	// The upload commits at Close; its error is the one that matters.
	if err := w.Close(); err != nil {
		return 0, fmt.Errorf("ledger: write %s: %w", name, err)
	}
	return w.Attrs().Generation, nil
}

func (s *Store) readJSON(ctx context.Context, name string, gen int64, v any) (int64, error) {
	o := s.bucket.Object(name)
	if gen > 0 {
		o = o.Generation(gen)
	}
	r, err := o.NewReader(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("ledger: read %s: %w", name, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return 0, fmt.Errorf("ledger: read %s: %w", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return 0, fmt.Errorf("ledger: decode %s: %w", name, err)
	}
	return r.Attrs.Generation, nil
}

// CreateManifest writes the manifest once; a second create returns ErrExists.
func (s *Store) CreateManifest(ctx context.Context, m *Manifest) error {
	_, err := s.writeJSON(ctx, ManifestObject(m.BatchID), storage.Conditions{DoesNotExist: true}, m)
	if IsPreconditionFailed(err) {
		return ErrExists
	}
	return err
}

// Manifest reads a batch's manifest (ErrNotFound if there is none).
func (s *Store) Manifest(ctx context.Context, batchID string) (*Manifest, error) {
	var m Manifest
	if _, err := s.readJSON(ctx, ManifestObject(batchID), 0, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// DeleteBatch removes every object of a batch: the rollback of a submit that
// could not finish, so no partial batch is left behind. The manifest goes
// first: without it the batch no longer exists for any reader or task, even if
// a later delete fails (the housekeeping job removes such leftovers).
func (s *Store) DeleteBatch(ctx context.Context, batchID string) error {
	err := s.bucket.Object(ManifestObject(batchID)).Delete(ctx)
	if err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
		return fmt.Errorf("ledger: delete manifest of %s: %w", batchID, err)
	}
	it := s.bucket.Objects(ctx, &storage.Query{Prefix: BatchPrefix(batchID)})
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for {
		attrs, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return fmt.Errorf("ledger: list %s: %w", batchID, err)
		}
		name := attrs.Name
		g.Go(func() error {
			err := s.bucket.Object(name).Delete(gctx)
			if err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
				return fmt.Errorf("ledger: delete %s: %w", name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// ReadRow returns a row's state and its generation (0 when the row object does
// not exist yet, in which case the state is the row as submitted).
func (s *Store) ReadRow(ctx context.Context, m *Manifest, row int) (Row, int64, error) {
	if row < 0 || row >= len(m.Rows) {
		return Row{}, 0, fmt.Errorf("ledger: batch %s has no row %d: %w", m.BatchID, row, ErrNotFound)
	}
	var r Row
	gen, err := s.readJSON(ctx, RowObject(m.BatchID, row), 0, &r)
	if errors.Is(err, ErrNotFound) {
		return NewRow(m.Rows[row]), 0, nil
	}
	return r, gen, err
}

// ReadRowAt reads one generation of a row object, as listed by RowGenerations.
func (s *Store) ReadRowAt(ctx context.Context, batchID string, row int, gen int64) (Row, error) {
	var r Row
	_, err := s.readJSON(ctx, RowObject(batchID, row), gen, &r)
	return r, err
}

// UpdateRow applies fn to the row's current state and writes the result if the
// object has not changed since it was read; on a lost race it re-reads and
// re-applies. fn must be pure: it may run several times. ErrNoChange from fn
// skips the write and returns the current state; any other error aborts.
func (s *Store) UpdateRow(ctx context.Context, m *Manifest, row int, fn func(Row) (Row, error)) (Row, error) {
	if row < 0 || row >= len(m.Rows) {
		return Row{}, fmt.Errorf("ledger: batch %s has no row %d: %w", m.BatchID, row, ErrNotFound)
	}
	return Update(ctx, s, RowObject(m.BatchID, row), func(cur Row, exists bool) (Row, error) {
		if !exists {
			cur = NewRow(m.Rows[row])
		}
		return fn(cur)
	})
}

// ErrContended means a compare-and-swap kept losing races past its bound.
var ErrContended = errors.New("ledger: object is contended")

// Update is the ledger's compare-and-swap on any JSON object: read it (and its
// generation), apply fn, write only if the generation still matches (or, for a
// missing object, only if it is still missing); on a lost race, re-read and
// re-apply after a backoff. fn must be pure and return its input unchanged with
// any error. ErrNoChange from fn skips the write.
func Update[T any](ctx context.Context, s *Store, name string, fn func(cur T, exists bool) (T, error)) (T, error) {
	bo := s.casBackoff
	for attempt := 1; ; attempt++ {
		var cur T
		gen, err := s.readJSON(ctx, name, 0, &cur)
		exists := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return cur, err
		}
		// On ErrNoChange (and on errors) fn returns the state it judged, which
		// for a missing object is its default, not the zero value.
		next, err := fn(cur, exists)
		if errors.Is(err, ErrNoChange) {
			return next, nil
		}
		if err != nil {
			return next, err
		}
		cond := storage.Conditions{GenerationMatch: gen}
		if !exists {
			cond = storage.Conditions{DoesNotExist: true}
		}
		_, err = s.writeJSON(ctx, name, cond, next)
		if err == nil {
			return next, nil
		}
		if !IsPreconditionFailed(err) {
			return cur, err
		}
		metrics.LedgerConflicts.Inc()
		if attempt >= s.casAttempts {
			return cur, fmt.Errorf("ledger: %s: %d attempts lost the race: %w", name, attempt, ErrContended)
		}
		if err := gax.Sleep(ctx, bo.Pause()); err != nil {
			return cur, err
		}
	}
}

// Rows reads every row of a batch, concurrently.
func (s *Store) Rows(ctx context.Context, m *Manifest) ([]Row, error) {
	rows := make([]Row, len(m.Rows))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(10)
	for i := range m.Rows {
		g.Go(func() error {
			r, _, err := s.ReadRow(gctx, m, i)
			rows[i] = r
			return err
		})
	}
	return rows, g.Wait()
}

// RowGenerations lists the generation of every row object that exists: one
// listing call shows which rows changed since the last look.
func (s *Store) RowGenerations(ctx context.Context, batchID string) (map[int]int64, error) {
	q := &storage.Query{Prefix: RowsPrefix(batchID)}
	if err := q.SetAttrSelection([]string{"Name", "Generation"}); err != nil {
		return nil, err
	}
	out := map[int]int64{}
	it := s.bucket.Objects(ctx, q)
	for {
		attrs, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("ledger: list rows of %s: %w", batchID, err)
		}
		if i, ok := RowIndexOf(batchID, attrs.Name); ok {
			out[i] = attrs.Generation
		}
	}
}

// PutObject writes data once under name. If the object already exists (a
// duplicate delivery wrote it first) it returns created=false and no error: the
// names are deterministic, so the existing object is the same result.
func (s *Store) PutObject(ctx context.Context, name, contentType string, data []byte) (created bool, err error) {
	_, err = s.write(ctx, name, storage.Conditions{DoesNotExist: true}, contentType, data)
	if IsPreconditionFailed(err) {
		return false, nil
	}
	return err == nil, err
}

// Exists reports whether an object exists.
func (s *Store) Exists(ctx context.Context, name string) (bool, error) {
	_, err := s.bucket.Object(name).Attrs(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("ledger: stat %s: %w", name, err)
	}
	return true, nil
}

// ReadObject returns an object's bytes.
func (s *Store) ReadObject(ctx context.Context, name string) ([]byte, error) {
	r, err := s.bucket.Object(name).NewReader(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: read %s: %w", name, err)
	}
	defer r.Close()
	return io.ReadAll(r)
}

// CreateMarker writes v under name once. created tells the caller whether it won
// the right to perform the effect the marker stands for.
func (s *Store) CreateMarker(ctx context.Context, name string, v any) (created bool, err error) {
	_, err = s.writeJSON(ctx, name, storage.Conditions{DoesNotExist: true}, v)
	if IsPreconditionFailed(err) {
		return false, nil
	}
	return err == nil, err
}

// ReadJSON reads any JSON object of the ledger.
func (s *Store) ReadJSON(ctx context.Context, name string, v any) error {
	_, err := s.readJSON(ctx, name, 0, v)
	return err
}

// SortedHistory merges the audit trails of rows into one list ordered by time.
func SortedHistory(rows []Row) []RowChange {
	var out []RowChange
	for _, r := range rows {
		for _, c := range r.History {
			out = append(out, RowChange{Row: r.Index, Change: c})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// RowChange is an audit entry with the row it belongs to.
type RowChange struct {
	Row int `json:"row"`
	Change
}

// Probe proves the bucket accepts writes by overwriting a per-instance object.
// Callers cache the outcome: one object takes about one write per second.
func (s *Store) Probe(ctx context.Context, instance string) error {
	_, err := s.write(ctx, "probes/"+instance+".json", storage.Conditions{}, "application/json",
		fmt.Appendf(nil, `{"at":%q}`, s.now().UTC().Format(time.RFC3339Nano)))
	return err
}

// StoredImages lists the images already stored for a row, by variant: what an
// earlier attempt made before it could record it.
func (s *Store) StoredImages(ctx context.Context, batchID string, row int) (map[int]string, error) {
	prefix := ImagePrefix(batchID, row)
	q := &storage.Query{Prefix: prefix}
	if err := q.SetAttrSelection([]string{"Name"}); err != nil {
		return nil, err
	}
	out := map[int]string{}
	it := s.bucket.Objects(ctx, q)
	for {
		attrs, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("ledger: list images of %s row %d: %w", batchID, row, err)
		}
		rest := strings.TrimPrefix(attrs.Name, prefix)
		digits, _, _ := strings.Cut(rest, ".")
		if v, err := strconv.Atoi(digits); err == nil {
			out[v] = attrs.Name
		}
	}
}

// PingRead proves the bucket can be listed (readiness of read-only services).
func (s *Store) PingRead(ctx context.Context) error {
	it := s.bucket.Objects(ctx, &storage.Query{Prefix: "probes/"})
	if _, err := it.Next(); err != nil && !errors.Is(err, iterator.Done) {
		return fmt.Errorf("ledger: list bucket: %w", err)
	}
	return nil
}

// DeleteIf deletes a JSON object if keep(current content) says so, guarded by
// the generation it read, so a concurrent rewrite is never deleted by mistake.
func DeleteIf[T any](ctx context.Context, s *Store, name string, del func(T) bool) error {
	var cur T
	gen, err := s.readJSON(ctx, name, 0, &cur)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !del(cur) {
		return nil
	}
	err = s.bucket.Object(name).If(storage.Conditions{GenerationMatch: gen}).Delete(ctx)
	if err == nil || errors.Is(err, storage.ErrObjectNotExist) || IsPreconditionFailed(err) {
		return nil
	}
	return fmt.Errorf("ledger: delete %s: %w", name, err)
}

// PutShared writes a create-once object that many batches may share (a
// reference image). Its custom time records when it was last in use, so a
// lifecycle rule on days since custom time deletes only what nobody uses.
func (s *Store) PutShared(ctx context.Context, name, contentType string, data []byte) (created bool, err error) {
	attrs := storage.ObjectAttrs{ContentType: contentType, CustomTime: s.now().UTC()}
	_, err = s.writeAttrs(ctx, name, storage.Conditions{DoesNotExist: true}, attrs, data)
	if IsPreconditionFailed(err) {
		return false, nil
	}
	return err == nil, err
}

// Touch reports whether a shared object exists and, when its custom time is
// older than every, moves it to now: in use again, it is kept again. At most one
// metadata write per object per interval.
func (s *Store) Touch(ctx context.Context, name string, every time.Duration) (bool, error) {
	o := s.bucket.Object(name)
	attrs, err := o.Attrs(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("ledger: stat %s: %w", name, err)
	}
	now := s.now().UTC()
	if now.Sub(attrs.CustomTime) < every {
		return true, nil
	}
	// Guarded by metageneration: a concurrent touch already did the work.
	_, err = o.If(storage.Conditions{MetagenerationMatch: attrs.Metageneration}).Update(ctx, storage.ObjectAttrsToUpdate{CustomTime: now})
	if err != nil && !IsPreconditionFailed(err) {
		return true, fmt.Errorf("ledger: touch %s: %w", name, err)
	}
	return true, nil
}
