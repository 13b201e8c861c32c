package deploy_test

// A parser for nginx configuration files, and the parts of nginx's own rules
// that the tests rely on: which location serves a URI, and how directives
// are inherited from the enclosing levels.

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ngxDirective is one directive; Block is non-nil for a block directive.
type ngxDirective struct {
	Name   string
	raw    string   // the name as written (map entries may be quoted)
	Args   []string // unquoted values
	Raw    []string // the arguments as written, quotes included
	Block  []*ngxDirective
	Parent *ngxDirective // nil at the top level
	Line   int
}

func (d *ngxDirective) String() string {
	return fmt.Sprintf("%s %s (line %d)", d.Name, strings.Join(d.Raw, " "), d.Line)
}

// all returns the directives named name directly inside d.
func (d *ngxDirective) all(name string) []*ngxDirective {
	var out []*ngxDirective
	for _, c := range d.Block {
		if c.Name == name {
			out = append(out, c)
		}
	}
	return out
}

// effective returns the directives named name that apply in d: nginx takes
// a directive from the innermost level that sets it at all, and an array
// directive such as proxy_set_header or error_page is inherited only by a
// level that sets none of its own, so the innermost non-empty level wins
// whole.
func (d *ngxDirective) effective(name string) []*ngxDirective {
	for l := d; l != nil; l = l.Parent {
		if found := l.all(name); len(found) > 0 {
			return found
		}
	}
	return nil
}

// value returns the single argument of the effective directive name, or "".
func (d *ngxDirective) value(name string) string {
	ds := d.effective(name)
	if len(ds) == 0 || len(ds[len(ds)-1].Args) == 0 {
		return ""
	}
	return ds[len(ds)-1].Args[0]
}

// header returns the value that proxy_set_header sends for header h in d,
// and whether it is set.
func (d *ngxDirective) header(h string) (string, bool) {
	for _, ps := range d.effective("proxy_set_header") {
		if len(ps.Args) == 2 && strings.EqualFold(ps.Args[0], h) {
			return ps.Args[1], true
		}
	}
	return "", false
}

type ngxToken struct {
	val, raw string
	line     int
	special  bool // ; { }
}

func tokenizeNginx(src string) ([]ngxToken, error) {
	var toks []ngxToken
	line := 1
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == ';' || c == '{' || c == '}':
			toks = append(toks, ngxToken{val: string(c), raw: string(c), line: line, special: true})
			i++
		case c == '"' || c == '\'':
			start, startLine := i, line
			var b strings.Builder
			i++
			for ; i < len(src) && src[i] != c; i++ {
				if src[i] == '\n' {
					line++
				}
				if src[i] == '\\' && i+1 < len(src) {
					i++
					switch src[i] {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					case 'r':
						b.WriteByte('\r')
					case '"', '\'', '\\':
						b.WriteByte(src[i])
					default:
						b.WriteByte('\\')
						b.WriteByte(src[i])
					}
					continue
				}
				b.WriteByte(src[i])
			}
			if i >= len(src) {
				return nil, fmt.Errorf("line %d: unterminated quoted string", startLine)
			}
			i++
			toks = append(toks, ngxToken{val: b.String(), raw: src[start:i], line: startLine})
		default:
			start := i
			for i < len(src) && !strings.ContainsRune(" \t\r\n;{}\"'", rune(src[i])) {
				i++
			}
			toks = append(toks, ngxToken{val: src[start:i], raw: src[start:i], line: line})
		}
	}
	return toks, nil
}

// parseNginx returns the top level of an nginx configuration as a block.
func parseNginx(src string) (*ngxDirective, error) {
	toks, err := tokenizeNginx(src)
	if err != nil {
		return nil, err
	}
	root := &ngxDirective{Name: "(main)"}
	cur := root
	var d *ngxDirective
	for _, t := range toks {
		switch {
		case t.special && t.val == ";":
			if d == nil {
				return nil, fmt.Errorf("line %d: empty directive", t.line)
			}
			cur.Block, d = append(cur.Block, d), nil
		case t.special && t.val == "{":
			if d == nil {
				return nil, fmt.Errorf("line %d: block without a name", t.line)
			}
			d.Block = []*ngxDirective{}
			cur.Block = append(cur.Block, d)
			cur, d = d, nil
		case t.special && t.val == "}":
			if d != nil {
				return nil, fmt.Errorf("line %d: directive %q is missing its ';'", d.Line, d.Name)
			}
			if cur.Parent == nil {
				return nil, fmt.Errorf("line %d: unbalanced '}'", t.line)
			}
			cur = cur.Parent
		case d == nil:
			d = &ngxDirective{Name: t.val, raw: t.raw, Parent: cur, Line: t.line}
		default:
			d.Args, d.Raw = append(d.Args, t.val), append(d.Raw, t.raw)
		}
	}
	if d != nil {
		return nil, fmt.Errorf("line %d: directive %q is missing its ';'", d.Line, d.Name)
	}
	if cur != root {
		return nil, fmt.Errorf("block %s is not closed", cur)
	}
	return root, nil
}

