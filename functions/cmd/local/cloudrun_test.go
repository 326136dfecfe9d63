package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/cloudtasks/apiv2/cloudtaskspb"
	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/queue"
)

// With Cloud Run's IAM check before generate, tasks reach generate with their
// token's signature removed, as they do on Cloud Run, and a batch still runs to
// done; a task of another account is refused by the check before generate.
func TestBatchThroughCloudRunIAM(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := startAppWith(t, map[string]string{"LOCAL_CLOUD_RUN_IAM": "true", "TASKS_MAX_ATTEMPTS": "2"}, options{})
	is.True(a.iam != nil)                                // the check is in place
	is.Equal(a.cfg.TasksOIDCAudience, a.cfg.GenerateURL) // generate checks tokens for its own URL
	is.Equal(a.cfg.TasksServiceAccount, localInvoker)    // of the queue's account

	sub := (&stack{base: a.base}).submit(t, `{"runMode":"dry_run","rows":[{"prompt":"one","variants":2},{"prompt":"two"}]}`)
	_, _, done := readToDone(t, streamWithin(t, sub.ProgressURL, time.Minute))
	is.Equal(done.Status, "done")        // the batch ran to done through the check
	is.Equal(done.VariantCounts.Done, 3) // every image made
	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))
	is.Equal(a.iam.Stats(), devstack.IAMStats{Passed: 2}) // each row task passed the check once and was accepted

	// A task whose token names another account.
	body, err := json.Marshal(queue.Task{BatchID: sub.BatchID, Row: 0})
	is.NoErr(err)
	_, err = a.platform.Tasks.CreateTask(deadline(t, 10*time.Second), &cloudtaskspb.CreateTaskRequest{
		Parent: a.cfg.Queue,
		Task: &cloudtaskspb.Task{MessageType: &cloudtaskspb.Task_HttpRequest{HttpRequest: &cloudtaskspb.HttpRequest{
			Url: a.cfg.GenerateURL, HttpMethod: cloudtaskspb.HttpMethod_POST, Body: body,
			AuthorizationHeader: &cloudtaskspb.HttpRequest_OidcToken{OidcToken: &cloudtaskspb.OidcToken{
				ServiceAccountEmail: "intruder@elsewhere.iam.gserviceaccount.com",
			}},
		}}},
	})
	is.NoErr(err) // the queue takes it
	is.NoErr(a.tasks.WaitIdle(deadline(t, 30*time.Second)))
	is.Equal(a.iam.Stats(), devstack.IAMStats{Passed: 2, Forbidden: 2}) // both attempts refused before generate
	is.Equal(a.tasks.Stats().Dropped, int64(1))                         // and the task given up

	// Without a token the check answers as Cloud Run does, not as generate.
	resp, err := http.Post(a.cfg.GenerateURL, "application/json", strings.NewReader(string(body)))
	is.NoErr(err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	is.Equal(resp.StatusCode, http.StatusUnauthorized)                              // 401
	is.True(strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html"))        // Cloud Run's page
	is.True(strings.Contains(string(page), "Your client does not have permission")) // not a problem document
}
