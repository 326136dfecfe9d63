package health_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/health"
	"github.com/assetgen/assetgen/shared/problem"
)

// object is a config object whose validity the test sets.
type object struct {
	name string
	bad  atomic.Bool
}

func (o *object) Object() string { return o.name }

func (o *object) Valid(context.Context) error {
	if o.bad.Load() {
		return errors.New("does not parse")
	}
	return nil
}

// Config checks run on every probe, so an invalid object shows at once, named;
// other checks keep their cached outcome for the TTL.
func TestReadinessNamesAnInvalidConfigObjectAtOnce(t *testing.T) {
	is := is.New(t)
	var probes atomic.Int32
	slow := health.Check{Name: "bucket", Fn: func(context.Context) error { probes.Add(1); return nil }}
	keys := &object{name: "config/apikeys.json"}
	rd := health.NewReadiness(time.Hour, slow)
	rd.Add(health.ConfigValid(keys))

	get := func() (int, map[string]string, problem.Code) {
		rec := httptest.NewRecorder()
		rd.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		var doc struct {
			Checks map[string]string `json:"checks"`
			Code   problem.Code      `json:"code"`
		}
		is.NoErr(json.Unmarshal(rec.Body.Bytes(), &doc)) // JSON either way
		return rec.Code, doc.Checks, doc.Code
	}
	status, checks, _ := get()
	is.Equal(status, http.StatusOK)
	is.Equal(checks["config/apikeys.json"], "ok")

	keys.bad.Store(true)
	status, checks, code := get()
	is.Equal(status, http.StatusServiceUnavailable)    // not ready within the TTL
	is.Equal(code, problem.NotReady)                   // as a problem document
	is.Equal(checks["config/apikeys.json"], "failing") // naming the object
	is.Equal(checks["bucket"], "ok")                   // the cached check keeps its outcome
	is.Equal(probes.Load(), int32(1))                  // and is not rerun

	keys.bad.Store(false)
	status, _, _ = get()
	is.Equal(status, http.StatusOK) // recovered at once
}
