package submit

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/cloudtasks/apiv2/cloudtaskspb"
	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/auth"
	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/devstack"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time)         { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }
func (c *clock) day() string             { return budget.Day(c.now()) }
func (c *clock) advance(d time.Duration) { c.set(c.now().Add(d)) }

// clockedServer is testServer with its clock under the test's control.
func clockedServer(t *testing.T, c *clock, tf *devstack.TaskFaults) (http.Handler, *server) {
	t.Helper()
	h, s, _ := testServer(t, testServerOptions{tasks: tf, now: c.now})
	return h, s
}

func serve(h http.Handler, method, path, body, key string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set(HeaderIdempotencyKey, key)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// A submit whose first attempt began at 23:59:59 and whose retry comes after
// UTC midnight reserves on the first attempt's day — the day in the manifest,
// which settlement charges — and never on the new day, where a reservation
// would never be settled.
func TestRetryAcrossMidnightReservesOnTheFirstDay(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	c := &clock{}
	c.set(time.Date(2030, 3, 1, 23, 59, 59, 0, time.UTC))
	tf := &devstack.TaskFaults{}
	h, s := clockedServer(t, c, tf)
	// The first attempt stalls in its first CreateTask (a slow queue, a
	// frozen instance) until the retry is done.
	stalled, thaw := make(chan struct{}), make(chan struct{})
	tf.Before(func(ctx context.Context, n int, _ *cloudtaskspb.Task) error {
		if n == 1 {
			close(stalled)
			select {
			case <-thaw:
			case <-ctx.Done():
			}
		}
		return nil
	})
	body := `{"runMode":"live","confirm":"CONFIRM","rows":[{"prompt":"late night","variants":2}]}`
	first := make(chan *httptest.ResponseRecorder, 1)
	go func() { first <- serve(h, http.MethodPost, "/batch/images", body, "midnight") }()
	select {
	case <-stalled:
	case <-time.After(30 * time.Second):
		t.Fatal("the first attempt never reached the queue")
	}
	firstDay := c.day()
	c.advance(2 * time.Second) // 00:00:01, the next UTC day
	nextDay := c.day()
	is.True(firstDay != nextDay)

	retry := serve(h, http.MethodPost, "/batch/images", body, "midnight")
	close(thaw)
	is.Equal(retry.Code, http.StatusAccepted)
	var again api.SubmitResponse
	is.NoErr(json.Unmarshal(retry.Body.Bytes(), &again))
	done := <-first
	is.Equal(done.Code, http.StatusAccepted)
	var orig api.SubmitResponse
	is.NoErr(json.Unmarshal(done.Body.Bytes(), &orig))
	is.Equal(orig.BatchID, again.BatchID) // one batch

	ctx := context.Background()
	m, err := s.Store.Manifest(ctx, orig.BatchID)
	is.NoErr(err)
	is.Equal(m.BudgetDay, firstDay) // the batch settles on the first day
	old, err := s.Budgets.Get(ctx, auth.LocalUser, firstDay)
	is.NoErr(err)
	is.Equal(old.Reserved[orig.BatchID], budget.FromUSD(0.078)) // reserved there, once
	next, err := s.Budgets.Get(ctx, auth.LocalUser, nextDay)
	is.NoErr(err)
	is.Equal(len(next.Reserved), 0)      // and not on the new day
	is.Equal(again.Budget.Day, firstDay) // whose budget the retry answers

	// Cancelled after midnight, the batch settles on the day it reserved on.
	cancel := serve(h, http.MethodPost, "/batch/"+orig.BatchID+"/cancel", "", "")
	is.Equal(cancel.Code, http.StatusOK)
	old, err = s.Budgets.Get(ctx, auth.LocalUser, firstDay)
	is.NoErr(err)
	is.Equal(len(old.Reserved), 0) // released
	_, settled := old.Spent[orig.BatchID]
	is.True(settled) // by settlement, on the first day
	next, err = s.Budgets.Get(ctx, auth.LocalUser, nextDay)
	is.NoErr(err)
	is.Equal(len(next.Reserved)+len(next.Spent), 0) // the new day was never touched
}
