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

	is.Equal(queue.Task{BatchID: id, Row: 9}.ID(), own) // a submit's task keeps the row's own name
	retry := queue.Task{BatchID: id, Row: 9, Round: 2}.ID()
	is.True(taskID.MatchString(retry))                               // a retry round's task id is valid
	is.True(retry != own)                                            // not the name the row's first task took
	is.True(retry != queue.Task{BatchID: id, Row: 9, Round: 1}.ID()) // nor an earlier round's
	is.True(strings.HasPrefix(retry, own+"-"))                       // and names the row the same way
}
