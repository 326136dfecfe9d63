package idempotency_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/bucket"
	"github.com/assetgen/assetgen/shared/cloud"
	"github.com/assetgen/assetgen/shared/devstack"
	"github.com/assetgen/assetgen/shared/devstack/stacktest"
	"github.com/assetgen/assetgen/shared/idempotency"
)

func TestValidKey(t *testing.T) {
	tests := []struct {
		name string
		key  string
		want bool
	}{
		{"empty", "", false},
		{"one char", "a", true},
		{"uuid", "0b8f0a4e-7c1e-4c7e-9a55-0f4f3e6c2d11", true},
		{"printable punctuation", `!"#$%&'()*+,-./:;<=>?@[\]^_{|}~`, true},
		{"space inside", "key with spaces", true},
		{"255 chars", strings.Repeat("k", 255), true},
		{"256 chars", strings.Repeat("k", 256), false},
		{"tab", "a\tb", false},
		{"newline", "a\nb", false},
		{"NUL", "a\x00b", false},
		{"DEL", "a\x7fb", false},
		{"non-ASCII", "clé", false},
		{"emoji", "🔑", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			is.Equal(idempotency.ValidKey(tt.key), tt.want)
		})
	}
}

func TestBodyHash(t *testing.T) {
	is := is.New(t)
	is.Equal(idempotency.BodyHash(nil), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") // SHA-256 of nothing
	is.Equal(idempotency.BodyHash([]byte("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
	is.True(idempotency.BodyHash([]byte(`{"a":1}`)) != idempotency.BodyHash([]byte(`{"a":2}`))) // bodies differ
}

func TestObject(t *testing.T) {
	is := is.New(t)
	name := idempotency.Object("alice@example.com", "my-key")
	is.True(strings.HasPrefix(name, "idempotency/"))
	is.True(strings.HasSuffix(name, ".json"))
	is.True(!strings.Contains(name, "alice"))                               // the user is hashed
	is.True(!strings.Contains(name, "my-key"))                              // so is the key
	is.Equal(name, idempotency.Object("alice@example.com", "my-key"))       // stable
	is.True(name != idempotency.Object("bob@example.com", "my-key"))        // per user
	is.True(name != idempotency.Object("alice@example.com", "other"))       // per key
	is.True(idempotency.Object("ab", "c") != idempotency.Object("a", "bc")) // the parts are separated
}

func TestRecordLive(t *testing.T) {
	is := is.New(t)
	created := time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)
	r := idempotency.Record{CreatedAt: created}
	is.True(r.Live(created))                                        // fresh
	is.True(r.Live(created.Add(idempotency.TTL - time.Nanosecond))) // to the last instant
	is.True(!r.Live(created.Add(idempotency.TTL)))                  // expired at 24 h
	is.True(!r.Live(created.Add(25 * time.Hour)))
}

func TestDecide(t *testing.T) {
	now := time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)
	fresh := idempotency.Record{BodySHA256: "body-a", BatchID: "new", CreatedAt: now}
	live := idempotency.Record{BodySHA256: "body-a", BatchID: "old", CreatedAt: now.Add(-time.Hour), Committed: true}
	liveOther := idempotency.Record{BodySHA256: "body-b", BatchID: "old", CreatedAt: now.Add(-time.Hour)}
	expiredOther := idempotency.Record{BodySHA256: "body-b", BatchID: "old", CreatedAt: now.Add(-25 * time.Hour), Committed: true}
	tests := []struct {
		name      string
		cur       idempotency.Record
		exists    bool
		want      idempotency.Record
		wantWrite bool
		wantErr   error
	}{
		{"absent: fresh write", idempotency.Record{}, false, fresh, true, nil},
		{"absent with leftovers: fresh write", live, false, fresh, true, nil},
		{"live, same body: reuse, no write", live, true, live, false, nil},
		{"live, other body: conflict", liveOther, true, liveOther, false, idempotency.ErrConflict},
		{"expired, other body: fresh write", expiredOther, true, fresh, true, nil},
		{"expired at exactly 24h: fresh write", idempotency.Record{BodySHA256: "body-a", BatchID: "old", CreatedAt: now.Add(-idempotency.TTL)}, true, fresh, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			got, write, err := idempotency.Decide(tt.cur, tt.exists, fresh, now)
			is.True(errors.Is(err, tt.wantErr) || (err == nil && tt.wantErr == nil))
			is.Equal(write, tt.wantWrite)
			is.Equal(got, tt.want)
		})
	}
}

func readRecord(t *testing.T, c *cloud.Clients, user, key string) (idempotency.Record, bool) {
	t.Helper()
	b, err := c.Bucket.ReadBytes(context.Background(), idempotency.Object(user, key))
	if err != nil {
		return idempotency.Record{}, false
	}
	var r idempotency.Record
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r, true
}

// Concurrent submits of one key and body agree on one batch: exactly one of
// them creates the record, and every one gets its batch id.
func TestConcurrentClaimsAgree(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	faults := devstack.NewFaults(1)
	c := stacktest.Open(t, faults)
	keys := idempotency.New(c.Bucket)
	body := idempotency.BodyHash([]byte(`{"rows":[{"prompt":"fox"}]}`))

	const n = 20
	type result struct {
		proposed string
		rec      idempotency.Record
		created  bool
		err      error
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			proposed := fmt.Sprintf("batch-%02d", i)
			// Around midnight, twins may see different days.
			day := []string{"2025-03-01", "2025-03-02"}[i%2]
			rec, created, err := keys.Claim(context.Background(), "u", "key-1", idempotency.Record{BodySHA256: body, BatchID: proposed, BudgetDay: day})
			results[i] = result{proposed, rec, created, err}
		})
	}
	close(start)
	wg.Wait()

	created := 0
	winner, day := "", ""
	for _, r := range results {
		is.NoErr(r.err) // every claim succeeds
		if r.created {
			created++
			winner, day = r.proposed, r.rec.BudgetDay
		}
	}
	is.Equal(created, 1) // exactly one created the record
	for _, r := range results {
		is.Equal(r.rec.BatchID, winner) // and everyone got its batch id
		is.Equal(r.rec.BudgetDay, day)  // and its budget day
		is.Equal(r.rec.BodySHA256, body)
		is.True(!r.rec.Committed)
	}
	stored, ok := readRecord(t, c, "u", "key-1")
	is.True(ok)
	is.Equal(stored.BatchID, winner) // the bucket agrees
	obj := idempotency.Object("u", "key-1")
	is.Equal(faults.WritesOf(obj)[obj], 1) // written once
}

