package runbooks

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one thing wrong with a runbook, located as precisely as the
// source allows.
type Problem struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
	// Excerpt shows the source lines up to the problem with a caret under
	// its column; set for YAML syntax errors, where the message alone
	// rarely says what is wrong.
	Excerpt string `json:"excerpt,omitempty"`
}

func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
	} else {
		b.WriteString("<runbook>")
	}
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
		if p.Column > 0 {
			fmt.Fprintf(&b, ":%d", p.Column)
		}
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	if p.Excerpt != "" {
		for _, l := range strings.Split(p.Excerpt, "\n") {
			b.WriteString("\n    ")
			b.WriteString(l)
		}
	}
	return b.String()
}

// ValidationError collects every problem found in one runbook, so an author
// fixes them all in one pass instead of one per run.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return "invalid runbook: " + e.Problems[0].String()
	}
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = "  " + p.String()
	}
	return fmt.Sprintf("invalid runbook: %d problems:\n%s", len(e.Problems), strings.Join(lines, "\n"))
}

// Limits that keep a hostile or broken runbook from tying up the worker:
// the loader runs inside the resolve activity, whose timeout cannot stop a
// CPU-bound parse, so both are checked before any expensive work.
const (
	// MaxRunbookSize bounds the text of one runbook. Runbooks are a few KB
	// (the built-in patch runbook is about 11 KB); 256 KiB leaves room for
	// twenty times that.
	MaxRunbookSize = 256 << 10
	// MaxAliasNodes bounds how many YAML nodes the loader visits through
	// aliases (*name), counting every node of every expansion. Anchors that
	// share a `with` block cost tens of nodes; nested aliases ("billion
	// laughs") grow exponentially and hit this at once.
	MaxAliasNodes = 10000
)

// LoadFile reads and validates one runbook file.
func LoadFile(path string, cat Catalogue) (*Runbook, error) {
	data, err := readRunbookFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data, cat)
}

// readRunbookFile reads at most one byte more than MaxRunbookSize, so an
// oversized file is rejected by Parse without reading it whole.
func readRunbookFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read runbook: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxRunbookSize+1))
	if err != nil {
		return nil, fmt.Errorf("read runbook %s: %w", path, err)
	}
	return data, nil
}

// Parse decodes and validates a runbook. The file name only labels problems.
// A nil catalogue skips the step-type checks (useful for tooling that has no
// worker catalogue); everything else is still checked.
func Parse(file string, data []byte, cat Catalogue) (*Runbook, error) {
	p := &parser{file: file, pos: map[string]*yaml.Node{}, expanding: map[*yaml.Node]bool{}}
	if len(data) > MaxRunbookSize {
		p.add(nil, "", "runbook text is larger than the limit of %d bytes (%d KiB)", MaxRunbookSize, MaxRunbookSize>>10)
		return nil, p.err()
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p.addSyntaxError(err, data)
		return nil, p.err()
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		p.add(nil, "", "empty runbook: want a mapping with name and steps")
		return nil, p.err()
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		p.add(root, "", "a runbook must be a mapping with name, params and steps")
		return nil, p.err()
	}
	p.walk(root, reflect.TypeOf(Runbook{}), "", false)
	if p.aliasRefused {
		// Decoding would expand the same aliases again (or forever).
		return nil, p.err()
	}
	var rb Runbook
	if err := root.Decode(&rb); err != nil {
		p.addYAMLError(err)
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, p.err()
		}
	}
	// Validate even when decoding reported problems, so an author sees
	// every problem in one pass.
	p.validate(&rb, cat)
	if len(p.problems) > 0 {
		return nil, p.err()
	}
	return &rb, nil
}

type parser struct {
	file     string
	pos      map[string]*yaml.Node
	problems []Problem
	// aliasNodes counts nodes visited through aliases, against MaxAliasNodes.
	aliasNodes   int
	aliasRefused bool
	// outerAlias is the alias written outside any anchor whose expansion
	// is being walked: the place to point at when the budget runs out.
	outerAlias *yaml.Node
	// expanding holds the anchored nodes whose contents are being walked.
	expanding map[*yaml.Node]bool
}

func (p *parser) err() error {
	if len(p.problems) == 0 {
		return nil
	}
	sort.SliceStable(p.problems, func(i, j int) bool {
		if p.problems[i].Line != p.problems[j].Line {
			return p.problems[i].Line < p.problems[j].Line
		}
		return p.problems[i].Column < p.problems[j].Column
	})
	return &ValidationError{Problems: p.problems}
}

func (p *parser) add(n *yaml.Node, path, format string, args ...any) {
	pr := Problem{File: p.file, Path: path, Message: fmt.Sprintf(format, args...)}
	if n != nil {
		pr.Line, pr.Column = n.Line, n.Column
	}
	p.problems = append(p.problems, pr)
}

