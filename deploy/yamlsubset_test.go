package deploy_test

// A strict parser for the subset of YAML that compose.yaml uses: block
// mappings, block sequences, flow sequences of scalars, and plain or quoted
// scalars, with comments. The module requires no YAML library, so rather than
// guess, anything outside the subset (anchors, aliases, flow mappings, block
// scalars, tags, tabs, multi-line plain scalars) is an error: the test then
// fails and says so instead of reading the file wrongly.

import (
	"fmt"
	"strconv"
	"strings"
)

type yamlLine struct {
	no     int // 1-based line number in the file
	indent int
	text   string // without indentation and comment
}

// parseYAML returns map[string]any, []any or string values.
func parseYAML(src string) (any, error) {
	var lines []yamlLine
	for i, raw := range strings.Split(src, "\n") {
		body := strings.TrimLeft(raw, " ")
		if strings.HasPrefix(body, "\t") {
			return nil, fmt.Errorf("line %d: tab in indentation", i+1)
		}
		text, err := stripYAMLComment(body)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		text = strings.TrimRight(text, " \t\r")
		if text == "" {
			continue
		}
		if text == "---" || text == "..." || strings.HasPrefix(text, "%") {
			return nil, fmt.Errorf("line %d: document markers and directives are outside the supported subset", i+1)
		}
		lines = append(lines, yamlLine{no: i + 1, indent: len(raw) - len(body), text: text})
	}
	if len(lines) == 0 {
		return map[string]any{}, nil
	}
	v, next, err := parseYAMLNode(lines, 0, lines[0].indent)
	if err != nil {
		return nil, err
	}
	if next != len(lines) {
		return nil, fmt.Errorf("line %d: unexpected indentation", lines[next].no)
	}
	return v, nil
}

// stripYAMLComment cuts a " #" comment that is outside quotes.
func stripYAMLComment(s string) (string, error) {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '"' && c == '\\':
			i++
		case quote != 0 && c == quote:
			if quote == '\'' && i+1 < len(s) && s[i+1] == '\'' {
				i++ // '' is an escaped quote
				continue
			}
			quote = 0
		case quote != 0:
		case (c == '"' || c == '\'') && (i == 0 || strings.ContainsRune(" [,:-", rune(s[i-1]))):
			quote = c
		case c == '#' && (i == 0 || s[i-1] == ' '):
			return s[:i], nil
		}
	}
	if quote != 0 {
		return "", fmt.Errorf("unterminated quoted scalar (multi-line scalars are outside the supported subset)")
	}
	return s, nil
}

func isSeqItem(text string) bool { return text == "-" || strings.HasPrefix(text, "- ") }

func parseYAMLNode(lines []yamlLine, i, indent int) (any, int, error) {
	if isSeqItem(lines[i].text) {
		return parseYAMLSeq(lines, i, indent)
	}
	return parseYAMLMap(lines, i, indent)
}

func parseYAMLSeq(lines []yamlLine, i, indent int) (any, int, error) {
	out := []any{}
	for i < len(lines) && lines[i].indent >= indent {
		l := lines[i]
		if l.indent > indent {
			return nil, i, fmt.Errorf("line %d: unexpected indentation", l.no)
		}
		if !isSeqItem(l.text) {
			break // the enclosing mapping goes on (a sequence at its key's indent)
		}
		rest := strings.TrimSpace(l.text[1:])
		i++
		switch {
		case rest == "":
			if i >= len(lines) || lines[i].indent <= indent {
				out = append(out, "")
				continue
			}
			v, next, err := parseYAMLNode(lines, i, lines[i].indent)
			if err != nil {
				return nil, i, err
			}
			out, i = append(out, v), next
		case isSeqItem(rest) || looksLikeMapEntry(rest):
			return nil, i, fmt.Errorf("line %d: a mapping or sequence on a \"- \" line is outside the supported subset", l.no)
		default:
			v, err := parseYAMLScalar(rest)
			if err != nil {
				return nil, i, fmt.Errorf("line %d: %w", l.no, err)
			}
			out = append(out, v)
		}
	}
	return out, i, nil
}