func TestClaimSameBodyReusesOtherBodyConflicts(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	c := stacktest.Open(t, nil)
	ctx := context.Background()
	keys := idempotency.New(c.Bucket)

	rec, created, err := keys.Claim(ctx, "u", "k", idempotency.Record{BodySHA256: "body-a", BatchID: "b1"})
	is.NoErr(err)
	is.True(created)
	is.Equal(rec.BatchID, "b1")
	is.True(time.Since(rec.CreatedAt) < time.Minute) // stamped now

	rec, created, err = keys.Claim(ctx, "u", "k", idempotency.Record{BodySHA256: "body-a", BatchID: "b2"})
	is.NoErr(err)
	is.True(!created)           // a replay
	is.Equal(rec.BatchID, "b1") // gets the first batch

	rec, created, err = keys.Claim(ctx, "u", "k", idempotency.Record{BodySHA256: "body-b", BatchID: "b3"})
	is.True(errors.Is(err, idempotency.ErrConflict)) // another body is a conflict
	is.True(!created)
	is.Equal(rec.BatchID, "b1") // reporting the record in force
	stored, _ := readRecord(t, c, "u", "k")
	is.Equal(stored.BodySHA256, "body-a") // which is untouched
}

func TestClaimsOfDifferentUsersAreIndependent(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	c := stacktest.Open(t, nil)
	ctx := context.Background()
	keys := idempotency.New(c.Bucket)
	a, createdA, err := keys.Claim(ctx, "alice", "shared-key", idempotency.Record{BodySHA256: "body-a", BatchID: "batch-a"})
	is.NoErr(err)
	b, createdB, err := keys.Claim(ctx, "bob", "shared-key", idempotency.Record{BodySHA256: "body-b", BatchID: "batch-b"})
	is.NoErr(err) // another user's body is no conflict
	is.True(createdA && createdB)
	is.Equal(a.BatchID, "batch-a")
	is.Equal(b.BatchID, "batch-b") // each user has their own batch
}

