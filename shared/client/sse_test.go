package client_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/client"
)

// ev renders an event compactly for comparison: type, own id, last id, data.
func ev(e client.Event) string {
	return fmt.Sprintf("%s id=%q last=%q data=%q", e.Type, e.ID, e.LastID, e.Data)
}

func readAll(t *testing.T, r io.Reader, lastID string) ([]string, *client.EventReader, error) {
	t.Helper()
	er := client.NewEventReader(r, lastID)
	var out []string
	for {
		e, err := er.Next()
		if err != nil {
			return out, er, err
		}
		out = append(out, ev(e))
	}
}

func TestEventReader(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		lastID string // resumed from
		want   []string
	}{
		{"one event", "event: row\nid: a-1\ndata: {\"x\":1}\n\n",
			"", []string{`row id="a-1" last="a-1" data="{\"x\":1}"`}},
		{"no event field is a message", "data: hi\n\n",
			"", []string{`message id="" last="" data="hi"`}},
		{"data lines join with newlines", "data: a\ndata:b\ndata\n\n",
			"", []string{`message id="" last="" data="a\nb\n"`}},
		{"only one space after the colon is dropped", "data:  two\n\n",
			"", []string{`message id="" last="" data=" two"`}},
		{"comments and unknown fields are skipped", ": hello\nfoo: bar\nevent: ping\ndata: {}\n\n",
			"", []string{`ping id="" last="" data="{}"`}},
		{"a block without data is not dispatched", "retry: 1000\n\nevent: ping\n\nevent: batch\ndata: 1\n\n",
			"", []string{`batch id="" last="" data="1"`}},
		{"the last id carries over blocks without one", "id: 7\ndata: a\n\nevent: ping\ndata: {}\n\n",
			"", []string{`message id="7" last="7" data="a"`, `ping id="" last="7" data="{}"`}},
		{"a resumed stream starts from its Last-Event-ID", "event: ping\ndata: {}\n\nid: 9\ndata: b\n\n",
			"5", []string{`ping id="" last="5" data="{}"`, `message id="9" last="9" data="b"`}},
		{"an id-only block still moves the last id", "id: 3\n\ndata: a\n\n",
			"", []string{`message id="" last="3" data="a"`}},
		{"an id with NUL is ignored", "id: 1\ndata: a\n\nid: x\x00y\ndata: b\n\n",
			"", []string{`message id="1" last="1" data="a"`, `message id="" last="1" data="b"`}},
		{"CRLF line ends", "event: row\r\ndata: 1\r\n\r\ndata: 2\r\n\r\n",
			"", []string{`row id="" last="" data="1"`, `message id="" last="" data="2"`}},
		{"CR line ends", "event: row\rdata: 1\r\rdata: 2\r\r",
			"", []string{`row id="" last="" data="1"`, `message id="" last="" data="2"`}},
		{"an unfinished last block is dropped", "data: 1\n\ndata: 2\n",
			"", []string{`message id="" last="" data="1"`}},
		{"an unterminated last line is dropped", "data: 1\n\ndata: 2",
			"", []string{`message id="" last="" data="1"`}},
		{"empty stream", "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			got, _, err := readAll(t, strings.NewReader(tt.stream), tt.lastID)
			is.True(errors.Is(err, io.EOF)) // a clean end
			is.Equal(fmt.Sprint(got), fmt.Sprint(tt.want))

			// The same, delivered a byte at a time: line ends split across
			// reads (CR, then LF) parse the same.
			got, _, err = readAll(t, iotest.OneByteReader(strings.NewReader(tt.stream)), tt.lastID)
			is.True(errors.Is(err, io.EOF))
			is.Equal(fmt.Sprint(got), fmt.Sprint(tt.want)) // byte by byte
		})
	}
}

func TestEventReaderRetry(t *testing.T) {
	tests := []struct {
		stream string
		want   time.Duration
	}{
		{"retry: 1500\n\n", 1500 * time.Millisecond},
		{"retry: 1500\n\nretry: 20\n\n", 20 * time.Millisecond},
		{"retry: 1.5\n\n", 0},
		{"retry: -1\n\n", 0},
		{"retry: +1\n\n", 0},
		{"retry:\n\n", 0},
		{"data: x\n\n", 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.stream), func(t *testing.T) {
			is := is.New(t)
			_, er, err := readAll(t, strings.NewReader(tt.stream), "")
			is.True(errors.Is(err, io.EOF))
			is.Equal(er.Retry(), tt.want) // the reconnection delay asked for
		})
	}
}

// An error that cuts the stream off is returned as is, not as a clean end.
func TestEventReaderPassesErrors(t *testing.T) {
	is := is.New(t)
	cut := io.MultiReader(strings.NewReader("data: 1\n\ndata: 2\n"), iotest.ErrReader(io.ErrUnexpectedEOF))
	got, _, err := readAll(t, cut, "")
	is.Equal(len(got), 1)                        // the whole event before the cut
	is.True(errors.Is(err, io.ErrUnexpectedEOF)) // then the cause
}

// A line longer than the reader's bound is an error, not unbounded memory.
func TestEventReaderBoundsLines(t *testing.T) {
	is := is.New(t)
	long := "data: " + strings.Repeat("x", 5<<20) + "\n\n"
	_, _, err := readAll(t, strings.NewReader(long), "")
	is.True(err != nil && !errors.Is(err, io.EOF)) // refused
}
