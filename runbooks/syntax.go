package runbooks

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	goccy "github.com/goccy/go-yaml"
	goccyparser "github.com/goccy/go-yaml/parser"
)

// Why two YAML libraries: yaml.v3 stays the parser of record (linear time,
// nesting limits, the decoder the runbook types are written for), but on a
// syntax error it reports where the enclosing block starts, not the token
// that broke it (for a mis-indented list item: the `steps:` line). goccy's
// parser reports the offending token, so it is asked where the error is, and
// only once yaml.v3 has already rejected the text. It is not the parser of
// record because its parser is quadratic in nesting depth and in the width
// of a block mapping (64 KiB of `[` takes over 10 s; 128 KiB of `k: v` lines
// takes 7 s) and its typed decoder does not bound alias expansion. So it only
// sees text within diagnosisBudget; anything else keeps yaml.v3's message.

// Bounds on the text goccy is asked to diagnose. Within them the worst
// cases measured here (256-key mappings filling 64 KiB) took 30-70 ms;
// outside them, seconds.
const (
	maxDiagnosedSize  = 64 << 10
	maxDiagnosedDepth = 64  // flow brackets or block indentation levels
	maxDiagnosedWidth = 256 // entries at one indentation level
	// Flow entries (commas inside brackets) cost more per entry.
	maxDiagnosedFlowEntries = 4096
)

// syntaxLocation is where goccy found the error that yaml.v3 reported.
type syntaxLocation struct {
	Line, Column int
	Message      string
}

// locateSyntaxError returns the offending token of text that yaml.v3
// rejected, or ok=false when the text is outside the diagnosis budget or
// goccy does not find the error (the two parsers' grammars differ at the
// edges; yaml.v3's message is kept then).
func locateSyntaxError(data []byte) (syntaxLocation, bool) {
	if !withinDiagnosisBudget(data) {
		return syntaxLocation{}, false
	}
	_, err := goccyparser.ParseBytes(data, 0)
	var ye goccy.Error
	if err == nil || !errors.As(err, &ye) {
		return syntaxLocation{}, false
	}
	tk := ye.GetToken()
	if tk == nil || tk.Position == nil || tk.Position.Line <= 0 {
		return syntaxLocation{}, false
	}
	return syntaxLocation{Line: tk.Position.Line, Column: tk.Position.Column, Message: ye.GetMessage()}, true
}

// withinDiagnosisBudget estimates, in one pass over the bytes, whether
// goccy's parser will finish quickly: the size, the flow-bracket depth and
// number of flow entries, and for block structure a stack of indentation columns (the depth) with the
// number of entries at each (the width). It over-estimates (brackets in
// quoted text count too), which only costs a less exact message.
func withinDiagnosisBudget(data []byte) bool {
	if len(data) > maxDiagnosedSize {
		return false
	}
	flow, flowEntries := 0, 0
	for _, c := range data {
		switch c {
		case '[', '{':
			flow++
			if flow > maxDiagnosedDepth {
				return false
			}
		case ']', '}':
			if flow > 0 {
				flow--
			}
		case ',':
			if flow > 0 {
				flowEntries++
				if flowEntries > maxDiagnosedFlowEntries {
					return false
				}
			}
		}
	}
	type level struct{ col, entries int }
	var stack []level
	enter := func(col int) bool {
		for len(stack) > 0 && stack[len(stack)-1].col > col {
			stack = stack[:len(stack)-1]
		}
		if n := len(stack); n > 0 && stack[n-1].col == col {
			stack[n-1].entries++
			return stack[n-1].entries <= maxDiagnosedWidth
		}
		stack = append(stack, level{col: col, entries: 1})
		return len(stack) <= maxDiagnosedDepth
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		col := 0
		for col < len(line) && (line[col] == ' ' || line[col] == '\t') {
			col++
		}
		if col == len(line) || line[col] == '#' {
			continue
		}
		if !enter(col) {
			return false
		}
		// "- - - x" nests a list per dash on one line.
		for col+1 < len(line) && line[col] == '-' && line[col+1] == ' ' {
			col += 2
			for col < len(line) && line[col] == ' ' {
				col++
			}
			if col < len(line) && !enter(col) {
				return false
			}
		}
	}
	return true
}

// excerpt shows the lines up to the one at line (1-based) with a caret
// under column, the way compilers do, so the author sees the token without
// opening the file.
func excerpt(data []byte, line, column int) string {
	lines := strings.Split(string(data), "\n")
	if line < 1 || line > len(lines) {
		return ""
	}
	first := max(line-2, 1)
	width := len(fmt.Sprint(line))
	var b strings.Builder
	for i := first; i <= line; i++ {
		marker := " "
		if i == line {
			marker = ">"
		}
		fmt.Fprintf(&b, "%s %*d | %s\n", marker, width, i, strings.TrimRight(lines[i-1], "\r"))
	}
	// Copy tabs from the source so the caret lines up however tabs render.
	var pad strings.Builder
	src := lines[line-1]
	for i, n := 0, 0; n < column-1 && i < len(src); n++ {
		r, size := utf8.DecodeRuneInString(src[i:])
		if r == '\t' {
			pad.WriteByte('\t')
		} else {
			pad.WriteByte(' ')
		}
		i += size
	}
	fmt.Fprintf(&b, "  %*s | %s^", width, "", pad.String())
	return b.String()
}
