package submit

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/cached"
	"github.com/assetgen/assetgen/shared/problem"
)

// grantSource is the sheets object as the test sets it.
type grantSource struct {
	mu    sync.Mutex
	users map[string][]string
	err   error
}

func (s *grantSource) load(context.Context) (map[string][]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users, s.err
}

func (s *grantSource) set(users map[string][]string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users, s.err = users, err
}

// Each step moves the clock, may change the object, and asks whether a user
// may write to a sheet.
func TestSheetGrants(t *testing.T) {
	type step struct {
		advance time.Duration
		set     bool
		users   map[string][]string
		err     error
		user    string
		sheet   string
		want    problem.Code // "" when allowed
	}
	granted := map[string][]string{"alice": {"sheet-a"}}
	down := errors.New("storage unavailable")
	tests := []struct {
		name  string
		steps []step
	}{
		{"granted, not granted, another user's", []step{
			{set: true, users: granted, user: "alice", sheet: "sheet-a"},
			{user: "alice", sheet: "sheet-b", want: problem.Forbidden},
			{user: "bob", sheet: "sheet-a", want: problem.Forbidden},
		}},
		{"no object grants nothing", []step{
			{set: true, users: map[string][]string{}, user: "alice", sheet: "sheet-a", want: problem.Forbidden},
		}},
		{"a grant added is seen after the TTL", []step{
			{set: true, users: map[string][]string{}, user: "alice", sheet: "sheet-a", want: problem.Forbidden},
			{set: true, users: granted, user: "alice", sheet: "sheet-a", want: problem.Forbidden},
			{advance: time.Minute, user: "alice", sheet: "sheet-a"},
		}},
		{"an unreadable list keeps the last good one", []step{
			{set: true, users: granted, user: "alice", sheet: "sheet-a"},
			{advance: time.Minute, set: true, err: down, user: "alice", sheet: "sheet-a"},
			{user: "alice", sheet: "sheet-b", want: problem.Forbidden},
		}},
		{"with no list read yet, refused until it is", []step{
			{set: true, err: down, user: "alice", sheet: "sheet-a", want: problem.NotReady},
			{set: true, users: granted, user: "alice", sheet: "sheet-a", want: problem.NotReady}, // within the back-off
			{advance: time.Second, user: "alice", sheet: "sheet-a"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			src := &grantSource{}
			now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			g := newSheetGrants(src.load, cached.Options{TTL: time.Minute, Backoff: time.Second,
				Now: func() time.Time { return now }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			for i, s := range tt.steps {
				now = now.Add(s.advance)
				if s.set {
					src.set(s.users, s.err)
				}
				err := g.allow(context.Background(), s.user, s.sheet)
				if s.want == "" {
					is.NoErr(err) // allowed
				} else {
					is.Equal(problem.CodeOf(err), s.want) // refused with the code
				}
				if t.Failed() {
					t.Fatalf("step %d", i)
				}
			}
		})
	}
}

// A refusal names the field and its code, so a client can point at it.
func TestSheetGrantRefusalNamesTheField(t *testing.T) {
	is := is.New(t)
	g := newSheetGrants(func(context.Context) (map[string][]string, error) { return map[string][]string{}, nil }, cached.Options{TTL: time.Minute})
	err := g.allow(context.Background(), "alice", "sheet-a")
	var pe *problem.Error
	is.True(errors.As(err, &pe)) // a problem
	is.Equal(len(pe.Fields), 1)
	is.Equal(pe.Fields[0].Field, "/sheet/spreadsheetId")
	is.Equal(pe.Fields[0].Code, "NOT_GRANTED")
}
