package submit

import (
	"math"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/problem"
)

// limiter bounds each user's submits on this instance: a token bucket per user
// (golang.org/x/time/rate), with the burst of one minute's allowance. Instances
// count separately, so the limit is per instance; the budget is the global
// bound on what a user can spend.
type limiter struct {
	perMinute int
	mu        sync.Mutex
	users     map[string]*entry
	swept     time.Time
}

type entry struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(perMinute int) *limiter {
	return &limiter{perMinute: perMinute, users: map[string]*entry{}}
}

// require answers 429 RATE_LIMITED with Retry-After to a user over the limit.
func (l *limiter) require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.From(r.Context())
		res := l.reserve(p.UserID, time.Now())
		if wait := res.Delay(); wait > 0 {
			res.Cancel()
			problem.Write(w, r, &problem.Error{Code: problem.RateLimited,
				Detail: "too many submits; retry after the delay in Retry-After", RetryAfter: int(math.Ceil(wait.Seconds()))})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (l *limiter) reserve(user string, now time.Time) *rate.Reservation {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.users[user]
	if e == nil {
		e = &entry{lim: rate.NewLimiter(rate.Limit(float64(l.perMinute)/60), l.perMinute)}
		l.users[user] = e
		// Forget users idle long enough for their bucket to be full again (a
		// fresh entry is the same); sweep at most once a minute, so a flood of
		// new users costs one pass a minute, not one per request.
		if len(l.users) > 10000 && now.Sub(l.swept) > time.Minute {
			l.swept = now
			for u, old := range l.users {
				if now.Sub(old.seen) > time.Minute {
					delete(l.users, u)
				}
			}
		}
	}
	e.seen = now
	return e.lim.ReserveN(now, 1)
}
