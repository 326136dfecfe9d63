package bucket

import (
	"context"
	"errors"
	"iter"
	"slices"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"
)

// Query selects the objects a listing returns.
type Query struct {
	Prefix string
	// Delimiter, usually "/", rolls names up to the next delimiter after the
	// prefix: each such prefix comes once, as Attrs.Prefix.
	Delimiter string
	// StartOffset (inclusive) and EndOffset (exclusive) bound the names.
	StartOffset string
	EndOffset   string
	// Metadata asks for each object's custom metadata too.
	Metadata bool
	// PageSize, when set, is how many names one listing call asks for: a
	// caller that needs only a few names gets them in one small call.
	PageSize int
}

// listFields are the attributes a listing asks for.
var listFields = []string{"Name", "Generation", "Metageneration", "Size", "ContentType", "Created", "Updated", "CustomTime"}

// List iterates over the objects (and rolled-up prefixes) matching q, in name
// order. A failed page ends the iteration with a read error; breaking out of
// the loop stops the listing.
func (b *Bucket) List(ctx context.Context, q Query) iter.Seq2[Attrs, error] {
	return func(yield func(Attrs, error) bool) {
		sq := &storage.Query{Prefix: q.Prefix, Delimiter: q.Delimiter, StartOffset: q.StartOffset, EndOffset: q.EndOffset}
		fields := listFields
		if q.Metadata {
			fields = append(slices.Clip(fields), "Metadata")
		}
		if err := sq.SetAttrSelection(fields); err != nil {
			yield(Attrs{}, &Error{Op: Read, Object: q.Prefix, Err: err})
			return
		}
		it := b.h.Retryer(b.retry(nil)...).Objects(ctx, sq)
		if q.PageSize > 0 {
			it.PageInfo().MaxSize = q.PageSize
		}
		for {
			a, err := it.Next()
			if errors.Is(err, iterator.Done) {
				return
			}
			if err != nil {
				yield(Attrs{}, &Error{Op: Read, Object: q.Prefix, Err: err})
				return
			}
			if !yield(attrsOf(a), nil) {
				return
			}
		}
	}
}
