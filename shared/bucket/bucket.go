// Package bucket is the one adapter over Cloud Storage: JSON reads that return
// the object's generation, create-once writes, compare-and-swap updates,
// generation-guarded deletes, one listing iterator, and raw writes with a
// content type and custom time. Every other package reaches the bucket
// through it.
//
// Three things hold for every call. The retry policy travels on the call's
// own handle: idempotent calls (reads, and writes or deletes guarded by a
// precondition) are retried on 408/429/5xx and resets with backoff, a bounded
// number of times, and each retry is counted. Failures are classified: a
// failed read is STORAGE_UNAVAILABLE, a failed write GCS_WRITE_FAILED
// (*Error carries the code). And every create-once or compare-and-swap write
// carries a write id in the object's metadata, so that a write which
// committed but whose answer was lost — the client's retry then meets it and
// gets 412 — is reported as won, not mistaken for a lost race.
package bucket

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"cloud.google.com/go/storage"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/googleapi"

	"github.com/assetgen/assetgen/shared/metrics"
	"github.com/assetgen/assetgen/shared/problem"
)

// WriteIDKey is the object metadata key holding the id of the write that
// stored the object.
const WriteIDKey = "assetgen-write-id"

// Errors callers test for with errors.Is.
var (
	// ErrNotFound means the object does not exist; it is not a failure.
	ErrNotFound = errors.New("bucket: object not found")
	// ErrNoChange from an Update function means there is nothing to write.
	ErrNoChange = errors.New("bucket: no change")
	// ErrContended means a compare-and-swap kept losing races past its bound.
	ErrContended = errors.New("bucket: object is contended")
	// ErrTooLarge means an object is larger than the reader accepts.
	ErrTooLarge = errors.New("bucket: object is larger than allowed")
)

// Op is what a failed call was doing.
type Op int

// Ops.
const (
	Read Op = iota + 1
	Write
)

func (o Op) String() string {
	if o == Write {
		return "write"
	}
	return "read"
}

// Error is a failed Cloud Storage call. It carries its problem code, so
// handlers answer it as it is: a failed read is STORAGE_UNAVAILABLE, a failed
// write (including one whose outcome is unknown) GCS_WRITE_FAILED.
type Error struct {
	Op     Op
	Object string
	Err    error
}

func (e *Error) Error() string { return fmt.Sprintf("bucket: %s %s: %v", e.Op, e.Object, e.Err) }

func (e *Error) Unwrap() error { return e.Err }

// ProblemCode implements problem.Coded.
func (e *Error) ProblemCode() problem.Code {
	if e.Op == Write {
		return problem.GCSWriteFailed
	}
	return problem.StorageUnavailable
}

// Outcome is what a write did.
type Outcome int

// Outcomes.
const (
	// Unknown: the write may or may not have landed (it comes with an error);
	// read the object to find out.
	Unknown Outcome = iota
	// Won: this call's write is the object stored now.
	Won
	// Lost: another writer's object is there (a create-once found it, or a
	// compare-and-swap found it changed).
	Lost
	// Unchanged: an update found nothing to do and wrote nothing.
	Unchanged
)

func (o Outcome) String() string {
	switch o {
	case Won:
		return "won"
	case Lost:
		return "lost"
	case Unchanged:
		return "unchanged"
	}
	return "unknown"
}

// Result is a write's outcome and the generation of the object it concerns:
// the one written (Won), the one found (Unchanged, and Lost when it was read),
// or 0.
type Result struct {
	Outcome    Outcome
	Generation int64
}

// Policy is how calls retry.
type Policy struct {
	// MaxAttempts bounds the attempts of one idempotent call.
	MaxAttempts int
	// Backoff spaces the attempts of one call.
	Backoff gax.Backoff
	// CASAttempts bounds how often one Update re-reads after a lost race.
	CASAttempts int
	// CASBackoff spaces those re-reads.
	CASBackoff gax.Backoff
}

