package progress

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/ledger"
	"github.com/assetgen/assetgen/shared/problem"
)

// batchOf records a running one-row batch owned by user.
func (s *stack) batchOf(t testing.TB, user string) string {
	t.Helper()
	m := &ledger.Manifest{Schema: 1, BatchID: batch.NewID(), Owner: user, RunMode: ledger.DryRun,
		Model: "gemini-2.5-flash-image", CreatedAt: time.Now().UTC(),
		Rows: []ledger.ManifestRow{{Index: 0, Prompt: "a fox", Variants: 1, AspectRatio: "1:1"}}}
	if err := s.clients.Ledger.CreateManifest(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	return m.BatchID
}

// streamAs opens GET /progress/{id} as user and returns the response; the
// stream stays open until the returned func closes it.
func (in *instance) streamAs(ctx context.Context, t testing.TB, user, id string) (*http.Response, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.srv.URL+"/progress/"+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(auth.HeaderUser, user)
	resp, err := in.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	closed := func() {
		cancel()
		resp.Body.Close()
	}
	t.Cleanup(closed)
	return resp, closed
}

// One user holds at most MaxStreamsPerUser streams of an instance: the next
// one is refused with 429 RATE_LIMITED before it starts, another user's
// stream is still accepted, and a stream that ends frees its place.
func TestStreamsPerUserAreCapped(t *testing.T) {
	is := is.New(t)
	ctx := testCtx(t, 60*time.Second)
	st := newStack(t, nil)
	cfg := testConfig()
	cfg.MaxStreamsPerUser = 3
	in := st.newInstance(t, cfg, nil)
	mine, theirs := st.batchOf(t, "mallory"), st.batchOf(t, "alice")

	var open []func()
	for range cfg.MaxStreamsPerUser {
		resp, closeIt := in.streamAs(ctx, t, "mallory", mine)
		is.Equal(resp.StatusCode, http.StatusOK) // within the cap
		open = append(open, closeIt)
	}
	resp, _ := in.streamAs(ctx, t, "mallory", mine)
	is.Equal(resp.StatusCode, http.StatusTooManyRequests)          // one stream too many
	is.Equal(resp.Header.Get("Content-Type"), problem.ContentType) // as a problem document
	is.Equal(resp.Header.Get("Retry-After"), "30")                 // saying when to retry
	var doc struct {
		problem.Document
		MaxStreams int `json:"maxStreams"`
	}
	is.NoErr(json.NewDecoder(resp.Body).Decode(&doc))
	is.Equal(doc.Code, problem.RateLimited) // the rate-limit code
	is.Equal(doc.MaxStreams, cfg.MaxStreamsPerUser)
	is.Equal(in.hub.Stats().Watchers, cfg.MaxStreamsPerUser) // the refused request never subscribed

	other, _ := in.streamAs(ctx, t, "alice", theirs)
	is.Equal(other.StatusCode, http.StatusOK) // another user is not affected

	open[0]()
	// The closed stream's handler ends on its own schedule: the user's place
	// is free once it has, and a new stream is accepted then.
	accepted := eventually(ctx, func() bool {
		resp, closeIt := in.streamAs(ctx, t, "mallory", mine)
		if resp.StatusCode == http.StatusOK {
			return true
		}
		closeIt()
		return false
	})
	is.True(accepted) // a stream that ended frees its place
}

func TestUserStreamsCountDownToNothing(t *testing.T) {
	is := is.New(t)
	u := newUserStreams(2)
	is.True(u.acquire("a"))
	is.True(u.acquire("a"))
	is.True(!u.acquire("a")) // at the cap
	is.True(u.acquire("b"))  // per user
	u.release("a")
	is.True(u.acquire("a")) // a released place is free again
	u.release("a")
	u.release("a")
	u.release("b")
	is.Equal(len(u.open), 0) // users without streams cost nothing

	unlimited := newUserStreams(0)
	for range 100 {
		is.True(unlimited.acquire("a")) // 0 means no cap
	}
}
