package batchindex

import (
	"encoding/base64"
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
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
// ErrBadCursor. The key is a position, usually an entry's: a page ends
// where the next name starts, whatever that name is.
func DecodeCursor(user, filter, cursor string) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return "", ErrBadCursor
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 4 || parts[0] != cursorVersion || parts[1] != cursorTag(user) || parts[2] != filter {
		return "", ErrBadCursor
	}
	if !validPosition(parts[3]) {
		return "", ErrBadCursor
	}
	return parts[3], nil
}

// validPosition reports whether key can be where a listing starts: any name
// a listing of the prefix returned. It only ever bounds a listing of the
// caller's own prefix, so it needs to be sane, not an entry.
func validPosition(key string) bool {
	if key == "" || len(key) > 512 || !utf8.ValidString(key) {
		return false
	}
	for _, r := range key {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
