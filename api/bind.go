package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"

	"batteryswap/models"
)

// maxBody is the largest request body accepted (payload_too_large above it).
const maxBody = 1 << 20

// bindJSON decodes the request body strictly into dst: JSON only (415),
// at most 1 MiB (413), no unknown fields and no wrong types (400). An empty
// body is allowed only when optional is set.
func bindJSON(c echo.Context, dst any, optional bool) error {
	r := c.Request()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		var mbe *http.MaxBytesError
		var he *echo.HTTPError
		// A body without Content-Length meets the limit while it is read:
		// the BodyLimit middleware's reader fails with its own 413.
		if errors.As(err, &mbe) || errors.As(err, &he) && he.Code == http.StatusRequestEntityTooLarge {
			return models.Errorf(models.CodePayloadTooLarge, "request body is larger than 1 MiB")
		}
		if bodyTimedOut(err) {
			return errBodyTimeout(c)
		}
		return errInvalid("could not read the request body")
	}
	if len(body) > maxBody {
		return models.Errorf(models.CodePayloadTooLarge, "request body is larger than 1 MiB")
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		if optional {
			return nil
		}
		return errInvalid("a JSON body is required")
	}
	if !isJSON(r.Header.Get(echo.HeaderContentType)) {
		return models.Errorf(models.CodeUnsupportedMedia, "the body must be JSON (Content-Type: application/json)")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return errInvalid("%s", describeJSONError(err))
	}
	if dec.More() {
		return errInvalid("the body must hold one JSON object")
	}
	if err := exactNames(body, dst); err != nil {
		return err
	}
	if hasEscapedNUL(body) {
		return errInvalid("strings must not contain NUL characters (\\u0000)")
	}
	return nil
}

// exactNames refuses a key that names a field in another case, and a key
// given twice: encoding/json matches names without regard to case and keeps
// the last of twins, so {"Station_ID": 3} would be read as station_id, and
// {"station_id": 3, "station_id": 4} as 4. Request bodies are flat objects,
// so the top level is all there is to check.
func exactNames(body []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil // not an object; Decode has judged it
	}
	names := jsonNames(reflect.TypeOf(dst))
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil // Decode has judged it
		}
		k, _ := tok.(string)
		switch {
		case !names[k]:
			return errInvalid("unknown field %q (names are case-sensitive)", k)
		case seen[k]:
			// encoding/json would keep the last: which one the client meant
			// is anyone's guess.
			return errInvalid("field %q is given twice", k)
		}
		seen[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}

// fieldNames caches jsonNames by type.
var fieldNames sync.Map // reflect.Type -> map[string]bool

// jsonNames is the set of JSON names of a struct type's fields (through a
// pointer), as encoding/json spells them.
func jsonNames(t reflect.Type) map[string]bool {
	if v, ok := fieldNames.Load(t); ok {
		return v.(map[string]bool)
	}
	names := map[string]bool{}
	s := t
	for s.Kind() == reflect.Pointer {
		s = s.Elem()
	}
	if s.Kind() == reflect.Struct {
		for f := range s.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch {
			case name == "-" || !f.IsExported():
			case f.Anonymous && name == "":
				for n := range jsonNames(f.Type) {
					names[n] = true
				}
			case name == "":
				names[f.Name] = true
			default:
				names[name] = true
			}
		}
	}
	fieldNames.Store(t, names)
	return names
}

// hasEscapedNUL reports whether a JSON text holds a \u0000 escape (raw NUL
// bytes are not valid JSON). PostgreSQL cannot store NUL in text, so such
// strings are refused up front, the same on every database, instead of
// failing in the store as an internal error.
func hasEscapedNUL(body []byte) bool {
	for i := 0; ; {
		j := bytes.Index(body[i:], []byte(`\u0000`))
		if j < 0 {
			return false
		}
		j += i
		slashes := 0
		for k := j - 1; k >= 0 && body[k] == '\\'; k-- {
			slashes++
		}
		if slashes%2 == 0 { // the backslash starts an escape, not an escaped backslash
			return true
		}
		i = j + 1
	}
}

func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

func describeJSONError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %q must be %s", te.Field, jsonKind(te.Type.Kind().String()))
		}
		return "the body must be a JSON object"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end of input"
	}
	return "malformed JSON"
}

func jsonKind(k string) string {
	switch k {
	case "int", "int64", "int32":
		return "a whole number"
	case "float64", "float32":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	}
	return "of another type"
}

// pathID parses a positive integer path parameter; anything else is not_found.
func pathID(c echo.Context, name string) (int64, error) {
	id, err := strconv.ParseInt(c.Param(name), 10, 64)
	if err != nil || id <= 0 {
		return 0, models.Errorf(models.CodeNotFound, "%s not found", strings.TrimSuffix(name, "_id"))
	}
	return id, nil
}

// pageParams reads ?limit= (1–200, default 50) and ?cursor= (an id).
func pageParams(c echo.Context) (models.Page, error) {
	p := models.Page{Limit: models.DefaultPageLimit}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > models.MaxPageLimit {
			return p, models.ValidationError(map[string]string{"limit": "must be a whole number from 1 to 200"})
		}
		p.Limit = n
	}
	if v := c.QueryParam("cursor"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return p, models.Errorf(models.CodeInvalidCursor, "cursor must be an id from next_cursor")
		}
		p.Cursor = n
	}
	return p, nil
}

// renderPage answers a list page: {key: items, next_cursor: the id after
// which the next page starts, or null on the last page}. items was listed
// with p.Ahead(): an item past p.Limit means another page follows.
func renderPage[T any](c echo.Context, key string, items []T, p models.Page, id func(T) int64) error {
	var next *string
	if len(items) > p.Limit {
		items = items[:p.Limit]
		cur := strconv.FormatInt(id(items[p.Limit-1]), 10)
		next = &cur
	}
	return c.JSON(http.StatusOK, map[string]any{key: items, "next_cursor": next})
}

// required collects "is required" for every nil field.
func required(fields map[string]any) map[string]string {
	out := map[string]string{}
	for name, v := range fields {
		if isNil(v) {
			out[name] = "is required"
		}
	}
	return out
}

func isNil(v any) bool {
	switch p := v.(type) {
	case nil:
		return true
	case *string:
		return p == nil
	case *int64:
		return p == nil
	case *int:
		return p == nil
	case *float64:
		return p == nil
	}
	return false
}