// DefaultPolicy is the production policy: a call outlasts a few seconds of
// 429s (one write per second per object) or 5xx, and an update outlasts a
// burst of concurrent writers of one object.
func DefaultPolicy() Policy {
	return Policy{
		MaxAttempts: 8,
		Backoff:     gax.Backoff{Initial: 200 * time.Millisecond, Max: 8 * time.Second, Multiplier: 2},
		CASAttempts: 20,
		CASBackoff:  gax.Backoff{Initial: 50 * time.Millisecond, Max: 2 * time.Second, Multiplier: 1.6},
	}
}

// Client hands out buckets of one storage client under one policy.
type Client struct {
	sc     *storage.Client
	policy Policy
}

// NewClient wraps a storage client. The client itself keeps its defaults:
// the policy goes on each call's handle.
func NewClient(sc *storage.Client, p Policy) *Client { return &Client{sc: sc, policy: p} }

// Bucket returns the adapter over one bucket.
func (c *Client) Bucket(name string) *Bucket {
	return &Bucket{name: name, h: c.sc.Bucket(name), policy: c.policy, now: time.Now}
}

// Bucket is the adapter over one bucket.
type Bucket struct {
	name   string
	h      *storage.BucketHandle
	policy Policy
	now    func() time.Time
}

// Name is the bucket's name.
func (b *Bucket) Name() string { return b.name }

// call is one call's retry state: whether the client retried an attempt of it.
type call struct{ retried atomic.Bool }

// retry is the call's policy, set on its handle: only idempotent calls retry.
func (b *Bucket) retry(c *call) []storage.RetryOption {
	return []storage.RetryOption{
		storage.WithPolicy(storage.RetryIdempotent),
		storage.WithBackoff(b.policy.Backoff),
		storage.WithMaxAttempts(b.policy.MaxAttempts),
		storage.WithErrorFunc(func(err error) bool {
			if !ShouldRetry(err) {
				return false
			}
			if c != nil {
				c.retried.Store(true)
			}
			return true
		}),
	}
}

// object is name's handle with the policy on it.
func (b *Bucket) object(name string, c *call) *storage.ObjectHandle {
	return b.h.Object(name).Retryer(b.retry(c)...)
}

// ShouldRetry is the one classifier of retryable failures (408, 429, 5xx,
// connection resets); it counts every retry it allows.
func ShouldRetry(err error) bool {
	if !storage.ShouldRetry(err) {
		return false
	}
	status := "network"
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		status = strconv.Itoa(ge.Code)
	}
	metrics.GCSRetries.WithLabelValues(status).Inc()
	return true
}

// isPreconditionFailed reports whether err is a 412: a guarded write or
// delete found the object changed.
func isPreconditionFailed(err error) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && ge.Code == http.StatusPreconditionFailed
}

// ReadJSON decodes the object into v and returns its generation; ErrNotFound
// when there is no such object.
func (b *Bucket) ReadJSON(ctx context.Context, name string, v any) (int64, error) {
	return b.readJSON(ctx, name, 0, v)
}

// ReadJSONAt decodes one generation of the object into v.
func (b *Bucket) ReadJSONAt(ctx context.Context, name string, gen int64, v any) error {
	_, err := b.readJSON(ctx, name, gen, v)
	return err
}

func (b *Bucket) readJSON(ctx context.Context, name string, gen int64, v any) (int64, error) {
	data, g, err := b.read(ctx, name, gen, -1)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		// Unusable as stored: for the caller, the object cannot be read.
		return 0, &Error{Op: Read, Object: name, Err: fmt.Errorf("decode: %w", err)}
	}
	return g, nil
}

// ReadBytes returns the object's content; ErrNotFound when there is none.
func (b *Bucket) ReadBytes(ctx context.Context, name string) ([]byte, error) {
	data, _, err := b.read(ctx, name, 0, -1)
	return data, err
}

// ReadLimited returns the object's content if it is at most limit bytes long,
// and ErrTooLarge if it is longer.
func (b *Bucket) ReadLimited(ctx context.Context, name string, limit int64) ([]byte, error) {
	data, _, err := b.read(ctx, name, 0, limit)
	return data, err
}

