package batchindex_test

import (
	"context"
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/batchindex"
	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/devstack/stacktest"
	"github.com/assetgen/assetgen/shared/ledger"
)

func TestKeysSortNewestFirstAndGiveTheIDBack(t *testing.T) {
	is := is.New(t)
	var ids, keys []string
	for range 50 {
		id := batch.NewID() // UUIDv7: later ids sort higher
		ids = append(ids, id)
		keys = append(keys, batchindex.Key(id))
	}
	is.True(slices.IsSorted(ids)) // ids are issued in order
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	slices.Reverse(sorted)
	is.Equal(sorted, keys) // keys sort the other way: newest first
	for i, k := range keys {
		got, ok := batchindex.ParseKey(k)
		is.True(ok)
		is.Equal(got, ids[i]) // the key names its batch
	}
}

func TestParseKeyRejectsForeignNames(t *testing.T) {
	id := batch.NewID()
	good := batchindex.Key(id)
	for _, key := range []string{
		"",
		id,                                    // no inverted time
		good[:16] + id[:35],                   // a cut id
		"0000000000000000-" + id,              // a time that is not the id's
		strings.ToUpper(good[:16]) + "-" + id, // not canonical
		good + "x",                            // trailing junk
		good[:16] + "-" + strings.ToUpper(id),
		"../" + good,
	} {
		if _, ok := batchindex.ParseKey(key); ok {
			t.Errorf("ParseKey(%q) accepted a name no entry has", key)
		}
	}
}

func TestUserPrefixesAreHashedAndDisjoint(t *testing.T) {
	is := is.New(t)
	p := batchindex.UserPrefix("someone@example.com")
	is.True(strings.HasPrefix(p, "users/"))      // under users/
	is.True(strings.HasSuffix(p, "/batches/"))   // the user's batches
	is.True(!strings.Contains(p, "example.com")) // the user id is hashed
	is.True(batchindex.UserPrefix("a") != batchindex.UserPrefix("b"))
	is.True(!strings.HasPrefix(batchindex.UserPrefix("ab"), batchindex.UserPrefix("a"))) // none inside another's
}

func TestCursorsBelongToTheirUserAndFilter(t *testing.T) {
	is := is.New(t)
	key := batchindex.Key(batch.NewID())
	c := batchindex.EncodeCursor("alice", "done", key)
	got, err := batchindex.DecodeCursor("alice", "done", c)
	is.NoErr(err)
	is.Equal(got, key)                      // round trip
	is.True(!strings.ContainsAny(c, "+/=")) // safe in a query string as it is

	for name, tc := range map[string]struct{ user, filter, cursor string }{
		"another user":   {"bob", "done", c},
		"another filter": {"alice", "", c},
		"not base64":     {"alice", "done", "%%%"},
		"empty":          {"alice", "done", ""},
		"no key":         {"alice", "done", batchindex.EncodeCursor("alice", "done", "")},
		"control key":    {"alice", "done", batchindex.EncodeCursor("alice", "done", "a\nb")},
		"too many parts": {"alice", "done", base64.RawURLEncoding.EncodeToString([]byte("c1:" + batchindex.UserKey("alice")[:8] + ":done:" + key + ":x"))},
		"old version":    {"alice", "done", base64.RawURLEncoding.EncodeToString([]byte("c0:" + batchindex.UserKey("alice")[:8] + ":done:" + key))},
	} {
		if _, err := batchindex.DecodeCursor(tc.user, tc.filter, tc.cursor); err == nil {
			t.Errorf("%s: a cursor DecodeCursor must refuse was accepted", name)
		}
	}
	good := base64.RawURLEncoding.EncodeToString([]byte("c1:" + batchindex.UserKey("alice")[:8] + ":done:" + key))
	_, err = batchindex.DecodeCursor("alice", "done", good)
	is.NoErr(err) // the same format written by hand passes: the cases above fail for their one flaw
}

