package submit

import (
	"testing"

	"github.com/matryer/is"
)

func TestArchiveSlots(t *testing.T) {
	is := is.New(t)
	s := newArchiveSlots(3, 2)
	is.True(s.acquire("alice"))  // first of alice's
	is.True(s.acquire("alice"))  // second
	is.True(!s.acquire("alice")) // a third is over her cap
	is.True(s.acquire("bob"))    // others still get one
	is.True(!s.acquire("carol")) // until the instance is full
	s.release("alice")
	is.True(s.acquire("alice")) // a release frees a slot
	s.release("alice")
	s.release("alice")
	s.release("bob")
	is.Equal(s.building, 0)   // every build released
	is.Equal(len(s.users), 0) // and no user is remembered
}
