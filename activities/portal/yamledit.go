package portal

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// The config edit is a splice, not a re-serialisation. goccy/go-yaml parses
// the file (with comments) and says where each key and value is; the edit
// then replaces only the lines of the values it sets and inserts the keys it
// adds, so every other byte (comments, blank lines, quoting, `${VAR}`
// substitutions, key order, indentation) stays as it was. Neither goccy's
// printer nor yaml.v3's Node encoder reproduces a real app-config.yaml
// byte for byte (both normalise comment spacing; yaml.v3 also re-indents and
// drops blank lines), so printing a modified tree would rewrite the whole
// file. After the splice the result is decoded and compared with the old
// document plus the settings: a splice that changed anything else is
// refused instead of written.

// Bounds of one portal.setConfig.
const (
	MaxSetKeys      = 64
	MaxValueDepth   = 8
	MaxValueBytes   = 64 << 10
	maxPathSegments = 16
	maxSegmentBytes = 128
)

// ConfigEdit is the result of EditConfig.
type ConfigEdit struct {
	Out       []byte
	Changed   []string
	Unchanged []string
}

// ShapeError says a file does not have the shape an edit expects; the
// activity reports it as PortalFileShape.
type ShapeError struct{ Msg string }

func (e *ShapeError) Error() string { return e.Msg }

func shapef(format string, args ...any) error {
	return &ShapeError{Msg: fmt.Sprintf(format, args...)}
}

// EditConfig sets each dotted key path of set to its value in the YAML
// document src (one mapping), creating missing intermediate mappings. A
// value replaces what the key held (a map replaces the whole map: use
// dotted keys to set single entries). Keys already holding their value
// are reported unchanged and their bytes left alone.
func EditConfig(src []byte, set map[string]any) (ConfigEdit, error) {
	if len(set) == 0 {
		return ConfigEdit{}, invalidArgf("set is empty: give at least one dotted key path and its value")
	}
	if len(set) > MaxSetKeys {
		return ConfigEdit{}, invalidArgf("set has %d keys; at most %d", len(set), MaxSetKeys)
	}
	keys := sortedKeys(set)
	paths := map[string][]string{}
	want := map[string]any{}
	for _, k := range keys {
		p, err := splitPath(k)
		if err != nil {
			return ConfigEdit{}, err
		}
		v, err := normalizeValue(k, set[k])
		if err != nil {
			return ConfigEdit{}, err
		}
		paths[k], want[k] = p, v
	}
	for _, a := range keys {
		for _, b := range keys {
			if a != b && strings.HasPrefix(b, a+".") {
				return ConfigEdit{}, invalidArgf("set names both %s and %s inside it: set one or the other", a, b)
			}
		}
	}

	doc, err := decodeDoc(src)
	if err != nil {
		return ConfigEdit{}, err
	}
	expect := deepCopy(doc).(map[string]any)
	res := ConfigEdit{Changed: []string{}, Unchanged: []string{}}
	cur := src
	for _, k := range keys {
		if old, ok := lookup(doc, paths[k]); ok && reflect.DeepEqual(old, want[k]) {
			res.Unchanged = append(res.Unchanged, k)
			continue
		}
		if err := assign(expect, paths[k], want[k]); err != nil {
			return ConfigEdit{}, err
		}
		next, err := editOne(cur, paths[k], want[k])
		if err != nil {
			return ConfigEdit{}, err
		}
		cur = next
		res.Changed = append(res.Changed, k)
	}
	res.Out = cur
	if len(res.Changed) == 0 {
		return res, nil
	}
	got, err := decodeDoc(cur)
	if err != nil {
		return ConfigEdit{}, fmt.Errorf("the edited file does not parse (a bug in the edit; nothing written): %w", err)
	}
	if !reflect.DeepEqual(got, expect) {
		return ConfigEdit{}, fmt.Errorf("the edit would change more than the keys set (a bug in the edit; nothing written)")
	}
	return res, nil
}

type argError struct{ msg string }

func (e *argError) Error() string { return e.msg }

func invalidArgf(format string, args ...any) error {
	return &argError{msg: fmt.Sprintf(format, args...)}
}

var segmentRE = regexp.MustCompile(`^[^\s.#:"'\x00-\x1f][^.\x00-\x1f]*$`)

