package models

import (
	"strings"
	"unicode"
)

// Texts that people read (names, addresses, titles, messages, serial
// numbers) reach a dashboard, a terminal (`watch`, `jq`) and logs. A
// control character there can rewrite a terminal (ANSI escapes), forge a
// log line, or hide in plain sight, and a bidi control can make a text
// display in another order than it is stored ("Trojan Source"). Neither
// has a use in these fields, so they are refused, not cleaned.

// singleLineText reports why s is not a one-line text: "" when it is fine.
// Every C0 and C1 control character (tabs and newlines too) and every
// Unicode bidi control is refused.
func singleLineText(s string) string {
	for _, r := range s {
		if isControl(r) {
			return "must not contain control characters (such as tabs, line breaks or escapes)"
		}
		if unicode.Is(unicode.Bidi_Control, r) {
			return "must not contain bidi control characters (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069)"
		}
	}
	return ""
}

// multiLineText is singleLineText for a message: it may hold line breaks
// (LF, or CR LF) and tabs, which lay out a text and change nothing else.
func multiLineText(s string) string {
	for i, r := range s {
		switch {
		case r == '\n' || r == '\t':
		case r == '\r' && strings.HasPrefix(s[i+1:], "\n"):
			// A lone CR would move a terminal's cursor back over the line.
		case isControl(r):
			return "must not contain control characters other than line breaks and tabs"
		case unicode.Is(unicode.Bidi_Control, r):
			return "must not contain bidi control characters (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069)"
		}
	}
	return ""
}

// isControl reports whether r is a C0 control (U+0000–U+001F), DEL or a C1
// control (U+0080–U+009F).
func isControl(r rune) bool { return r < 0x20 || r >= 0x7f && r <= 0x9f }
