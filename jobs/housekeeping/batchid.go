package main

import (
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Batch ids are UUIDv7 (batch.NewID): the first 48 bits are the Unix time in
// milliseconds, so ids sort by the time they were issued. Listings use that to
// start or end at a point in time.

// idTime returns when a batch id was issued; ok is false for an id that is not
// a UUIDv7 (such ids are never issued, so they are left alone).
func idTime(id string) (t time.Time, ok bool) {
	u, err := uuid.Parse(id)
	if err != nil || u.Version() != 7 {
		return time.Time{}, false
	}
	ms := int64(u[0])<<40 | int64(u[1])<<32 | int64(u[2])<<24 | int64(u[3])<<16 | int64(u[4])<<8 | int64(u[5])
	return time.UnixMilli(ms).UTC(), true
}

// idFloor is the smallest UUIDv7 issued at t: every id issued before t sorts
// below it, every id issued at or after t sorts at or above it.
func idFloor(t time.Time) string {
	ms := uint64(t.UnixMilli())
	return fmt.Sprintf("%08x-%04x-7000-8000-000000000000", ms>>16, ms&0xffff)
}
