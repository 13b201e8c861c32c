package stream

import (
	"bytes"
	"strconv"
	"strings"
	"time"
)

// AppendSSE appends one Server-Sent Events frame to dst: an "id:" line, an
// "event:" line and one "data:" line per line of data, then the blank line
// that dispatches it. CR, LF and NUL are removed from id and event, because a
// line break there would forge fields and browsers ignore an id holding NUL;
// an empty id or event leaves its line out. Data is split on CRLF, CR and LF,
// which a client joins back with LF.
func AppendSSE(dst []byte, id, event string, data []byte) []byte {
	if id = cleanField(id); id != "" {
		dst = appendField(dst, "id", id)
	}
	if event = cleanField(event); event != "" {
		dst = appendField(dst, "event", event)
	}
	for {
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			break
		}
		dst = append(dst, "data: "...)
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	dst = append(dst, "data: "...)
	dst = append(dst, data...)
	return append(dst, "\n\n"...)
}

// AppendRetry appends the "retry:" field that tells an EventSource how long
// to wait before it reconnects, as its own frame so it stands before any event.
func AppendRetry(dst []byte, d time.Duration) []byte {
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, max(d.Milliseconds(), 0), 10)
	return append(dst, "\n\n"...)
}

// AppendComment appends an SSE comment frame (": text"), which clients
// ignore; streams send it as a heartbeat so proxies keep an idle connection
// open. Line breaks and NUL in text are removed so it stays one comment.
func AppendComment(dst []byte, text string) []byte {
	return append(appendField(dst, "", cleanField(text)), '\n')
}

// appendField appends the line "name: value"; an empty name makes it a
// comment.
func appendField(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value...)
	return append(dst, '\n')
}

// cleanField removes CR, LF and NUL from a field value.
func cleanField(s string) string {
	if !strings.ContainsAny(s, "\r\n\x00") {
		return s
	}
	return stripLineBreaks.Replace(s)
}

var stripLineBreaks = strings.NewReplacer("\r", "", "\n", "", "\x00", "")
