package stream

import (
	"strconv"

	"batteryswap/models"
)

// ParseCursor reads a resume cursor (Last-Event-ID, last_event_id or since):
// a decimal event id, non-negative and within int64. An empty s is no cursor
// and returns ok false with a nil error; anything else that is not such a
// number is an invalid_cursor error.
func ParseCursor(s string) (cursor int64, ok bool, err error) {
	if s == "" {
		return 0, false, nil
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false, invalidCursor(s)
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false, invalidCursor(s)
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
