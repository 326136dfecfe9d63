package progress

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// Event ids are derived from the ledger alone, so any instance can resume any
// stream: "<batch tag>-<v0>.<v1>…~<expiry>", the version of every row the client
// has seen and, when it holds signed URLs, when the first of them expires (Unix
// seconds, base 36). A reconnect with Last-Event-ID gets exactly the row
// versions it lacks, and fresh URLs if the ones it holds are about to expire.

// batchTag ties an id to its batch, so an id from another batch is recognised
// as foreign instead of being misread.
func batchTag(batchID string) string {
	sum := sha256.Sum256([]byte(batchID))
	return hex.EncodeToString(sum[:3])
}

// formatID renders seen versions as an event id. Each row is written as its
// version plus one, so 0 means "never seen" and 1 "seen as submitted" (version 0).
func formatID(tag string, seen []int, held time.Time) string {
	b := make([]byte, 0, len(tag)+10+3*len(seen))
	return string(appendID(b, tag, len(seen), func(i int) int { return seen[i] }, held))
}

// appendID appends the id formatID renders to b, for rows rows whose seen
// versions seen gives.
func appendID(b []byte, tag string, rows int, seen func(int) int, held time.Time) []byte {
	b = append(b, tag...)
	b = append(b, '-')
	for i := range rows {
		if i > 0 {
			b = append(b, '.')
		}
		b = strconv.AppendInt(b, int64(max(seen(i)+1, 0)), 10)
	}
	if !held.IsZero() {
		b = append(b, '~')
		b = strconv.AppendInt(b, held.Unix(), 36)
	}
	return b
}

// parseID reads the versions back (-1 for a row never seen) and the expiry of
// the URLs the client holds (zero if none). ok is false for an empty, malformed
// or foreign id, or one with the wrong number of rows: such a client gets a full
// snapshot.
func parseID(id, tag string, rows int) (seen []int, held time.Time, ok bool) {
	rest, found := strings.CutPrefix(id, tag+"-")
	if !found || rows == 0 {
		return nil, time.Time{}, false
	}
	if versions, exp, hasExp := strings.Cut(rest, "~"); hasExp {
		secs, err := strconv.ParseInt(exp, 36, 64)
		if err != nil || secs <= 0 || len(exp) > 8 {
			return nil, time.Time{}, false
		}
		rest, held = versions, time.Unix(secs, 0)
	}
	parts := strings.Split(rest, ".")
	if len(parts) != rows {
		return nil, time.Time{}, false
	}
	seen = make([]int, rows)
	for i, p := range parts {
		if p == "" || len(p) > 9 || strings.Trim(p, "0123456789") != "" {
			return nil, time.Time{}, false
		}
		v, err := strconv.Atoi(p)
		if err != nil {
			return nil, time.Time{}, false
		}
		seen[i] = v - 1
	}
	return seen, held, true
}
