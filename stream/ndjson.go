package stream

// AppendNDJSON appends data as one line of newline-delimited JSON. CR and LF
// in data become spaces: in valid JSON they can only be whitespace between
// tokens, so the value is unchanged and the line cannot break early.
func AppendNDJSON(dst, data []byte) []byte {
	for _, c := range data {
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return append(dst, '\n')
}