// read reads a generation (0: the live one) of at most limit bytes (<0: any).
func (b *Bucket) read(ctx context.Context, name string, gen, limit int64) ([]byte, int64, error) {
	o := b.object(name, nil)
	if gen > 0 {
		o = o.Generation(gen)
	}
	r, err := o.NewReader(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, &Error{Op: Read, Object: name, Err: err}
	}
	defer r.Close()
	var src io.Reader = r
	if limit >= 0 {
		if r.Attrs.Size > limit {
			return nil, 0, fmt.Errorf("bucket: %s holds %d bytes: %w", name, r.Attrs.Size, ErrTooLarge)
		}
		src = io.LimitReader(r, limit+1)
	}
	data, err := io.ReadAll(src)
	if err != nil {
		return nil, 0, &Error{Op: Read, Object: name, Err: err}
	}
	if limit >= 0 && int64(len(data)) > limit {
		return nil, 0, fmt.Errorf("bucket: %s holds more than %d bytes: %w", name, limit, ErrTooLarge)
	}
	return data, r.Attrs.Generation, nil
}

// Attrs are an object's (or, in a listing with a delimiter, a prefix's) attributes.
type Attrs struct {
	Name string
	// Prefix is set instead of Name for a prefix a delimited listing rolls up.
	Prefix         string
	Generation     int64
	Metageneration int64
	Size           int64
	ContentType    string
	Created        time.Time
	Updated        time.Time
	CustomTime     time.Time
	Metadata       map[string]string
}

func attrsOf(a *storage.ObjectAttrs) Attrs {
	return Attrs{
		Name: a.Name, Prefix: a.Prefix, Generation: a.Generation, Metageneration: a.Metageneration,
		Size: a.Size, ContentType: a.ContentType, Created: a.Created, Updated: a.Updated,
		CustomTime: a.CustomTime, Metadata: a.Metadata,
	}
}

// Stat returns an object's attributes; ErrNotFound when there is none.
func (b *Bucket) Stat(ctx context.Context, name string) (Attrs, error) {
	a, err := b.object(name, nil).Attrs(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return Attrs{}, ErrNotFound
	}
	if err != nil {
		return Attrs{}, &Error{Op: Read, Object: name, Err: err}
	}
	return attrsOf(a), nil
}

// Exists reports whether an object exists.
func (b *Bucket) Exists(ctx context.Context, name string) (bool, error) {
	_, err := b.Stat(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Meta is what a raw write stores besides the bytes.
type Meta struct {
	ContentType string
	// CustomTime, when set, is the object's custom time (lifecycle rules on
	// days since custom time count from it).
	CustomTime time.Time
	// Metadata is custom metadata stored with the object; a listing that asks
	// for it returns it without reading the object.
	Metadata map[string]string
}

// jsonMeta is the metadata of JSON objects.
var jsonMeta = Meta{ContentType: "application/json"}

// Create writes data under name unless an object is there already: Won when
// this call created it, Lost when another writer's object is there (which the
// caller reads if it needs it).
func (b *Bucket) Create(ctx context.Context, name string, data []byte, m Meta) (Result, error) {
	return b.write(ctx, name, storage.Conditions{DoesNotExist: true}, data, m)
}

// CreateJSON is Create for a JSON value: the marker of an effect that must
// happen once, whose creator (Won) performs it.
func (b *Bucket) CreateJSON(ctx context.Context, name string, v any) (Result, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return Result{}, fmt.Errorf("bucket: encode %s: %w", name, err)
	}
	return b.Create(ctx, name, data, jsonMeta)
}

// Put overwrites name whatever is there. Without a precondition the write is
// not idempotent, so the client does not retry it.
func (b *Bucket) Put(ctx context.Context, name string, data []byte, m Meta) (Result, error) {
	return b.write(ctx, name, storage.Conditions{}, data, m)
}

// smallChunk is the writer buffer for small objects: large enough to hold
// them whole (so the client can retry the upload), small enough to be cheap.
const smallChunk = 256 << 10

// write uploads data under cond, tagged with a fresh write id.
func (b *Bucket) write(ctx context.Context, name string, cond storage.Conditions, data []byte, m Meta) (Result, error) {
	c := &call{}
	id := newWriteID()
	o := b.object(name, c)
	if cond != (storage.Conditions{}) {
		o = o.If(cond)
	}
	w := o.NewWriter(ctx)
	w.ContentType = m.ContentType
	w.CustomTime = m.CustomTime
	w.Metadata = map[string]string{WriteIDKey: id}
	for k, v := range m.Metadata {
		if k != WriteIDKey {
			w.Metadata[k] = v
		}
	}
	w.ChunkSize = max(smallChunk, len(data))
	_, err := w.Write(data)
	// The upload commits at Close; its error is the one that matters.
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		return Result{Outcome: Won, Generation: w.Attrs().Generation}, nil
	}
	if !isPreconditionFailed(err) {
		return Result{}, &Error{Op: Write, Object: name, Err: err}
	}
	if !c.retried.Load() {
		// The first attempt met the precondition failing: no attempt of this
		// call had landed before, so another writer's object is there.
		return Result{Outcome: Lost}, nil
	}
	return b.settle(ctx, name, id, err)
}

