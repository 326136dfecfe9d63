package main

import (
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/layout"
)

// The budget reservation lands, but its answer is lost and the client's retry
// fails for good, so the submit cannot know it reserved: it fails, and its
// rollback releases the reservation all the same. (Before, only a reservation
// known to be this submit's was released, and this one held its share of the
// day's budget for a batch that never existed.)
func TestSubmitReleasesAReservationWhoseOutcomeIsUnknown(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a, u := unknownOutcomeStack(t)
	u.arm(layout.Budgets)
	ans := post(t, a.base+"/batch/images", `{"runMode":"live","confirm":"CONFIRM","rows":[{"prompt":"a","variants":3}]}`, nil)
	is.True(ans.status >= 500)                        // the submit failed: the client may retry
	is.Equal(u.faults.Counts().LostAnswers, int64(1)) // after the reservation landed
	is.Equal(u.retriesRejected(), 1)                  // and its retry failed for good
	b := get(t, a.base+"/budget", nil)
	is.Equal(b.doc["reservedUsd"], 0.0)  // nothing stays reserved
	is.Equal(b.doc["remainingUsd"], 1.0) // the whole day's budget is there
	is.NoErr(a.tasks.WaitIdle(deadline(t, 10*time.Second)))
	is.Equal(a.tasks.Stats().Created, int64(0)) // no task was queued
}
