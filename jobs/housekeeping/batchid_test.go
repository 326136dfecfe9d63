package main

import (
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/batch"
	"github.com/assetgen/assetgen/shared/budget"
	"github.com/assetgen/assetgen/shared/idempotency"
	"github.com/assetgen/assetgen/shared/layout"
	"github.com/assetgen/assetgen/shared/ledger"
)

func TestIDTime(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	before := time.Now().Add(-time.Millisecond)
	got, ok := idTime(batch.NewID())
	is.True(ok)
	is.True(!got.Before(before.Truncate(time.Millisecond)) && !got.After(time.Now())) // the time the id was issued

	_, ok = idTime("6ba7b810-9dad-41d1-80b4-00c04fd430c8") // a v4 UUID
	is.True(!ok)
	_, ok = idTime("not-an-id")
	is.True(!ok)

	at := time.Date(2026, 2, 3, 4, 5, 6, 789e6, time.UTC)
	got, ok = idTime(idAt(at))
	is.True(ok)
	is.Equal(got, at)
}

// idFloor splits ids by time exactly, which the listings' offsets rely on.
func TestIDFloorOrdersByTime(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	at := time.Date(2026, 2, 3, 4, 5, 6, 789e6, time.UTC)
	floor := idFloor(at)
	is.True(batch.ValidID(floor))
	got, ok := idTime(floor)
	is.True(ok)
	is.Equal(got, at)
	for range 200 {
		is.True(idAt(at.Add(-time.Millisecond)) < floor) // issued before: below
		is.True(idAt(at) >= floor)                       // issued at or after: at or above
		is.True(idAt(at.Add(time.Millisecond)) > floor)
	}
	is.True(idFloor(at) < idFloor(at.Add(time.Millisecond)))
}

// The prefixes the job lists are the ones the writers use.
func TestPrefixesMatchTheWriters(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	id := batch.NewID()
	is.Equal(ledger.BatchPrefix(id), layout.Batches+id+"/")
	is.True(strings.HasPrefix(idempotency.Object("u", "k"), layout.Idempotency))
	is.True(strings.HasPrefix(budget.Object("2026-01-02", "u"), layout.Budgets+"2026-01-02/"))
}
