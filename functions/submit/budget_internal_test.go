package submit

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/cloud"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/problem"
)

// budgetServer is testServer with wrap between the storage client and the
// emulator; users may spend userUSD a day each under the deployment's cap.
func budgetServer(t *testing.T, wrap func(http.Handler) http.Handler, userUSD float64, total budget.Total, patience time.Duration) (http.Handler, *server, *cloud.Clients) {
	t.Helper()
	return testServer(t, testServerOptions{wrap: wrap, userUSD: userUSD, total: total, patience: patience})
}

// two images of the default model: $0.078.
const liveBody = `{"runMode":"live","confirm":"CONFIRM","rows":[{"prompt":"a kite","variants":2}]}`

func problemDoc(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatalf("answer %d is not JSON: %s", rec.Code, rec.Body)
	}
	return doc
}

func budgetOf(t *testing.T, h http.Handler) api.Budget {
	t.Helper()
	rec := serve(h, http.MethodGet, "/budget", "", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /budget answered %d: %s", rec.Code, rec.Body)
	}
	var b api.Budget
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatal(err)
	}
	return b
}

// GET /budget shows the caller's budget and the deployment's cap.
func TestBudgetShowsTheUserAndTheTotal(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	h, _, _ := budgetServer(t, nil, 1, budget.Total{LimitUSD: 20, Shards: 4}, 10*time.Second)
	b := budgetOf(t, h)
	is.Equal(b.LimitUSD, 1.0)
	is.True(b.Total != nil)                                             // the cap is shown
	is.Equal(*b.Total, api.TotalBudget{LimitUSD: 20, RemainingUSD: 20}) // whole at first

	rec := serve(h, http.MethodPost, "/batch/images", liveBody, "")
	is.Equal(rec.Code, http.StatusAccepted)
	b = budgetOf(t, h)
	is.Equal(b.ReservedUSD, 0.078)                                          // the caller's reservation
	is.Equal(b.RemainingUSD, 0.922)                                         // out of the caller's dollar
	is.Equal(*b.Total, api.TotalBudget{LimitUSD: 20, RemainingUSD: 19.922}) // and out of the cap
}

// A cap that cannot cover the batch refuses it before anything is written,
// naming the cap and no amounts of other users.
func TestSubmitRefusedByTheCapBeforeAnyWrite(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	faults := devstack.NewFaults(1)
	h, _, _ := budgetServer(t, faults.Wrap, 1, budget.Total{LimitUSD: 0.05, Shards: 2}, 10*time.Second)
	rec := serve(h, http.MethodPost, "/batch/images", liveBody, "")
	is.Equal(rec.Code, http.StatusPaymentRequired)
	doc := problemDoc(t, rec)
	is.Equal(doc["code"], string(problem.BudgetExceeded))
	is.Equal(doc["limit"], limitTotal) // the deployment's cap was hit
	_, tells := doc["remainingUsd"]
	is.True(!tells)                                   // without what the others left of it
	is.Equal(faults.Counts().Writes, int64(0))        // refused before any write
	is.Equal(budgetOf(t, h).Total.RemainingUSD, 0.05) // nothing taken
}

// The user's own limit is named as such, with its amounts.
func TestSubmitRefusedByTheUsersBudgetNamesIt(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	h, _, _ := budgetServer(t, nil, 0.05, budget.Total{LimitUSD: 100, Shards: 2}, 10*time.Second)
	rec := serve(h, http.MethodPost, "/batch/images", liveBody, "")
	is.Equal(rec.Code, http.StatusPaymentRequired)
	doc := problemDoc(t, rec)
	is.Equal(doc["limit"], limitUser) // the caller's own budget was hit
	is.Equal(doc["limitUsd"], 0.05)   // with its amounts
	is.Equal(doc["remainingUsd"], 0.05)
}

// The cap fills between the check and the reservation (another user took
// it): the reservation is refused by the cap and the user's reservation,
// made first, is given back.
func TestSubmitRefusedByTheCapReleasesTheUsersReservation(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	var s *server
	var uploads atomic.Int32
	rival := make(chan error, 1)
	// The first upload of the submit is the user's reservation: as it lands,
	// a rival takes most of the cap.
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r)
			if strings.HasPrefix(r.URL.Path, "/upload/") && uploads.Add(1) == 1 {
				_, _, err := s.Budgets.Reserve(context.Background(), "rival", budget.Day(time.Now()), "rival", budget.FromUSD(0.05))
				rival <- err
			}
		})
	}
	h, s, _ := budgetServer(t, wrap, 1, budget.Total{LimitUSD: 0.1, Shards: 2}, 10*time.Second)
	rec := serve(h, http.MethodPost, "/batch/images", liveBody, "")
	is.NoErr(<-rival) // the rival took $0.05 of the $0.10
	is.Equal(rec.Code, http.StatusPaymentRequired)
	is.Equal(problemDoc(t, rec)["limit"], limitTotal) // refused by the cap
	b := budgetOf(t, h)
	is.Equal(b.ReservedUSD, 0.0)         // the user's reservation was given back
	is.Equal(b.RemainingUSD, 1.0)        // the whole day's budget is there
	is.Equal(b.Total.RemainingUSD, 0.05) // only the rival holds part of the cap
}

// A submit's reservation found only after the patience ran out (its write
// landed, its answer never came) is reported as not created; the batch id is
// this request's own all the same, so when the submit then fails before any
// task exists the reservation is released, in the user's account and the cap.
func TestSubmitReleasesItsOwnReservationFoundAfterThePatience(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	faults := devstack.NewFaults(1)
	faults.RejectWrites(layout.Batches, 1, http.StatusForbidden) // the manifest cannot be written
	var uploads atomic.Int32
	// The first upload of the submit is the user's reservation: it commits,
	// and its answer is held until the client gives up.
	wrap := func(next http.Handler) http.Handler {
		inner := faults.Wrap(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasPrefix(r.URL.Path, "/upload/") || uploads.Add(1) != 1 {
				inner.ServeHTTP(w, r)
				return
			}
			inner.ServeHTTP(httptest.NewRecorder(), r)
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
		})
	}
	h, _, _ := budgetServer(t, wrap, 1, budget.Total{LimitUSD: 10, Shards: 2}, time.Second)
	rec := serve(h, http.MethodPost, "/batch/images", liveBody, "")
	is.True(rec.Code >= 500) // the submit failed: the manifest was refused
	b := budgetOf(t, h)
	is.Equal(b.ReservedUSD, 0.0)         // the reservation it made was released
	is.Equal(b.RemainingUSD, 1.0)        // the whole day's budget is there
	is.Equal(b.Total.RemainingUSD, 10.0) // and the whole cap
}
