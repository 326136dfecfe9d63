package queue_test

import (
	"crypto/rand"
	"regexp"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/queue"
)

// taskID is what Cloud Tasks accepts as a task id.
var taskID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,500}$`)

func TestTaskIDs(t *testing.T) {
	is := is.New(t)
	id := batch.NewID()
	own := queue.TaskID(id, 9)
	is.True(taskID.MatchString(own))               // a valid task id
	is.Equal(own, queue.TaskID(id, 9))             // the same for the same row
	is.True(own != queue.TaskID(id, 8))            // another for another row
	is.True(strings.HasSuffix(own, "-"+id+"-r09")) // naming its batch and row
	again := queue.RequeueID(id, 9, rand.Text())
	is.True(taskID.MatchString(again))                    // a requeued task's id is valid too
	is.True(strings.HasPrefix(again, own+"-"))            // names the row the same way
	is.True(again != queue.RequeueID(id, 9, rand.Text())) // and differs each time
}
