package devstack

import (
	"testing"

	"github.com/matryer/is"
)

func TestParseA1(t *testing.T) {
	all := maxA1
	tests := []struct {
		in   string
		want a1
		bad  bool
	}{
		{in: "Results!A:E", want: a1{sheet: "Results", firstCol: 0, lastCol: 4, firstRow: 1, lastRow: all}},
		{in: "'My ''best'' sheet'!B2:F9", want: a1{sheet: "My 'best' sheet", firstCol: 1, lastCol: 5, firstRow: 2, lastRow: 9}},
		{in: "'Quoted'", want: a1{sheet: "Quoted", lastCol: all, firstRow: 1, lastRow: all}},
		{in: "Results", want: a1{sheet: "Results", lastCol: all, firstRow: 1, lastRow: all}},
		{in: "A1:E", want: a1{firstCol: 0, lastCol: 4, firstRow: 1, lastRow: all}},
		{in: "2:9", want: a1{lastCol: all, firstRow: 2, lastRow: 9}},
		{in: "C", want: a1{firstCol: 2, lastCol: 2, firstRow: 1, lastRow: all}},
		{in: "Sheet1!AA7", want: a1{sheet: "Sheet1", firstCol: 26, lastCol: 26, firstRow: 7, lastRow: 7}},
		{in: "'open", bad: true},
		{in: "'x'y", bad: true},
		{in: "Sheet1!A1:B2:C3", bad: true},
		{in: "Sheet1!ABCD1", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			is := is.New(t)
			got, err := parseA1(tt.in)
			if tt.bad {
				is.True(err != nil) // refused
				return
			}
			is.NoErr(err)          // parsed
			is.Equal(got, tt.want) // as meant
		})
	}
}

func TestColumnName(t *testing.T) {
	is := is.New(t)
	for c, want := range map[int]string{0: "A", 25: "Z", 26: "AA", 27: "AB", 701: "ZZ", 702: "AAA"} {
		is.Equal(columnName(c), want) // letters of a column
	}
}
