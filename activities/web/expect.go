package web

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// StatusList is the set of acceptable HTTP statuses. In a runbook it is a
// number (200), a class ("2xx"), or a list of either ([200, 401]).
type StatusList []string

// UnmarshalJSON accepts a number, a string, or a list of them.
func (s *StatusList) UnmarshalJSON(b []byte) error {
	var raw any
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	var items []any
	switch v := raw.(type) {
	case nil:
		*s = nil
		return nil
	case []any:
		items = v
	default:
		items = []any{v}
	}
	out := make(StatusList, 0, len(items))
	for _, it := range items {
		var tok string
		switch v := it.(type) {
		case float64:
			if v != float64(int(v)) {
				return fmt.Errorf("expectStatus: %v is not a status code", v)
			}
			tok = strconv.Itoa(int(v))
		case string:
			tok = strings.ToLower(strings.TrimSpace(v))
		default:
			return fmt.Errorf("expectStatus: want a status code, a class like \"2xx\", or a list of them; got %v", it)
		}
		if err := validStatusToken(tok); err != nil {
			return err
		}
		out = append(out, tok)
	}
	*s = out
	return nil
}

func validStatusToken(tok string) error {
	if len(tok) == 3 && tok[1:] == "xx" && tok[0] >= '1' && tok[0] <= '5' {
		return nil
	}
	n, err := strconv.Atoi(tok)
	if err != nil || n < 100 || n > 599 {
		return fmt.Errorf("expectStatus: %q is not a status code (100-599) or a class like \"2xx\"", tok)
	}
	return nil
}

// Match reports whether code is acceptable; an empty list means 200.
func (s StatusList) Match(code int) bool {
	if len(s) == 0 {
		return code == 200
	}
	c := strconv.Itoa(code)
	for _, tok := range s {
		if tok == c || (strings.HasSuffix(tok, "xx") && len(c) == 3 && c[0] == tok[0]) {
			return true
		}
	}
	return false
}

// String renders the list for messages: "200", "200 or 401", "1xx, 2xx, 3xx or 4xx".
func (s StatusList) String() string {
	if len(s) == 0 {
		return "200"
	}
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// snippetLimit is how much of a response body goes into errors and
// outputs: enough to see Backstage's {"error":{"name":...,"message":...}}.
const snippetLimit = 300

var jwtRE = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}(\.[A-Za-z0-9_-]*){0,2}`)

// Snippet returns the start of body, fit to put in an error message or
// workflow history: secrets (the resolved token, JWT-shaped strings)
// redacted first, so truncation cannot leave half a token behind; control
// characters and invalid UTF-8 replaced; whitespace runs collapsed; at most
// snippetLimit bytes, cut on a rune boundary.
func Snippet(body []byte, secrets ...string) string {
	s := string(body)
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	s = jwtRE.ReplaceAllString(s, "[redacted token]")
	var b strings.Builder
	truncated, lastSpace := false, false
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			r = '?'
		case unicode.IsControl(r) || unicode.IsSpace(r):
			if lastSpace {
				continue
			}
			r = ' '
		}
		if b.Len()+utf8.RuneLen(r) > snippetLimit {
			truncated = true
			break
		}
		b.WriteRune(r)
		lastSpace = r == ' '
	}
	out := strings.TrimSpace(b.String())
	if truncated {
		out += "…"
	}
	return out
}
