package stream

import (
	"math"
	"strconv"
	"strings"
	"testing"

	"batteryswap/models"
)

func TestParseCursor(t *testing.T) {
	tests := []struct {
		name   string
		given  string
		want   int64
		wantOK bool
		bad    bool
	}{
		{name: "absent", given: ""},
		{name: "zero", given: "0", wantOK: true},
		{name: "an id", given: "42", want: 42, wantOK: true},
		{name: "leading zeros", given: "007", want: 7, wantOK: true},
		{name: "largest", given: "9223372036854775807", want: 1<<63 - 1, wantOK: true},
		{name: "overflow: unknown, above every id", given: "9223372036854775808", want: 1<<63 - 1, wantOK: true},
		{name: "far overflow", given: "99999999999999999999999", want: 1<<63 - 1, wantOK: true},
		{name: "negative: unknown, below every id", given: "-5", want: -1, wantOK: true},
		{name: "a lone minus", given: "-", bad: true},
		{name: "two minus signs", given: "--1", bad: true},
		{name: "plus sign", given: "+1", bad: true},
		{name: "space", given: " 1", bad: true},
		{name: "fraction", given: "1.5", bad: true},
		{name: "word", given: "latest", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := ParseCursor(tt.given)
			if tt.bad {
				if !models.IsCode(err, models.CodeInvalidCursor) || ok {
					t.Fatalf("ParseCursor(%q) = %d, %v, %v; want invalid_cursor", tt.given, got, ok, err)
				}
				return
			}
			if err != nil || got != tt.want || ok != tt.wantOK {
				t.Fatalf("ParseCursor(%q) = %d, %v, %v; want %d, %v, nil", tt.given, got, ok, err, tt.want, tt.wantOK)
			}
		})
	}
}

func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"", "0", "12", "-3", "1e3", "99999999999999999999", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok, err := ParseCursor(s)
		switch {
		case s == "":
			if ok || err != nil {
				t.Fatalf("empty cursor: ok %v, err %v", ok, err)
			}
		case err != nil:
			if ok || !models.IsCode(err, models.CodeInvalidCursor) {
				t.Fatalf("ParseCursor(%q): ok %v with error %v", s, ok, err)
			}
			if v, perr := strconv.ParseInt(s, 10, 64); perr == nil && v >= 0 && strings.Trim(s, "0123456789") == "" {
				t.Fatalf("ParseCursor(%q) refused the id %d", s, v)
			}
		case !ok:
			t.Fatalf("ParseCursor(%q) = %d, not ok, no error", s, n)
		case strings.HasPrefix(s, "-"):
			if n != -1 || strings.Trim(s[1:], "0123456789") != "" {
				t.Fatalf("ParseCursor(%q) = %d, want -1 for a negative number", s, n)
			}
		case n == math.MaxInt64:
			if strings.Trim(s, "0123456789") != "" {
				t.Fatalf("ParseCursor(%q) = %d for a non-number", s, n)
			}
		default:
			if n < 0 || strings.TrimLeft(s, "0") != strings.TrimLeft(strconv.FormatInt(n, 10), "0") {
				t.Fatalf("ParseCursor(%q) = %d, %v", s, n, ok)
			}
		}
	})
}
