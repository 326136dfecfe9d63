package backlog_test

import (
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/backlog"
	"github.com/assetgen/assetgen/shared/batch"
)

func TestMarkerNamesCarryTheirRows(t *testing.T) {
	is := is.New(t)
	id := batch.NewID()
	e := backlog.Entry{User: "https://accounts.google.com/1084", BatchID: id, Rows: 7}
	name := e.Object()
	is.True(strings.HasPrefix(name, backlog.UserPrefix(e.User)))                           // under its owner's prefix
	is.True(!strings.Contains(strings.TrimPrefix(name, "queued/"), "accounts.google.com")) // the user id is hashed
	gotID, rows, ok := backlog.Parse(name)
	is.True(ok)
	is.Equal(gotID, id)                                                            // the batch
	is.Equal(rows, 7)                                                              // and its rows, read from the name alone
	is.True(backlog.UserPrefix("a") != backlog.UserPrefix("b"))                    // one prefix per user
	is.True(!strings.HasPrefix(backlog.UserPrefix("ab"), backlog.UserPrefix("a"))) // none inside another's
	is.True(strings.HasSuffix(backlog.UserPrefix("a"), "/") && len(backlog.UserPrefix("a")) > len("queued//"))
}

func TestParseRejectsForeignNames(t *testing.T) {
	id := batch.NewID()
	prefix := backlog.UserPrefix("u")
	for _, name := range []string{
		"batches/" + id + "/manifest.json",
		prefix + id,            // no rows
		prefix + id + ".0",     // no rows
		prefix + id + ".11",    // more rows than a batch holds
		prefix + id + ".07",    // not canonical
		prefix + id + ".x",     // not a number
		prefix + "not-an-id.3", // not a batch id
		"queued/" + id + ".3",  // no user prefix
		prefix + id + ".3.tmp", // trailing junk
	} {
		if _, _, ok := backlog.Parse(name); ok {
			t.Errorf("Parse(%q) accepted a name no marker has", name)
		}
	}
}

func TestQueuedRowsLeaveOutOneBatch(t *testing.T) {
	a, b := batch.NewID(), batch.NewID()
	q := backlog.Queued{a: 3, b: 7}
	for _, tc := range []struct {
		except string
		want   int
	}{
		{"", 10},
		{a, 7},
		{b, 3},
		{batch.NewID(), 10}, // a batch whose marker the listing did not show
	} {
		if got := q.Rows(tc.except); got != tc.want {
			t.Errorf("Rows(%q) = %d, want %d", tc.except, got, tc.want)
		}
	}
	if got := backlog.Queued(nil).Rows(""); got != 0 {
		t.Errorf("Rows of nothing = %d", got)
	}
}