// settle tells what a retried write that ended in 412 did: an earlier attempt
// may have committed and lost its answer, in which case the object carries
// this call's write id.
func (b *Bucket) settle(ctx context.Context, name, id string, err error) (Result, error) {
	a, serr := b.Stat(ctx, name)
	switch {
	case serr == nil && a.Metadata[WriteIDKey] == id:
		return Result{Outcome: Won, Generation: a.Generation}, nil
	case serr == nil:
		return Result{Outcome: Lost, Generation: a.Generation}, nil
	case errors.Is(serr, ErrNotFound):
		// Written and deleted since: whose write it was cannot be told.
		return Result{}, &Error{Op: Write, Object: name, Err: fmt.Errorf("%w; the object is gone since", err)}
	}
	return Result{}, &Error{Op: Write, Object: name, Err: errors.Join(err, serr)}
}

func newWriteID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Update is the compare-and-swap of a JSON object: read it and its generation,
// apply fn, and write the result only if the object is unchanged (or, for a
// missing object, still missing); when another writer got there first,
// re-read and re-apply after a backoff. fn must be pure — it may run several
// times — and return its input unchanged along with any error. ErrNoChange
// from fn skips the write (Outcome Unchanged); any other error aborts.
//
// On success the returned value is what is stored: written by this call (Won)
// or found already right (Unchanged). A write whose answer was lost but which
// landed is Won, never applied twice.
func Update[T any](ctx context.Context, b *Bucket, name string, fn func(cur T, exists bool) (T, error)) (T, Result, error) {
	return update(ctx, b, name, nil, fn)
}

// Stored is a JSON object's value as its holder last read or wrote it, at
// Generation (0: there was no object).
type Stored[T any] struct {
	Value      T
	Generation int64
}

// UpdateFrom is Update for a caller that holds the object as it last read or
// wrote it: fn is applied to from and the write is conditioned on from's
// generation, with no read first. Only when the object changed since (the
// write meets another writer's object) is it read and fn re-applied, as
// Update does. A write whose answer was lost but which landed is still Won.
func UpdateFrom[T any](ctx context.Context, b *Bucket, name string, from Stored[T], fn func(cur T, exists bool) (T, error)) (T, Result, error) {
	return update(ctx, b, name, &from, fn)
}

