package refs

import (
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/ledger"
)

func TestMerge(t *testing.T) {
	shaOf := map[string]string{
		"https://a/1": "aaa",
		"https://a/2": "bbb",
		"https://b/1": "aaa", // same bytes as a/1
		"https://c/1": "ccc",
		"https://d/1": "ddd",
		"https://e/1": "bbb", // same bytes as a/2
	}
	tests := []struct {
		name    string
		urls    []string
		limit   int
		keep    []string
		dropped []ledger.Dropped
	}{
		{name: "nothing", urls: nil, limit: 3},
		{
			name: "all distinct, under the cap", limit: 3,
			urls: []string{"https://a/1", "https://a/2"},
			keep: []string{"https://a/1", "https://a/2"},
		},
		{
			name: "later duplicate dropped, first wins", limit: 3,
			urls:    []string{"https://a/1", "https://a/2", "https://b/1"},
			keep:    []string{"https://a/1", "https://a/2"},
			dropped: []ledger.Dropped{{URL: "https://b/1", Reason: "duplicate of https://a/1"}},
		},
		{
			name: "order decides which copy stays", limit: 3,
			urls:    []string{"https://b/1", "https://a/1"},
			keep:    []string{"https://b/1"},
			dropped: []ledger.Dropped{{URL: "https://a/1", Reason: "duplicate of https://b/1"}},
		},
		{
			name: "cap drops the extras in order", limit: 2,
			urls: []string{"https://a/1", "https://a/2", "https://c/1", "https://d/1"},
			keep: []string{"https://a/1", "https://a/2"},
			dropped: []ledger.Dropped{
				{URL: "https://c/1", Reason: "over the limit of 2 references"},
				{URL: "https://d/1", Reason: "over the limit of 2 references"},
			},
		},
		{
			name: "duplicates do not use up the cap", limit: 2,
			urls: []string{"https://a/1", "https://b/1", "https://a/2", "https://e/1", "https://c/1"},
			keep: []string{"https://a/1", "https://a/2"},
			dropped: []ledger.Dropped{
				{URL: "https://b/1", Reason: "duplicate of https://a/1"},
				{URL: "https://e/1", Reason: "over the limit of 2 references"}, // never fetched: its content is not known
				{URL: "https://c/1", Reason: "over the limit of 2 references"},
			},
		},
		{
			name: "everything after the cap is over the limit, fetched or not", limit: 1,
			urls: []string{"https://c/1", "https://a/1", "https://b/1", "https://x/unknown"},
			keep: []string{"https://c/1"},
			dropped: []ledger.Dropped{
				{URL: "https://a/1", Reason: "over the limit of 1 reference"},
				{URL: "https://b/1", Reason: "over the limit of 1 reference"},
				{URL: "https://x/unknown", Reason: "over the limit of 1 reference"},
			},
		},
		{
			name: "zero limit keeps none", limit: 0,
			urls:    []string{"https://a/1"},
			dropped: []ledger.Dropped{{URL: "https://a/1", Reason: "over the limit of 0 references"}},
		},
		{
			name: "negative limit keeps every distinct one", limit: -1,
			urls:    []string{"https://a/1", "https://a/2", "https://c/1", "https://d/1", "https://b/1"},
			keep:    []string{"https://a/1", "https://a/2", "https://c/1", "https://d/1"},
			dropped: []ledger.Dropped{{URL: "https://b/1", Reason: "duplicate of https://a/1"}},
		},
		{
			name: "unfetched URL dropped", limit: 3,
			urls:    []string{"https://x/unknown", "https://a/1"},
			keep:    []string{"https://a/1"},
			dropped: []ledger.Dropped{{URL: "https://x/unknown", Reason: "not fetched"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			keep, dropped := Merge(tt.urls, shaOf, tt.limit)
			is.Equal(keep, tt.keep)       // kept
			is.Equal(dropped, tt.dropped) // dropped, with reasons
		})
	}
}

func TestMergeIsPure(t *testing.T) {
	is := is.New(t)
	urls := []string{"https://a/1", "https://b/1"}
	shaOf := map[string]string{"https://a/1": "x", "https://b/1": "x"}
	k1, d1 := Merge(urls, shaOf, 3)
	k2, d2 := Merge(urls, shaOf, 3)
	is.Equal(k1, k2)                                       // same keep
	is.Equal(d1, d2)                                       // same dropped
	is.Equal(urls, []string{"https://a/1", "https://b/1"}) // input untouched
}

func TestDedupRate(t *testing.T) {
	is := is.New(t)
	is.Equal(Stats{}.DedupRate(), 0.0)                                 // none submitted
	is.Equal(Stats{Submitted: 4, UniqueContents: 4}.DedupRate(), 0.0)  // no repeats
	is.Equal(Stats{Submitted: 4, UniqueContents: 1}.DedupRate(), 0.75) // three saved
}
