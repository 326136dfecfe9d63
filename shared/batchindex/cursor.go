package batchindex

import (
	"encoding/base64"
	"errors"
	"strings"
)

// ErrBadCursor means a cursor is not one this package made for this user and
// this filter.
var ErrBadCursor = errors.New("batchindex: bad cursor")

// cursorVersion starts every cursor, so the format can change.
const cursorVersion = "c1"

// cursorTag binds a cursor to its user: the start of the user's key. A cursor
// is only ever a position within the caller's own prefix, so another user's
// cannot show that user anything; the tag makes it a clear error instead of a
// page from an arbitrary position.
func cursorTag(user string) string { return UserKey(user)[:8] }

// EncodeCursor is the opaque cursor that resumes user's list at the entry
// named key, under filter (the status asked for, or "").
func EncodeCursor(user, filter, key string) string {
	raw := strings.Join([]string{cursorVersion, cursorTag(user), filter, key}, ":")
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// DecodeCursor returns the key a cursor resumes at. A cursor of another user,
// made under another filter, or not made by EncodeCursor at all is
// ErrBadCursor.
func DecodeCursor(user, filter, cursor string) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return "", ErrBadCursor
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 4 || parts[0] != cursorVersion || parts[1] != cursorTag(user) || parts[2] != filter {
		return "", ErrBadCursor
	}
	if _, ok := ParseKey(parts[3]); !ok {
		return "", ErrBadCursor
	}
	return parts[3], nil
}