func splitPath(k string) ([]string, error) {
	segs := strings.Split(k, ".")
	if len(segs) > maxPathSegments {
		return nil, invalidArgf("set: key %q has %d parts; at most %d", bounded(k, 200), len(segs), maxPathSegments)
	}
	for _, s := range segs {
		if len(s) > maxSegmentBytes || !segmentRE.MatchString(s) || strings.TrimSpace(s) != s {
			return nil, invalidArgf("set: key %q is not a dotted key path (parts are non-empty names without spaces at either end, '#', ':' or quotes at the start)", bounded(k, 200))
		}
	}
	return segs, nil
}

// normalizeValue bounds v and turns it into what decoding JSON gives
// (float64 numbers, map[string]any, []any), the form decodeDoc yields.
func normalizeValue(k string, v any) (any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, invalidArgf("set %s: value cannot be written as YAML: %v", k, err)
	}
	if len(raw) > MaxValueBytes {
		return nil, invalidArgf("set %s: value is %d bytes as JSON; at most %d", k, len(raw), MaxValueBytes)
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, invalidArgf("set %s: %v", k, err)
	}
	if d := depth(out); d > MaxValueDepth {
		return nil, invalidArgf("set %s: value is nested %d deep; at most %d", k, d, MaxValueDepth)
	}
	if n := countEntries(out); n > MaxSetKeys*16 {
		return nil, invalidArgf("set %s: value has %d entries; at most %d", k, n, MaxSetKeys*16)
	}
	return out, nil
}

func depth(v any) int {
	d := 0
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			d = max(d, depth(e))
		}
		return d + 1
	case []any:
		for _, e := range x {
			d = max(d, depth(e))
		}
		return d + 1
	}
	return 0
}

func countEntries(v any) int {
	n := 0
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			n += 1 + countEntries(e)
		}
	case []any:
		for _, e := range x {
			n += 1 + countEntries(e)
		}
	}
	return n
}

// decodeDoc decodes the one document of src as a mapping, normalised like
// normalizeValue. An empty file (or one of comments) is an empty mapping.
func decodeDoc(src []byte) (map[string]any, error) {
	f, err := parser.ParseBytes(src, parser.ParseComments)
	if err != nil {
		return nil, shapef("not valid YAML: %s", oneLine(err.Error()))
	}
	if len(f.Docs) > 1 {
		return nil, shapef("has %d YAML documents (--- separators); a config file has one", len(f.Docs))
	}
	var v any
	if err := yaml.Unmarshal(src, &v); err != nil {
		return nil, shapef("not valid YAML: %s", oneLine(err.Error()))
	}
	if v == nil {
		return map[string]any{}, nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, shapef("cannot be read as a config mapping (%v)", err)
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, shapef("cannot be read as a config mapping (%v)", err)
	}
	m, ok := out.(map[string]any)
	if !ok {
		return nil, shapef("is not a mapping of keys at the top (it is %s)", kindOf(out))
	}
	return m, nil
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return bounded(s, 300)
}

func kindOf(v any) string {
	switch v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case nil:
		return "null"
	default:
		return "a scalar"
	}
}

func lookup(doc map[string]any, path []string) (any, bool) {
	var cur any = doc
	for _, s := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[s]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func assign(doc map[string]any, path []string, v any) error {
	m := doc
	for i, s := range path[:len(path)-1] {
		next := m[s]
		switch n := next.(type) {
		case map[string]any:
			m = n
		case nil:
			nm := map[string]any{}
			m[s] = nm
			m = nm
		default:
			return shapef("%s is %s, not a mapping, so %s cannot be set inside it", strings.Join(path[:i+1], "."), kindOf(next), strings.Join(path, "."))
		}
	}
	m[path[len(path)-1]] = deepCopy(v)
	return nil
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = deepCopy(e)
		}
		return l
	}
	return v
}

// text is a file as lines, each without its line break; nl is the break
// the file uses.
type text struct {
	lines    []string
	nl       string
	finalNL  bool
	indentBy int
}

