package progress

import (
	"net/http"
	"sync"

	"github.com/assetgen/assetgen/shared/problem"
)

// userStreams counts each user's open streams on this instance, so one user
// cannot hold every stream an instance can serve. A user without open streams
// has no entry: the map holds only users streaming now, one int each.
type userStreams struct {
	max  int // 0: no cap
	mu   sync.Mutex
	open map[string]int
}

func newUserStreams(max int) *userStreams {
	return &userStreams{max: max, open: map[string]int{}}
}

// acquire counts one more stream of user, unless user is at the cap.
func (u *userStreams) acquire(user string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.max > 0 && u.open[user] >= u.max {
		return false
	}
	u.open[user]++
	return true
}

// release counts one stream of user less.
func (u *userStreams) release(user string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.open[user] <= 1 {
		delete(u.open, user)
		return
	}
	u.open[user]--
}

// refuse answers 429 RATE_LIMITED to a user who has max streams open on
// this instance.
func (u *userStreams) refuse(w http.ResponseWriter, r *http.Request) {
	problem.Write(w, r, &problem.Error{Code: problem.RateLimited, RetryAfter: 30,
		Detail: "too many progress streams open for this account; close one or retry later",
		Extra:  map[string]any{"maxStreams": u.max}})
}