func parseYAMLMap(lines []yamlLine, i, indent int) (any, int, error) {
	out := map[string]any{}
	for i < len(lines) && lines[i].indent >= indent {
		l := lines[i]
		if l.indent > indent {
			return nil, i, fmt.Errorf("line %d: unexpected indentation", l.no)
		}
		if isSeqItem(l.text) {
			return nil, i, fmt.Errorf("line %d: sequence item inside a mapping", l.no)
		}
		key, val, err := splitYAMLKey(l.text)
		if err != nil {
			return nil, i, fmt.Errorf("line %d: %w", l.no, err)
		}
		if _, dup := out[key]; dup {
			return nil, i, fmt.Errorf("line %d: duplicate key %q", l.no, key)
		}
		i++
		if val != "" {
			v, err := parseYAMLScalar(val)
			if err != nil {
				return nil, i, fmt.Errorf("line %d: %w", l.no, err)
			}
			out[key] = v
			continue
		}
		switch {
		case i < len(lines) && lines[i].indent > indent:
			v, next, err := parseYAMLNode(lines, i, lines[i].indent)
			if err != nil {
				return nil, i, err
			}
			out[key], i = v, next
		case i < len(lines) && lines[i].indent == indent && isSeqItem(lines[i].text):
			v, next, err := parseYAMLSeq(lines, i, indent)
			if err != nil {
				return nil, i, err
			}
			out[key], i = v, next
		default:
			out[key] = nil
		}
	}
	return out, i, nil
}

func looksLikeMapEntry(s string) bool {
	if s == "" || strings.ContainsRune("\"'[", rune(s[0])) {
		return false
	}
	return strings.Contains(s, ": ") || strings.HasSuffix(s, ":")
}

func splitYAMLKey(text string) (key, val string, err error) {
	if text[0] == '"' || text[0] == '\'' {
		end := strings.IndexByte(text[1:], text[0])
		if end < 0 {
			return "", "", fmt.Errorf("unterminated quoted key")
		}
		key, rest := text[1:end+1], text[end+2:]
		if !strings.HasPrefix(rest, ":") || (len(rest) > 1 && rest[1] != ' ') {
			return "", "", fmt.Errorf("expected \"key: value\"")
		}
		return key, strings.TrimSpace(rest[1:]), nil
	}
	if k, v, ok := strings.Cut(text, ": "); ok {
		key, val = k, strings.TrimSpace(v)
	} else if strings.HasSuffix(text, ":") {
		key = strings.TrimSuffix(text, ":")
	} else {
		return "", "", fmt.Errorf("expected \"key: value\", got %q", text)
	}
	if key == "" || strings.ContainsAny(key, "{}[]&*!|>'\"%@`#") || strings.HasPrefix(key, "<<") {
		return "", "", fmt.Errorf("key %q is outside the supported subset", key)
	}
	return key, val, nil
}

func parseYAMLScalar(s string) (any, error) {
	switch s[0] {
	case '"':
		v, err := strconv.Unquote(s)
		if err != nil {
			return nil, fmt.Errorf("bad double-quoted scalar %s", s)
		}
		return v, nil
	case '\'':
		if len(s) < 2 || s[len(s)-1] != '\'' || strings.Contains(strings.ReplaceAll(s[1:len(s)-1], "''", ""), "'") {
			return nil, fmt.Errorf("bad single-quoted scalar %s", s)
		}
		return strings.ReplaceAll(s[1:len(s)-1], "''", "'"), nil
	case '[':
		return parseYAMLFlowSeq(s)
	case '{', '&', '*', '!', '|', '>', '%', '@', '`':
		return nil, fmt.Errorf("%q is outside the supported YAML subset", s)
	}
	if strings.Contains(s, ": ") || strings.Contains(s, " #") {
		return nil, fmt.Errorf("plain scalar %q is ambiguous; quote it", s)
	}
	return s, nil
}

// parseYAMLFlowSeq parses ["a", 'b', c] (scalars only).
func parseYAMLFlowSeq(s string) (any, error) {
	if !strings.HasSuffix(s, "]") {
		return nil, fmt.Errorf("unterminated flow sequence %s", s)
	}
	body := strings.TrimSpace(s[1 : len(s)-1])
	out := []any{}
	for body != "" {
		var item string
		switch body[0] {
		case '"', '\'':
			end := 1
			for ; end < len(body); end++ {
				if body[0] == '"' && body[end] == '\\' {
					end++
					continue
				}
				if body[end] == body[0] {
					if body[0] == '\'' && end+1 < len(body) && body[end+1] == '\'' {
						end++
						continue
					}
					break
				}
			}
			if end >= len(body) {
				return nil, fmt.Errorf("unterminated quoted item in %s", s)
			}
			item, body = body[:end+1], strings.TrimSpace(body[end+1:])
		case '[', '{':
			return nil, fmt.Errorf("nested flow collections are outside the supported subset: %s", s)
		default:
			end := strings.IndexByte(body, ',')
			if end < 0 {
				end = len(body)
			}
			item, body = strings.TrimSpace(body[:end]), body[end:]
		}
		v, err := parseYAMLScalar(item)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		if body != "" {
			if body[0] != ',' {
				return nil, fmt.Errorf("expected ',' in %s", s)
			}
			body = strings.TrimSpace(body[1:])
		}
	}
	return out, nil
}