func TestListPagesNewestFirstWithOneListingEach(t *testing.T) {
	is := is.New(t)
	faults := devstack.NewFaults(1)
	c := stacktest.Open(t, faults)
	b := bucket.NewClient(c.Storage, bucket.DefaultPolicy()).Bucket(stacktest.TestBucket)
	x := batchindex.New(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var ids []string
	for i := range 7 {
		m := &ledger.Manifest{BatchID: batch.NewID(), Owner: "alice", RunMode: ledger.DryRun, Model: "m", CreatedAt: time.Now().UTC(),
			Rows: []ledger.ManifestRow{{Variants: 1 + i%3}, {Index: 1, Variants: 2}}}
		created, err := x.Add(ctx, batchindex.FromManifest(m))
		is.NoErr(err)
		is.True(created != 0) // a new entry, at its generation
		ids = append(ids, m.BatchID)
		again, err := x.Add(ctx, batchindex.FromManifest(m))
		is.NoErr(err)
		is.Equal(again, int64(0)) // a second add of the same batch finds it
	}
	_, err := x.Add(ctx, batchindex.Entry{User: "bob", BatchID: batch.NewID(), Variants: []int{1}})
	is.NoErr(err)
	slices.Reverse(ids) // newest first

	faults.Reset()
	var got []string
	from := ""
	for {
		page, next, err := x.List(ctx, "alice", from, 3)
		is.NoErr(err)
		for _, e := range page {
			got = append(got, e.BatchID)
			is.Equal(e.User, "alice")
			is.Equal(e.RunMode, ledger.DryRun) // the fields come with the listing
			is.Equal(len(e.Variants), 2)
		}
		if next == "" {
			break
		}
		from = next // the name after the page starts the next one
	}
	is.Equal(got, ids)                        // every batch of alice's once, newest first, none of bob's
	is.Equal(faults.Counts().Lists, int64(3)) // one listing per page
	is.Equal(faults.Counts().Reads, int64(0)) // and no object read

	// An object under the prefix that is not an entry is passed over, and
	// the pages around it still join up.
	_, err = b.Create(ctx, batchindex.UserPrefix("alice")+batchindex.Key(ids[2])+"~stray", nil, bucket.Meta{ContentType: "text/plain"})
	is.NoErr(err)
	got, from = nil, ""
	for {
		page, next, err := x.List(ctx, "alice", from, 3)
		is.NoErr(err)
		for _, e := range page {
			got = append(got, e.BatchID)
		}
		if next == "" {
			break
		}
		from = next
	}
	is.Equal(got, ids) // the stray name is no batch and hides none

	is.NoErr(x.Remove(ctx, "alice", ids[0]))
	is.NoErr(x.Remove(ctx, "alice", ids[0])) // removing twice is no error
	page, next, err := x.List(ctx, "alice", "", 10)
	is.NoErr(err)
	is.Equal(next, "")                // one page holds the rest
	is.Equal(len(page), 6)            // the removed entry is gone
	is.Equal(page[0].BatchID, ids[1]) // and the next newest leads

	// A rollback removes the entry it made, by generation, and nothing else.
	e := batchindex.Entry{User: "carol", BatchID: batch.NewID(), Variants: []int{1}}
	gen, err := x.Add(ctx, e)
	is.NoErr(err)
	is.NoErr(x.RemoveAt(ctx, e.User, e.BatchID, gen+1)) // another generation: left alone
	page, _, err = x.List(ctx, e.User, "", 10)
	is.NoErr(err)
	is.Equal(len(page), 1)
	is.NoErr(x.RemoveAt(ctx, e.User, e.BatchID, gen))
	is.NoErr(x.RemoveAt(ctx, e.User, e.BatchID, gen)) // gone already: no error
	page, _, err = x.List(ctx, e.User, "", 10)
	is.NoErr(err)
	is.Equal(len(page), 0) // its own generation: removed

	// An Add whose outcome was unknown (generation 0) is undone whatever is there.
	_, err = x.Add(ctx, e)
	is.NoErr(err)
	is.NoErr(x.RemoveAt(ctx, e.User, e.BatchID, 0))
	page, _, err = x.List(ctx, e.User, "", 10)
	is.NoErr(err)
	is.Equal(len(page), 0) // removed
}
