package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/devstack"
)

// A storage failure is answered with the code of what failed, without any
// handler choosing it: a failed read is STORAGE_UNAVAILABLE with Retry-After,
// a failed write GCS_WRITE_FAILED.
func TestStorageFailuresAreClassified(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	faults := devstack.NewFaults(1)
	a := startApp(t, nil, faults)
	body := `{"runMode":"dry_run","rows":[{"prompt":"a lighthouse"}]}`
	ok := post(t, a.base+"/batch/images", body, nil)
	is.Equal(ok.status, http.StatusAccepted)
	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))

	// 403 is not retried: every call fails at once.
	faults.SetFailures(1, http.StatusForbidden)
	read := get(t, a.base+"/batch/"+ok.str("batchId"), nil)
	is.Equal(read.status, http.StatusServiceUnavailable)
	is.Equal(read.str("code"), "STORAGE_UNAVAILABLE") // the batch could not be read
	is.Equal(read.header.Get("Retry-After"), "1")     // retry shortly
	write := post(t, a.base+"/batch/images", body, nil)
	is.Equal(write.status, http.StatusServiceUnavailable)
	is.Equal(write.str("code"), "GCS_WRITE_FAILED") // the manifest could not be written
}
