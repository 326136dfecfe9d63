// Package health answers liveness (/healthz: the process serves) and readiness
// (/readyz: the dependencies accept work), caching readiness briefly so probes
// cannot breach Cloud Storage's write rate on the probe object.
package health

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/cached"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/problem"
)

// Check is one readiness check.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
	// EveryProbe runs the check on every probe instead of once per TTL: for
	// checks that read memory, whose state must show at once.
	EveryProbe bool
}

// ConfigValid fails while o was read but is invalid; the check is named for
// the object, so /readyz says which one an operator must fix. What it governs
// is refused meanwhile.
func ConfigValid(o cached.Validity) Check {
	return Check{Name: o.Object(), EveryProbe: true, Fn: o.Valid}
}

// BucketWrites proves the bucket accepts writes by overwriting the instance's
// probe object. Readiness caches the outcome: one object takes about one
// write per second.
func BucketWrites(b *bucket.Bucket, instance string) Check {
	return Check{Name: "bucket", Fn: func(ctx context.Context) error {
		body := fmt.Appendf(nil, `{"at":%q}`, time.Now().UTC().Format(time.RFC3339Nano))
		_, err := b.Put(ctx, layout.ProbeObject(instance), body, bucket.Meta{ContentType: "application/json"})
		return err
	}}
}

// BucketReads proves the bucket can be listed (readiness of read-only services).
func BucketReads(b *bucket.Bucket) Check {
	return Check{Name: "bucket", Fn: func(ctx context.Context) error {
		// The first page (or its failure) answers.
		for _, err := range b.List(ctx, bucket.Query{Prefix: layout.Probes}) {
			return err
		}
		return nil
	}}
}

// Live answers 200 while the process serves.
func Live() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// Readiness runs its checks at most once per TTL.
type Readiness struct {
	checks []Check
	ttl    time.Duration
	now    func() time.Time

	mu      sync.Mutex
	checked time.Time
	result  map[string]string
	err     error
}

// NewReadiness returns a readiness handler over checks, cached for ttl.
func NewReadiness(ttl time.Duration, checks ...Check) *Readiness {
	return &Readiness{checks: checks, ttl: ttl, now: time.Now}
}

// Add appends checks, for handlers that own a dependency of their own.
func (rd *Readiness) Add(checks ...Check) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	rd.checks = append(rd.checks, checks...)
	rd.checked = time.Time{}
}

// Check runs the checks (or returns the cached outcome of those that are
// cached; EveryProbe checks always run).
func (rd *Readiness) Check(ctx context.Context) (map[string]string, error) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if rd.checked.IsZero() || rd.now().Sub(rd.checked) >= rd.ttl {
		result := map[string]string{}
		var errs []error
		for _, c := range rd.checks {
			if !c.EveryProbe {
				errs = append(errs, run(ctx, c, result))
			}
		}
		rd.checked, rd.result, rd.err = rd.now(), result, errors.Join(errs...)
	}
	result := maps.Clone(rd.result)
	errs := []error{rd.err}
	for _, c := range rd.checks {
		if c.EveryProbe {
			errs = append(errs, run(ctx, c, result))
		}
	}
	return result, errors.Join(errs...)
}

// run runs one check and records its state in result.
func run(ctx context.Context, c Check, result map[string]string) error {
	if err := c.Fn(ctx); err != nil {
		result[c.Name] = "failing"
		return err
	}
	result[c.Name] = "ok"
	return nil
}

// ServeHTTP answers 200 with each check's state, or 503 NOT_READY.
func (rd *Readiness) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	result, err := rd.Check(r.Context())
	if err != nil {
		pe := problem.Wrap(problem.NotReady, err, "a dependency is failing")
		pe.Extra = map[string]any{"checks": result}
		problem.Write(w, r, pe)
		return
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": result})
}
