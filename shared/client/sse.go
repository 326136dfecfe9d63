package client

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"time"
)

// Event is one Server-Sent Event as EventSource dispatches it.
type Event struct {
	// ID is the id field of the event's own block, "" when it had none.
	ID string
	// LastID is the stream's last event id once this event is dispatched:
	// what a reconnect sends as Last-Event-ID.
	LastID string
	// Type is the event field, "message" when there was none.
	Type string
	// Data is the data fields, joined by newlines.
	Data []byte
}

// maxLine bounds one line of a stream (a row event with long prompts stays
// far below it).
const maxLine = 4 << 20

// EventReader reads Server-Sent Events from a text/event-stream body, with
// the parsing rules of the HTML standard: lines end in LF, CRLF or CR;
// comments and unknown fields are skipped; a block without data is not
// dispatched; the last event id carries over blocks without an id.
type EventReader struct {
	sc      *bufio.Scanner
	afterCR bool // the last line ended in CR: a following LF belongs to it

	lastID  string // the last event id dispatched
	idBuf   string // the last event id seen, dispatched with the next block
	blockID string // this block's id field
	typ     string
	data    []byte
	retry   time.Duration
}

// NewEventReader reads events from r. lastID is the id the stream was
// resumed from (the Last-Event-ID sent), "" for a first connection.
func NewEventReader(r io.Reader, lastID string) *EventReader {
	er := &EventReader{lastID: lastID, idBuf: lastID}
	er.sc = bufio.NewScanner(r)
	er.sc.Buffer(make([]byte, 0, 16<<10), maxLine)
	er.sc.Split(er.splitLine)
	return er
}

// Next returns the next event. It returns io.EOF when the stream ended (an
// incomplete last block is dropped), or the error that cut it off.
func (r *EventReader) Next() (Event, error) {
	for r.sc.Scan() {
		line := r.sc.Bytes()
		if len(line) == 0 {
			if ev, ok := r.dispatch(); ok {
				return ev, nil
			}
			continue
		}
		if line[0] == ':' {
			continue // a comment
		}
		field, value, found := bytes.Cut(line, []byte(":"))
		if found {
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		switch string(field) {
		case "event":
			r.typ = string(value)
		case "data":
			r.data = append(r.data, value...)
			r.data = append(r.data, '\n')
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				r.idBuf, r.blockID = string(value), string(value)
			}
		case "retry":
			if ms, err := strconv.ParseUint(string(value), 10, 32); err == nil { // digits only
				r.retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
	if err := r.sc.Err(); err != nil {
		return Event{}, err
	}
	return Event{}, io.EOF
}

// Retry is the reconnection delay the stream asked for (its last retry
// field), zero if none.
func (r *EventReader) Retry() time.Duration { return r.retry }

// dispatch ends a block: the event, unless it had no data.
func (r *EventReader) dispatch() (Event, bool) {
	r.lastID = r.idBuf
	data, typ, id := r.data, r.typ, r.blockID
	r.data, r.typ, r.blockID = nil, "", ""
	if len(data) == 0 {
		return Event{}, false
	}
	if typ == "" {
		typ = "message"
	}
	return Event{ID: id, LastID: r.lastID, Type: typ, Data: data[:len(data)-1]}, true
}

// splitLine splits at LF, CRLF or CR. A CR at the end of the data read so far
// ends its line at once (a stream must not stall on it); an LF arriving next
// is then skipped. Every call that advances returns a line: bufio.Scanner
// stops at EOF after an advance without one.
func (r *EventReader) splitLine(data []byte, atEOF bool) (int, []byte, error) {
	skip := 0
	if r.afterCR && len(data) > 0 && data[0] == '\n' {
		skip = 1
	}
	rest := data[skip:]
	if i := bytes.IndexAny(rest, "\r\n"); i >= 0 {
		end := i + 1
		if rest[i] == '\r' && end < len(rest) && rest[end] == '\n' {
			end++
		}
		r.afterCR = rest[i] == '\r' && end == i+1
		return skip + end, rest[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), nil, nil // an unterminated last line is dropped
	}
	return 0, nil, nil
}