func splitText(src []byte) *text {
	s := string(src)
	t := &text{nl: "\n"}
	if strings.Contains(s, "\r\n") {
		t.nl = "\r\n"
	}
	t.finalNL = strings.HasSuffix(s, "\n")
	s = strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
	if s == "" && !t.finalNL {
		t.lines = nil
	} else {
		t.lines = strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	}
	t.indentBy = 0
	for _, l := range t.lines {
		if isContent(l) {
			if n := indentOf(l); n > 0 && (t.indentBy == 0 || n < t.indentBy) {
				t.indentBy = n
			}
		}
	}
	if t.indentBy == 0 || t.indentBy > 8 {
		t.indentBy = 2
	}
	return t
}

func (t *text) bytes() []byte {
	s := strings.Join(t.lines, t.nl)
	if t.finalNL || len(t.lines) > 0 {
		s += t.nl
	}
	return []byte(s)
}

func isContent(l string) bool {
	s := strings.TrimSpace(l)
	return s != "" && !strings.HasPrefix(s, "#")
}

func indentOf(l string) int { return len(l) - len(strings.TrimLeft(l, " ")) }

// editOne sets one path in src.
func editOne(src []byte, path []string, v any) ([]byte, error) {
	f, err := parser.ParseBytes(src, parser.ParseComments)
	if err != nil {
		return nil, shapef("not valid YAML: %s", oneLine(err.Error()))
	}
	t := splitText(src)
	var body ast.Node
	if len(f.Docs) == 1 {
		body = f.Docs[0].Body
	}
	entries, ok := mappingEntries(body)
	if !ok {
		if doc, err := decodeDoc(src); err != nil || len(doc) > 0 {
			return nil, shapef("is not a block mapping of keys at the top")
		}
		// An empty document (or one of comments): the keys go at the end.
		t.lines = append(t.lines, renderEntry(path, v, 0, t.indentBy)...)
		return t.bytes(), nil
	}
	for i, seg := range path {
		e := findEntry(entries, seg)
		where := strings.Join(path[:i+1], ".")
		if e == nil {
			// Insert the rest of the path as a new key after the last
			// entry of this mapping (before trailing comments, which
			// usually describe what follows).
			last := entries[len(entries)-1]
			at := entryEnd(t, last)
			indent := indentOf(t.lines[last.Key.GetToken().Position.Line-1])
			lines := renderEntry(path[i:], v, indent, t.indentBy)
			t.lines = append(t.lines[:at+1], append(lines, t.lines[at+1:]...)...)
			return t.bytes(), nil
		}
		if e.Key.GetToken().Position.Line-1 >= len(t.lines) {
			return nil, shapef("%s: position outside the file", where)
		}
		if _, anchored := e.Value.(*ast.AnchorNode); anchored {
			return nil, shapef("%s carries a YAML anchor (&name) that aliases elsewhere may refer to; edit it by hand", where)
		}
		if i == len(path)-1 {
			return replaceValue(t, e, v, where)
		}
		switch val := e.Value.(type) {
		case *ast.NullNode:
			return replaceValue(t, e, nestedValue(path[i+1:], v), where)
		case *ast.MappingNode:
			if val.IsFlowStyle && len(val.Values) == 0 {
				return replaceValue(t, e, nestedValue(path[i+1:], v), where)
			}
			if val.IsFlowStyle {
				return nil, shapef("%s is a flow mapping ({...}); %s cannot be set inside it without rewriting it: write it as a block mapping", where, strings.Join(path, "."))
			}
			entries = val.Values
		case *ast.MappingValueNode:
			entries = []*ast.MappingValueNode{val}
		default:
			return nil, shapef("%s is %s, not a mapping, so %s cannot be set inside it", where, nodeKind(e.Value), strings.Join(path, "."))
		}
		if len(entries) == 0 {
			return replaceValue(t, e, nestedValue(path[i+1:], v), where)
		}
	}
	return nil, fmt.Errorf("unreachable")
}

func nodeKind(n ast.Node) string {
	switch n.(type) {
	case *ast.SequenceNode:
		return "a list"
	case *ast.AliasNode:
		return "an alias (*name)"
	case *ast.TagNode:
		return "a tagged value"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	default:
		return "a scalar"
	}
}

func nestedValue(path []string, v any) any {
	for i := len(path) - 1; i >= 0; i-- {
		v = map[string]any{path[i]: v}
	}
	return v
}

