package main

import (
	"testing"

	"github.com/matryer/is"
)

// Objects are grouped by what they are, so the report names the kind of
// object written most rather than one batch's object.
func TestKindOf(t *testing.T) {
	const id = "01a24c66-df00-7841-8443-0d469da6293b"
	tests := []struct{ name, want string }{
		{"batches/" + id + "/state.json", "batches/{id}/state.json"},
		{"batches/" + id + "/state-20261206T142138.123456Z.json", "batches/{id}/state-{time}.json"},
		{"batches/" + id + "/rows/07.json", "batches/{id}/rows/{row}.json"},
		{"batches/" + id + "/images/r07-v2.png", "batches/{id}/images/{image}"},
		{"batches/" + id + "/manifest.json", "batches/{id}/manifest.json"},
		{"queued/9f86d081884c7d659a2feaa0c55ad015/" + id, "queued/{…}/{id}"},
	}
	for _, tt := range tests {
		is.New(t).Equal(kindOf(tt.name), tt.want) // the object's kind
	}
}

// The kinds are ordered by their most-written object, ties by name.
func TestHottest(t *testing.T) {
	is := is.New(t)
	const a, b = "01a24c66-df00-7841-8443-0d469da6293b", "01a24c66-df00-7841-8443-0d469da6293c"
	got := hottest(map[string]int{
		"batches/" + a + "/state.json":    3,
		"batches/" + b + "/state.json":    2,
		"batches/" + a + "/rows/00.json":  2,
		"batches/" + a + "/manifest.json": 1,
	}, 2)
	is.Equal(got, []hotObject{{"batches/{id}/state.json", 3}, {"batches/{id}/rows/{row}.json", 2}})
}