// formatNginx writes a parsed configuration back out.
func formatNginx(d *ngxDirective) string {
	var b strings.Builder
	var write func(ds []*ngxDirective, depth int)
	write = func(ds []*ngxDirective, depth int) {
		for _, c := range ds {
			b.WriteString(strings.Repeat("    ", depth))
			if c.raw != "" {
				b.WriteString(c.raw)
			} else {
				b.WriteString(c.Name)
			}
			for _, r := range c.Raw {
				b.WriteString(" " + r)
			}
			if c.Block == nil {
				b.WriteString(";\n")
				continue
			}
			b.WriteString(" {\n")
			write(c.Block, depth+1)
			b.WriteString(strings.Repeat("    ", depth) + "}\n")
		}
	}
	write(d.Block, 0)
	return b.String()
}

// matchLocation is nginx's choice of location in server for uri: an exact
// match wins; else the longest prefix, which wins at once if it is "^~";
// else the first regex in file order that matches; else that prefix.
// Named locations (@name) never match a URI.
func matchLocation(server *ngxDirective, uri string) (*ngxDirective, error) {
	var prefix *ngxDirective
	prefixLen, prefixStop := -1, false
	var regexes []*ngxDirective
	for _, loc := range server.all("location") {
		mod, pat := "", ""
		switch len(loc.Args) {
		case 1:
			pat = loc.Args[0]
		case 2:
			mod, pat = loc.Args[0], loc.Args[1]
		default:
			return nil, fmt.Errorf("%s: unexpected arguments", loc)
		}
		if len(loc.all("location")) > 0 {
			return nil, fmt.Errorf("%s: nested locations are not modelled by this test", loc)
		}
		switch mod {
		case "=":
			if pat == uri {
				return loc, nil
			}
		case "~", "~*":
			regexes = append(regexes, loc)
		case "", "^~":
			if strings.HasPrefix(pat, "@") {
				continue
			}
			if strings.HasPrefix(uri, pat) && len(pat) > prefixLen {
				prefix, prefixLen, prefixStop = loc, len(pat), mod == "^~"
			}
		default:
			return nil, fmt.Errorf("%s: unknown modifier", loc)
		}
	}
	if prefix != nil && prefixStop {
		return prefix, nil
	}
	for _, loc := range regexes {
		expr := loc.Args[1]
		if loc.Args[0] == "~*" {
			expr = "(?i)" + expr
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", loc, err)
		}
		if re.MatchString(uri) {
			return loc, nil
		}
	}
	if prefix == nil {
		return nil, fmt.Errorf("no location serves %s", uri)
	}
	return prefix, nil
}

// namedLocation returns location @name of server.
func namedLocation(server *ngxDirective, name string) *ngxDirective {
	for _, loc := range server.all("location") {
		if len(loc.Args) == 1 && loc.Args[0] == name {
			return loc
		}
	}
	return nil
}

var ngxTimePart = regexp.MustCompile(`^(\d+)(ms|s|m|h|d|w|M|y)?`)

// parseNginxTime reads an nginx time such as 3600s, 1h, 90 (seconds) or 1m30s.
func parseNginxTime(s string) (time.Duration, error) {
	units := map[string]time.Duration{"ms": time.Millisecond, "": time.Second, "s": time.Second,
		"m": time.Minute, "h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour,
		"M": 30 * 24 * time.Hour, "y": 365 * 24 * time.Hour}
	if s == "" {
		return 0, fmt.Errorf("empty time")
	}
	var total time.Duration
	for rest := strings.ReplaceAll(s, " ", ""); rest != ""; {
		m := ngxTimePart.FindStringSubmatch(rest)
		if m == nil {
			return 0, fmt.Errorf("bad nginx time %q", s)
		}
		n, _ := strconv.Atoi(m[1])
		total += time.Duration(n) * units[m[2]]
		rest = rest[len(m[0]):]
	}
	return total, nil
}

// parseNginxSize reads an nginx size such as 1m, 512k or 1048576 (bytes).
func parseNginxSize(s string) (int64, error) {
	m := regexp.MustCompile(`^(\d+)([kKmMgG]?)$`).FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("bad nginx size %q", s)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	switch strings.ToLower(m[2]) {
	case "k":
		n <<= 10
	case "m":
		n <<= 20
	case "g":
		n <<= 30
	}
	return n, nil
}