func mappingEntries(n ast.Node) ([]*ast.MappingValueNode, bool) {
	switch m := n.(type) {
	case *ast.MappingNode:
		if m.IsFlowStyle || len(m.Values) == 0 {
			return nil, false
		}
		return m.Values, true
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{m}, true
	}
	return nil, false
}

func findEntry(entries []*ast.MappingValueNode, key string) *ast.MappingValueNode {
	var found *ast.MappingValueNode
	for _, e := range entries {
		k, ok := e.Key.(ast.ScalarNode)
		if !ok {
			continue
		}
		if fmt.Sprint(k.GetValue()) == key {
			// YAML keeps the last of duplicate keys.
			found = e
		}
	}
	return found
}

// entryEnd returns the index of the last line of e: the last content line
// before the next line that is indented no deeper than e's key. Comments
// and blank lines after it belong to what follows.
func entryEnd(t *text, e *ast.MappingValueNode) int {
	keyLine := e.Key.GetToken().Position.Line - 1
	keyIndent := indentOf(t.lines[keyLine])
	blockScalar := false
	if after, ok := afterColon(t.lines[keyLine], e); ok {
		s := strings.TrimLeft(after, " ")
		s = skipProps(s)
		blockScalar = strings.HasPrefix(s, "|") || strings.HasPrefix(s, ">")
	}
	end := keyLine
	for i := keyLine + 1; i < len(t.lines); i++ {
		l := t.lines[i]
		if strings.TrimSpace(l) == "" {
			continue
		}
		if indentOf(l) <= keyIndent {
			break
		}
		if blockScalar || isContent(l) {
			end = i
		}
	}
	return end
}

// skipProps skips an anchor (&a) and a tag (!t) before a value.
func skipProps(s string) string {
	for strings.HasPrefix(s, "&") || strings.HasPrefix(s, "!") {
		i := strings.IndexAny(s, " \t")
		if i < 0 {
			return ""
		}
		s = strings.TrimLeft(s[i:], " \t")
	}
	return s
}

// afterColon returns what follows e's ':' on the key line.
func afterColon(line string, e *ast.MappingValueNode) (string, bool) {
	if e.Start.Position.Line != e.Key.GetToken().Position.Line {
		return "", false
	}
	col := e.Start.Position.Column - 1
	// The parser counts columns in characters; the line is bytes.
	for _, at := range []int{runeOffset(line, col), col} {
		if at >= 0 && at < len(line) && line[at] == ':' {
			return line[at+1:], true
		}
	}
	return "", false
}

// runeOffset is the byte offset of the n-th character of s, or -1.
func runeOffset(s string, n int) int {
	i := 0
	for off := range s {
		if i == n {
			return off
		}
		i++
	}
	return -1
}

// replaceValue puts v in place of e's value: the value's text on the key
// line (keeping an inline comment) and its lines below.
func replaceValue(t *text, e *ast.MappingValueNode, v any, where string) ([]byte, error) {
	keyLine := e.Key.GetToken().Position.Line - 1
	line := t.lines[keyLine]
	after, ok := afterColon(line, e)
	if !ok {
		return nil, shapef("%s: cannot find the ':' after the key on line %d", where, keyLine+1)
	}
	prefix := line[:len(line)-len(after)]
	end := entryEnd(t, e)
	trimmed := strings.TrimLeft(after, " \t")
	var tail string
	switch {
	case trimmed == "" || strings.HasPrefix(trimmed, "#"):
		tail = strings.TrimRight(after, " \t")
	default:
		start := len(after) - len(trimmed)
		// A value that goes on below the key line has no inline
		// comment to keep.
		if n, oneLine := inlineEnd(trimmed); oneLine {
			tail = after[start+n:]
		}
	}
	// The child indent: the key's, plus the file's step.
	keyIndent := indentOf(line)
	var repl []string
	if s, ok := inlineValue(v); ok {
		if str, isStr := v.(string); isStr && trimmed != "" {
			// Keep the quoting the value had: 'x' stays single-quoted.
			switch trimmed[0] {
			case '\'':
				s = "'" + strings.ReplaceAll(str, "'", "''") + "'"
			case '"':
				b, _ := json.Marshal(str)
				s = string(b)
			}
		}
		repl = []string{prefix + " " + s + tail}
	} else {
		repl = append([]string{prefix + tail}, renderBlock(v, keyIndent+t.indentBy, t.indentBy)...)
	}
	t.lines = append(t.lines[:keyLine], append(repl, t.lines[end+1:]...)...)
	return t.bytes(), nil
}