// update runs the compare-and-swap loop, from a held state when from is set.
func update[T any](ctx context.Context, b *Bucket, name string, from *Stored[T], fn func(cur T, exists bool) (T, error)) (T, Result, error) {
	bo := b.policy.CASBackoff
	for attempt := 1; ; attempt++ {
		var cur T
		var gen int64
		var err error
		held := from != nil
		if held {
			cur, gen, from = from.Value, from.Generation, nil
		} else {
			gen, err = b.readJSON(ctx, name, 0, &cur)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return cur, Result{}, err
			}
		}
		exists := gen != 0
		// On ErrNoChange (and on errors) fn returns the state it judged, which
		// for a missing object is its default, not the zero value.
		next, err := fn(cur, exists)
		if errors.Is(err, ErrNoChange) {
			return next, Result{Outcome: Unchanged, Generation: gen}, nil
		}
		if err != nil {
			return next, Result{}, err
		}
		data, err := json.Marshal(next)
		if err != nil {
			return cur, Result{}, fmt.Errorf("bucket: encode %s: %w", name, err)
		}
		cond := storage.Conditions{GenerationMatch: gen}
		if !exists {
			cond = storage.Conditions{DoesNotExist: true}
		}
		res, err := b.write(ctx, name, cond, data, jsonMeta)
		if err != nil {
			return cur, res, err
		}
		if res.Outcome == Won {
			return next, res, nil
		}
		metrics.LedgerConflicts.Inc()
		if attempt >= b.policy.CASAttempts {
			return cur, Result{}, &Error{Op: Write, Object: name, Err: fmt.Errorf("%d attempts lost the race: %w", attempt, ErrContended)}
		}
		if held {
			// The held state was outdated, not raced for: read it again at once.
			continue
		}
		if err := gax.Sleep(ctx, bo.Pause()); err != nil {
			return cur, Result{}, &Error{Op: Write, Object: name, Err: err}
		}
	}
}

// Delete removes name whatever its generation; a missing object is no error.
// Without a precondition a delete is not idempotent, so the client does not
// retry it.
func (b *Bucket) Delete(ctx context.Context, name string) error {
	err := b.object(name, nil).Delete(ctx)
	if err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
		return &Error{Op: Write, Object: name, Err: err}
	}
	return nil
}

// Undo removes what a write of this call left behind: the generation it
// wrote when the write answered (a delete the client retries, which spares a
// newer version), else whatever is there (gen 0: the write's outcome is
// unknown; it may have landed).
func (b *Bucket) Undo(ctx context.Context, name string, gen int64) error {
	if gen == 0 {
		return b.Delete(ctx, name)
	}
	return b.DeleteAt(ctx, name, gen)
}

// DeleteAt removes name only if it is still at generation gen. An object
// rewritten since (or already gone) is left alone, without error.
func (b *Bucket) DeleteAt(ctx context.Context, name string, gen int64) error {
	err := b.object(name, nil).If(storage.Conditions{GenerationMatch: gen}).Delete(ctx)
	if err == nil || errors.Is(err, storage.ErrObjectNotExist) || isPreconditionFailed(err) {
		return nil
	}
	return &Error{Op: Write, Object: name, Err: err}
}

// DeleteIf deletes a JSON object if del(its content) says so, guarded by the
// generation read, so a concurrent rewrite is never deleted by mistake.
func DeleteIf[T any](ctx context.Context, b *Bucket, name string, del func(T) bool) error {
	var cur T
	gen, err := b.readJSON(ctx, name, 0, &cur)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !del(cur) {
		return nil
	}
	return b.DeleteAt(ctx, name, gen)
}

// Touch reports whether an object exists and, when its custom time is older
// than every, moves it to now: an object in use again is kept again. At most
// one metadata write per object per interval.
func (b *Bucket) Touch(ctx context.Context, name string, every time.Duration) (bool, error) {
	a, err := b.Stat(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	now := b.now().UTC()
	if now.Sub(a.CustomTime) < every {
		return true, nil
	}
	// Guarded by metageneration: a concurrent touch already did the work.
	o := b.object(name, nil).If(storage.Conditions{MetagenerationMatch: a.Metageneration})
	_, err = o.Update(ctx, storage.ObjectAttrsToUpdate{CustomTime: now})
	if err != nil && !isPreconditionFailed(err) && !errors.Is(err, storage.ErrObjectNotExist) {
		return true, &Error{Op: Write, Object: name, Err: err}
	}
	return true, nil
}