// at reports a problem at the node recorded for path, or the nearest
// recorded ancestor when the field itself is absent.
func (p *parser) at(path, format string, args ...any) {
	for q := path; ; {
		if n, ok := p.pos[q]; ok {
			p.add(n, path, format, args...)
			return
		}
		if q == "" {
			p.add(nil, path, format, args...)
			return
		}
		q = parentPath(q)
	}
}

func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

var yamlLineRE = regexp.MustCompile(`line (\d+): (.*)`)

// addSyntaxError reports text yaml.v3 could not parse at the offending
// token, with an excerpt, when goccy can locate it; otherwise at the line
// yaml.v3 names.
func (p *parser) addSyntaxError(err error, data []byte) {
	loc, ok := locateSyntaxError(data)
	if !ok {
		p.addYAMLError(err)
		return
	}
	p.problems = append(p.problems, Problem{
		File:    p.file,
		Line:    loc.Line,
		Column:  loc.Column,
		Message: "yaml syntax: " + loc.Message,
		Excerpt: excerpt(data, loc.Line, loc.Column),
	})
}

func (p *parser) addYAMLError(err error) {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for _, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		pr := Problem{File: p.file, Message: m}
		if sm := yamlLineRE.FindStringSubmatch(m); sm != nil {
			pr.Line, _ = strconv.Atoi(sm[1])
			pr.Message = sm[2]
			pr.Path = p.pathAtLine(pr.Line)
		}
		p.problems = append(p.problems, pr)
	}
}

// pathAtLine finds the deepest recorded field path on a line, so YAML type
// errors (which only carry a line) also name the field.
func (p *parser) pathAtLine(line int) string {
	best := ""
	found := false
	for path, n := range p.pos {
		if n.Line == line && (!found || len(path) > len(best)) {
			best, found = path, true
		}
	}
	return best
}

var durationType = reflect.TypeOf(Duration(0))

// walk records the position of every field path and reports keys that the
// Go types do not declare. yaml.v3's KnownFields stops at the first unknown
// key and does not name the path; authors want all of them, located.
//
// viaAlias says n was reached through an alias. Such nodes are counted
// against MaxAliasNodes: yaml.v3 bounds aliasing only when decoding, and
// this pass runs first, so without the count nested aliases expand here
// exponentially (and a self-referencing anchor never ends).
func (p *parser) walk(n *yaml.Node, t reflect.Type, path string, viaAlias bool) {
	if p.aliasRefused {
		return
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		// An alias inside its own anchor would expand forever, and its
		// field paths grow with every turn; refuse it outright.
		if p.expanding[n.Alias] {
			p.aliasRefused = true
			p.add(n, path, "alias *%s is inside its own anchor &%s (a cycle)", n.Value, n.Value)
			return
		}
		if !viaAlias {
			p.outerAlias = n
		}
		viaAlias = true
		n = n.Alias
	}
	if n.Anchor != "" {
		p.expanding[n] = true
		defer delete(p.expanding, n)
	}
	if viaAlias {
		p.aliasNodes++
		if p.aliasNodes > MaxAliasNodes {
			p.aliasRefused = true
			p.add(p.outerAlias, path, "aliases expand to more than %d nodes (the limit); nested aliases multiply, use fewer or flatter anchors", MaxAliasNodes)
			return
		}
	}
	p.pos[path] = n
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			if n.Tag != "!!null" {
				p.add(n, path, "want a mapping, got %s", describeNode(n))
			}
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			child := joinPath(path, k.Value)
			if !ok {
				p.add(k, child, "unknown field %q (known fields: %s)", k.Value, strings.Join(sortedKeys(fields), ", "))
				continue
			}
			p.walk(v, ft, child, viaAlias)
			// Locate a field at its key: a block value starts a line later.
			p.pos[child] = k
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			if n.Tag != "!!null" {
				p.add(n, path, "want a list, got %s", describeNode(n))
			}
			return
		}
		for i, item := range n.Content {
			p.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), viaAlias)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			if n.Tag != "!!null" {
				p.add(n, path, "want a mapping, got %s", describeNode(n))
			}
			return
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if seen[k.Value] {
				p.add(k, joinPath(path, k.Value), "duplicate key %q", k.Value)
			}
			seen[k.Value] = true
			p.walk(v, t.Elem(), joinPath(path, k.Value), viaAlias)
			p.pos[joinPath(path, k.Value)] = k
		}
	case reflect.Interface:
		// Free-form values (step arguments): record nested positions so
		// template problems deep inside `with` are located too.
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p.walk(n.Content[i+1], t, joinPath(path, n.Content[i].Value), viaAlias)
				p.pos[joinPath(path, n.Content[i].Value)] = n.Content[i]
			}
		case yaml.SequenceNode:
			for i, item := range n.Content {
				p.walk(item, t, fmt.Sprintf("%s[%d]", path, i), viaAlias)
			}
		}
	}
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