// inlineEnd returns the length of the value at the start of s and whether
// it ends on this line; what follows it is spaces and perhaps a comment.
func inlineEnd(s string) (int, bool) {
	i := 0
	for i < len(s) && (s[i] == '&' || s[i] == '!') {
		for i < len(s) && s[i] != ' ' && s[i] != '\t' {
			i++
		}
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
	}
	if i >= len(s) {
		return len(s), true
	}
	switch s[i] {
	case '|', '>':
		return len(s), false
	case '"':
		for j := i + 1; j < len(s); j++ {
			if s[j] == '\\' {
				j++
				continue
			}
			if s[j] == '"' {
				return j + 1, true
			}
		}
		return len(s), false
	case '\'':
		for j := i + 1; j < len(s); j++ {
			if s[j] == '\'' {
				if j+1 < len(s) && s[j+1] == '\'' {
					j++
					continue
				}
				return j + 1, true
			}
		}
		return len(s), false
	case '[', '{':
		d := 0
		for j := i; j < len(s); j++ {
			switch s[j] {
			case '[', '{':
				d++
			case ']', '}':
				if d--; d == 0 {
					return j + 1, true
				}
			case '"', '\'':
				n, ok := inlineEnd(s[j:])
				if !ok {
					return len(s), false
				}
				j += n - 1
			}
		}
		return len(s), false
	}
	end := len(s)
	for j := i; j < len(s); j++ {
		if s[j] == '#' && j > 0 && (s[j-1] == ' ' || s[j-1] == '\t') {
			end = j
			break
		}
	}
	return len(strings.TrimRight(s[:end], " \t")), true
}

var plainRE = regexp.MustCompile(`^[A-Za-z0-9_/$.][A-Za-z0-9_./${}@+=:\-]*( [A-Za-z0-9_./${}@+=:\-]+)*$`)

// scalarText writes a scalar: plain when it reads back as the same value,
// else double-quoted (a JSON string is a valid YAML double-quoted one).
func scalarText(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return strconv.FormatBool(x)
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case string:
		if plainRE.MatchString(x) {
			var back any
			if err := yaml.Unmarshal([]byte("k: "+x), &back); err == nil {
				if m, ok := back.(map[string]any); ok && m["k"] == x {
					return x
				}
			}
		}
		b, _ := json.Marshal(x)
		return string(b)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func keyText(k string) string {
	s := scalarText(k)
	return s
}

// inlineValue writes v on the key's line if it is a scalar or an empty
// collection.
func inlineValue(v any) (string, bool) {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			return "{}", true
		}
		return "", false
	case []any:
		if len(x) == 0 {
			return "[]", true
		}
		return "", false
	}
	return scalarText(v), true
}

// renderEntry writes path: v as a new key at indent, nesting the rest of
// the path.
func renderEntry(path []string, v any, indent, step int) []string {
	return renderBlock(map[string]any{path[0]: nestedValue(path[1:], v)}, indent, step)
}

// renderBlock writes a non-empty map or list in block style at indent.
func renderBlock(v any, indent, step int) []string {
	pad := strings.Repeat(" ", indent)
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(x) {
			if s, ok := inlineValue(x[k]); ok {
				out = append(out, pad+keyText(k)+": "+s)
			} else {
				out = append(out, pad+keyText(k)+":")
				out = append(out, renderBlock(x[k], indent+step, step)...)
			}
		}
	case []any:
		for _, e := range x {
			if s, ok := inlineValue(e); ok {
				out = append(out, pad+"- "+s)
				continue
			}
			sub := renderBlock(e, indent+2, step)
			if _, isMap := e.(map[string]any); isMap {
				// "- " then the map's first key on the same line.
				sub[0] = pad + "- " + strings.TrimLeft(sub[0], " ")
				out = append(out, sub...)
			} else {
				out = append(out, pad+"-")
				out = append(out, sub...)
			}
		}
	}
	return out
}
