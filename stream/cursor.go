package stream

import (
	"math"
	"strconv"
	"strings"

	"batteryswap/models"
)

// ParseCursor reads a resume cursor (Last-Event-ID, last_event_id or since):
// a decimal integer. An empty s is no cursor and returns ok false with a nil
// error; anything that is not a decimal integer is an invalid_cursor error.
// A number that no event can have, negative or beyond int64, is a cursor
// like any other unknown one (CONTRACT §4: a fresh snapshot with reset):
// it comes back as -1 or math.MaxInt64, outside every range of ids.
func ParseCursor(s string) (cursor int64, ok bool, err error) {
	if s == "" {
		return 0, false, nil
	}
	digits, negative := strings.CutPrefix(s, "-")
	if digits == "" {
		return 0, false, invalidCursor(s)
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false, invalidCursor(s)
		}
	}
	if negative {
		return -1, true, nil
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil { // only a range error is left
		return math.MaxInt64, true, nil
	}
	return n, true, nil
}

func invalidCursor(s string) error {
	const maxShown = 32
	if len(s) > maxShown {
		s = s[:maxShown] + "..."
	}
	return models.Errorf(models.CodeInvalidCursor, "the cursor %q is not an event id", s)
}