func TestCommit(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	c := stacktest.Open(t, nil)
	ctx := context.Background()
	keys := idempotency.New(c.Bucket)
	_, _, err := keys.Claim(ctx, "u", "k", idempotency.Record{BodySHA256: "body", BatchID: "b1"})
	is.NoErr(err)

	is.True(errors.Is(keys.Commit(ctx, "u", "k", "other-batch"), idempotency.ErrLost)) // another batch's commit is refused…
	rec, _, err := keys.Claim(ctx, "u", "k", idempotency.Record{BodySHA256: "body", BatchID: "b2"})
	is.NoErr(err)
	is.True(!rec.Committed) // …does not commit this one

	is.NoErr(keys.Commit(ctx, "u", "k", "b1"))
	is.NoErr(keys.Commit(ctx, "u", "k", "b1")) // committing twice is fine
	rec, created, err := keys.Claim(ctx, "u", "k", idempotency.Record{BodySHA256: "body", BatchID: "b3"})
	is.NoErr(err)
	is.True(!created)
	is.True(rec.Committed) // a replay sees the batch committed
	is.Equal(rec.BatchID, "b1")

	is.True(errors.Is(keys.Commit(ctx, "u", "missing", "b1"), idempotency.ErrLost)) // no record: the key was rolled back
	_, found := readRecord(t, c, "u", "missing")
	is.True(!found) // and nothing created
}

func TestForget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		queue, commit bool
		forgetWith    string
		wantGone      bool
	}{
		{"uncommitted, created by that batch: removed", false, false, "b1", true},
		{"queuing: kept", true, false, "b1", false},
		{"committed: kept", true, true, "b1", false},
		{"bound to another batch: kept", false, false, "b2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			c := stacktest.Open(t, nil)
			ctx := context.Background()
			keys := idempotency.New(c.Bucket)
			_, _, err := keys.Claim(ctx, "u", "k", idempotency.Record{BodySHA256: "body", BatchID: "b1"})
			is.NoErr(err)
			if tt.queue {
				is.NoErr(keys.BeginQueuing(ctx, "u", "k", "b1"))
			}
			if tt.commit {
				is.NoErr(keys.Commit(ctx, "u", "k", "b1"))
			}
			free, err := keys.Forget(ctx, "u", "k", tt.forgetWith)
			is.NoErr(err)
			is.Equal(free, tt.wantGone) // the caller learns whether the batch is still its own
			rec, found := readRecord(t, c, "u", "k")
			is.Equal(!found, tt.wantGone)
			if found {
				is.Equal(rec.BatchID, "b1") // the record in force is untouched
			}

			// A retry after Forget starts afresh; otherwise it replays b1.
			rec, created, err := keys.Claim(ctx, "u", "k", idempotency.Record{BodySHA256: "body", BatchID: "b9"})
			is.NoErr(err)
			is.Equal(created, tt.wantGone)
			if tt.wantGone {
				is.Equal(rec.BatchID, "b9")
			} else {
				is.Equal(rec.BatchID, "b1")
			}
		})
	}
}

func TestForgetMissingRecord(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	c := stacktest.Open(t, nil)
	free, err := idempotency.New(c.Bucket).Forget(context.Background(), "u", "never", "b1")
	is.NoErr(err)
	is.True(free) // nothing to forget: the batch is nobody else's
}

// A claim whose record landed but whose answer was lost created it: taken
// for a twin request's claim, the submit would finish a batch it does not own
// and never commit the key.
func TestClaimWhoseAnswerIsLostCreates(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	faults := devstack.NewFaults(1)
	c := stacktest.Open(t, faults)
	faults.LoseAnswers(idempotency.Object("u", "k"), 1)
	rec, created, err := idempotency.New(c.Bucket).Claim(context.Background(), "u", "k", idempotency.Record{BodySHA256: "body", BatchID: "batch-1"})
	is.NoErr(err)
	is.True(created)                                // this call's record
	is.Equal(rec.BatchID, "batch-1")                // names its batch
	is.Equal(faults.Counts().LostAnswers, int64(1)) // though its answer was lost
}

// A record older than 24 hours no longer binds its key: a new claim replaces it,
// even with another body.
func TestExpiredRecordIsReplaced(t *testing.T) {
	t.Parallel()
	for _, body := range []string{"old-body", "new-body"} {
		t.Run(body, func(t *testing.T) {
			is := is.New(t)
			c := stacktest.Open(t, nil)
			ctx := context.Background()
			old := idempotency.Record{BodySHA256: "old-body", BatchID: "old-batch", CreatedAt: time.Now().UTC().Add(-25 * time.Hour), Committed: true}
			b, err := json.Marshal(old)
			is.NoErr(err)
			_, err = c.Bucket.Create(ctx, idempotency.Object("u", "k"), b, bucket.Meta{ContentType: "application/json"})
			is.NoErr(err)

			rec, created, err := idempotency.New(c.Bucket).Claim(ctx, "u", "k", idempotency.Record{BodySHA256: body, BatchID: "new-batch"})
			is.NoErr(err)    // no conflict with an expired record
			is.True(created) // the claim replaced it
			is.Equal(rec.BatchID, "new-batch")
			is.True(!rec.Committed)
			stored, _ := readRecord(t, c, "u", "k")
			is.Equal(stored.BatchID, "new-batch") // in the bucket too
			is.Equal(stored.BodySHA256, body)
			is.True(time.Since(stored.CreatedAt) < time.Minute)
		})
	}
}

