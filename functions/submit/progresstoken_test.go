package submit_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

// GET /batch/{id}/progress-token names what it answers as the submit answer
// does (progressUrl, progressTokenExpiresAt), and still answers the former
// expiresAt, with the same value, for clients written against it.
func TestProgressTokenAnswersTheSubmitsNames(t *testing.T) {
	is := is.New(t)
	hs := newHarness(t)
	sub := hs.submit(t, "alice", `{"runMode":"dry_run","rows":[{"prompt":"a token"}]}`)

	w := hs.do(http.MethodGet, "/batch/"+sub.BatchID+"/progress-token", "alice", "")
	is.Equal(w.Code, http.StatusOK)
	var fields map[string]json.RawMessage
	is.NoErr(json.Unmarshal(w.Body.Bytes(), &fields)) // a JSON object
	var got struct {
		ProgressURL            string    `json:"progressUrl"`
		ProgressTokenExpiresAt time.Time `json:"progressTokenExpiresAt"`
		ExpiresAt              time.Time `json:"expiresAt"`
	}
	is.NoErr(json.Unmarshal(w.Body.Bytes(), &got))
	is.Equal(len(fields), 3)                                                                          // progressUrl, progressTokenExpiresAt and the deprecated expiresAt, nothing else
	is.True(strings.HasPrefix(got.ProgressURL, "http://submit.test/progress/"+sub.BatchID+"?token=")) // a stream URL with a token
	is.True(got.ProgressTokenExpiresAt.After(time.Now()))                                             // that has not expired
	is.True(got.ExpiresAt.Equal(got.ProgressTokenExpiresAt))                                          // the former name says the same
	is.True(!got.ProgressTokenExpiresAt.Before(sub.ProgressTokenExpiresAt))                           // and no sooner than the submit's token
}
