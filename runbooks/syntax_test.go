package runbooks_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A YAML syntax error is reported at the token that breaks the document,
// not where the enclosing block starts, with the source lines and a caret.
func TestSyntaxErrorsPointAtTheOffendingToken(t *testing.T) {
	cases := []struct {
		name, src    string
		line, column int
		msg          string
		marked       string // the excerpt line carrying the ">" marker
	}{
		{
			// yaml.v3 says line 2 (`steps:`) for this one.
			name:   "mis-indented list item key",
			src:    "name: x\nsteps:\n  - id: a\n    uses: log\n    with: {message: hi}\n  - id: b\n   uses: noop\n",
			line:   7,
			column: 4,
			msg:    "value is not allowed in this context",
			marked: "> 7 |    uses: noop",
		},
		{
			// yaml.v3 says line 4 (the line above).
			name:   "mis-indented list item",
			src:    "name: x\nsteps:\n  - id: a\n    uses: noop\n - id: b\n   uses: noop\n",
			line:   5,
			column: 2,
			msg:    "value is not allowed in this context",
			marked: "> 5 |  - id: b",
		},
		{
			// yaml.v3 says line 3 (the line above).
			name:   "tab indentation",
			src:    "name: x\nsteps:\n  - id: a\n\tuses: noop\n",
			line:   4,
			column: 1,
			msg:    "found character '\t' that cannot start any token",
			marked: "> 4 | \tuses: noop",
		},
		{
			name:   "unclosed quote",
			src:    "name: x\nsteps:\n  - id: a\n    uses: log\n    with: {message: 'hi}\n",
			line:   5,
			column: 21,
			msg:    "could not find end character of single-quoted text",
			marked: "> 5 |     with: {message: 'hi}",
		},
		{
			// yaml.v3 says line 1.
			name:   "unclosed flow list",
			src:    "name: x\nsteps: [{id: a, uses: noop}\n",
			line:   2,
			column: 8,
			msg:    "sequence end token ']' not found",
			marked: "> 2 | steps: [{id: a, uses: noop}",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ps := problems(t, tc.src)
			require.Len(t, ps, 1, "%v", ps)
			p := ps[0]
			assert.Equal(t, "rb.yaml", p.File)
			assert.Equal(t, tc.line, p.Line, "line of %v", p)
			assert.Equal(t, tc.column, p.Column, "column of %v", p)
			assert.Contains(t, p.Message, tc.msg)
			lines := strings.Split(p.Excerpt, "\n")
			require.GreaterOrEqual(t, len(lines), 2, "excerpt %q", p.Excerpt)
			assert.Equal(t, tc.marked, lines[len(lines)-2], "excerpt:\n%s", p.Excerpt)
			caret := lines[len(lines)-1]
			gutter := strings.Index(tc.marked, "| ") + len("| ")
			assert.Equal(t, tc.column, len(caret)-gutter, "caret under the column:\n%s", p.Excerpt)
			assert.True(t, strings.HasSuffix(caret, "^"), "caret line %q", caret)
			assert.Contains(t, p.String(), fmt.Sprintf("rb.yaml:%d:%d: ", tc.line, tc.column))
			assert.Contains(t, p.String(), tc.marked, "String() shows the excerpt")
		})
	}
}

// Text too deeply nested to diagnose cheaply keeps yaml.v3's line: an
// exact position is not worth an unbounded parse.
func TestSyntaxErrorOutsideDiagnosisBudgetKeepsLine(t *testing.T) {
	src := "name: x\nsteps: " + strings.Repeat("[", 100) + "\n  - id: a\n"
	ps := problems(t, src)
	require.Len(t, ps, 1, "%v", ps)
	assert.Positive(t, ps[0].Line, "%v", ps[0])
	assert.Empty(t, ps[0].Excerpt)
}