// A record 23 hours old still binds its key.
func TestRecentRecordStillBinds(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	c := stacktest.Open(t, nil)
	ctx := context.Background()
	old := idempotency.Record{BodySHA256: "old-body", BatchID: "old-batch", CreatedAt: time.Now().UTC().Add(-23 * time.Hour)}
	b, err := json.Marshal(old)
	is.NoErr(err)
	_, err = c.Bucket.Create(ctx, idempotency.Object("u", "k"), b, bucket.Meta{ContentType: "application/json"})
	is.NoErr(err)
	_, _, err = idempotency.New(c.Bucket).Claim(ctx, "u", "k", idempotency.Record{BodySHA256: "new-body", BatchID: "new-batch"})
	is.True(errors.Is(err, idempotency.ErrConflict)) // still live: another body conflicts
}

// The first claim of a key fixes the day whose budget its batch reserves on: a
// retry after UTC midnight gets the first attempt's day, and so reserves where
// the batch will settle.
func TestClaimFixesTheBudgetDay(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	c := stacktest.Open(t, nil)
	ctx := context.Background()
	keys := idempotency.New(c.Bucket)
	rec, created, err := keys.Claim(ctx, "u", "k", idempotency.Record{BodySHA256: "body", BatchID: "b1", BudgetDay: "2025-03-01"})
	is.NoErr(err)
	is.True(created)
	is.Equal(rec.BudgetDay, "2025-03-01")

	rec, created, err = keys.Claim(ctx, "u", "k", idempotency.Record{BodySHA256: "body", BatchID: "b2", BudgetDay: "2025-03-02"})
	is.NoErr(err)
	is.True(!created)
	is.Equal(rec.BatchID, "b1")           // the same batch
	is.Equal(rec.BudgetDay, "2025-03-01") // on the first attempt's day
	peeked, live, err := keys.Peek(ctx, "u", "k")
	is.NoErr(err)
	is.True(live)
	is.Equal(peeked.BudgetDay, "2025-03-01") // as stored
}

func TestBeginQueuing(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	c := stacktest.Open(t, nil)
	ctx := context.Background()
	keys := idempotency.New(c.Bucket)
	is.True(errors.Is(keys.BeginQueuing(ctx, "u", "missing", "b1"), idempotency.ErrLost)) // no record: rolled back, no task may be created
	_, _, err := keys.Claim(ctx, "u", "k", idempotency.Record{BodySHA256: "body", BatchID: "b1"})
	is.NoErr(err)
	is.True(errors.Is(keys.BeginQueuing(ctx, "u", "k", "b2"), idempotency.ErrLost)) // another batch's key
	is.NoErr(keys.BeginQueuing(ctx, "u", "k", "b1"))
	is.NoErr(keys.BeginQueuing(ctx, "u", "k", "b1")) // twice is fine
	rec, _ := readRecord(t, c, "u", "k")
	is.True(rec.Queuing)    // marked
	is.True(!rec.Committed) // not committed yet
}

// A rollback that read the record just before a twin request marked it
// queuing must not take the record for forgotten: the twin's tasks may run,
// and the rollback would delete their batch.
func TestForgetLosesToATwinThatQueues(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	var keys *idempotency.Keys
	var once sync.Once
	var twinErr error
	name := idempotency.Object("u", "k")
	twin := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodDelete && strings.Contains(r.URL.Path, strings.TrimPrefix(name, "idempotency/")) {
				// Between the rollback's read and its delete, the twin marks the record.
				once.Do(func() { twinErr = keys.BeginQueuing(r.Context(), "u", "k", "b1") })
			}
			next.ServeHTTP(w, r)
		})
	}
	c := stacktest.OpenWith(t, twin)
	keys = idempotency.New(c.Bucket)
	ctx := context.Background()
	_, _, err := keys.Claim(ctx, "u", "k", idempotency.Record{BodySHA256: "body", BatchID: "b1"})
	is.NoErr(err)

	free, err := keys.Forget(ctx, "u", "k", "b1")
	is.NoErr(err)
	is.NoErr(twinErr) // the twin marked the record mid-rollback
	is.True(!free)    // and owns the batch now
	rec, found := readRecord(t, c, "u", "k")
	is.True(found) // the record stays
	is.True(rec.Queuing)
}
